r"""Plot emphasis curves w(p) of every loss and of DM, and/or a run's per-epoch fit curves.

    python scripts/plot.py --emphasis=emphasis.png
    python scripts/plot.py --model_dir=runs/digits_dm          # -> runs/digits_dm/fit_curves.png
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF C++ start-up chatter; export 0 to see it

from absl import app, flags

from keras_imae import plotting
from keras_imae.training import cli

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("emphasis", None, "PNG path for the emphasis-curve figure.", **fv)
    flags.DEFINE_string("model_dir", None, "Run folder whose log.csv is plotted.", **fv)
    flags.DEFINE_string("output", None, "PNG path for the run figure (default: in model_dir).",
                        **fv)

def main(_):
    cli.quiet_logs(FLAGS)
    if not FLAGS.emphasis and not FLAGS.model_dir:
        raise app.UsageError("Pass --emphasis=PATH.png and/or --model_dir=RUN_DIR.")
    for flag in ("emphasis", "output"):
        if FLAGS[flag].value:
            cli.check_output_file(flag, FLAGS[flag].value, "PNG")
    with cli.one_line_errors("Nothing more was written."):
        if FLAGS.emphasis:
            print("Wrote", plotting.plot_emphasis(FLAGS.emphasis))
        if FLAGS.model_dir:
            try:
                print("Wrote", plotting.plot_run(FLAGS.model_dir, FLAGS.output))
            except (FileNotFoundError, ValueError) as err:
                raise app.UsageError(str(err)) from None


if __name__ == "__main__":
    define_flags()
    app.run(main)
