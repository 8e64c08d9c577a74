r"""Export a .keras model (logits out) as a serving SavedModel, atomically.

    python scripts/export.py --model=runs/digits_dm/model.keras \
        --export_dir=saved_models/digits_dm_v2 [--overwrite]

--model may also be a run folder of train.py (its model.keras is exported). The SavedModel's
`serve` endpoint (also `serving_default`) takes raw images (float32) and returns
{"probabilities", "classes"}. An existing target is refused unless --overwrite.
"""

import errno
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF C++ start-up chatter; export 0 to see it

from absl import app, flags

from keras_imae.training import cli, evaluation, export

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("model", None, ".keras file (or train.py run folder) to export.",
                        required=True, **fv)
    flags.DEFINE_string("export_dir", None, "Target SavedModel folder.", required=True, **fv)
    flags.DEFINE_bool("overwrite", False, "Replace an existing target.", **fv)

def main(_):
    cli.quiet_logs(FLAGS)
    model_path = evaluation.run_model(FLAGS.model)  # a run folder: its model.keras
    with cli.one_line_errors("Nothing was exported; the target is unchanged."):
        try:
            model = evaluation.load_keras_model(model_path)
            path = export.export_saved_model(model, FLAGS.export_dir,
                                             overwrite=FLAGS.overwrite, source=model_path)
        except (FileNotFoundError, FileExistsError, ValueError) as err:
            raise app.UsageError(str(err)) from None
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            raise OSError(f"{err.strerror or err}. {model_path!r} is kept and the target is "
                          "unchanged: free some space and run the same command again.") from None
    print(f"Exported {model_path} to {path}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
