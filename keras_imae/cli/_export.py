r"""Export a .keras model (logits out) as a serving SavedModel, atomically.

    keras-imae-export --model=runs/digits_dm/model.keras \
        --export_dir=saved_models/digits_dm_v2 [--overwrite]

--model may also be a run folder (its model.keras is exported). The SavedModel's `serve` endpoint (also `serving_default`) takes raw images (float32) and
returns {"probabilities", "classes"}. An existing target is refused unless --overwrite.
"""

import errno

from absl import flags

from keras_imae.cli import run_flags
from keras_imae.run_folder import evaluation, export

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    own = {**fv, "module_name": "export"}  # its --help topic
    flags.DEFINE_string("model", None, ".keras file (or a run folder) to export.",
                        required=True, **own)
    flags.DEFINE_string("export_dir", None, "Target SavedModel folder.", required=True, **own)
    flags.DEFINE_bool("overwrite", False, "Replace an existing target.", **own)

def main(_):
    run_flags.quiet_logs(FLAGS)
    with run_flags.one_line_errors("The target was left as it was."):  # one line, status 1
        model_path = evaluation.run_model(FLAGS.model)  # a run folder: its model.keras
        model = evaluation.load_keras_model(model_path)
        try:
            path = export.export_saved_model(model, FLAGS.export_dir,
                                             overwrite=FLAGS.overwrite, source=model_path)
        except OSError as err:
            if err.errno != errno.ENOSPC:
                raise
            raise OSError(f"{err.strerror or err}. {model_path!r} is kept and the target is "
                          "unchanged: free some space and run the same command again.") from None
    print(f"Exported {model_path} to {path}")
