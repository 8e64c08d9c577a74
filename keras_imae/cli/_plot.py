r"""Plot emphasis curves w(p) of every loss and of DM, and/or a run's per-epoch fit curves.

    keras-imae-plot --emphasis=emphasis.png
    keras-imae-plot --model_dir=runs/digits_dm          # -> runs/digits_dm/fit_curves.png
"""

from absl import app, flags

from keras_imae import plotting
from keras_imae.cli import run_flags

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    own = {**fv, "module_name": "plots"}  # its --help topic
    flags.DEFINE_string("emphasis", None, "PNG path for the emphasis-curve figure.", **own)
    flags.DEFINE_string("model_dir", None, "Run folder whose log.csv is plotted.", **own)
    flags.DEFINE_string("output", None, "PNG path for the run figure (default: in model_dir).",
                        **own)

def main(_):
    run_flags.quiet_logs(FLAGS)
    if not FLAGS.emphasis and not FLAGS.model_dir:
        raise app.UsageError("Pass --emphasis=PATH.png and/or --model_dir=RUN_DIR.")
    with run_flags.one_line_errors("Nothing more was written."):  # one line, status 1
        for flag in ("emphasis", "output"):  # before any work: a PNG path we can write
            if FLAGS[flag].value:
                run_flags.check_output_file(flag, FLAGS[flag].value, "PNG")
        if FLAGS.emphasis:
            print("Wrote", plotting.plot_emphasis(FLAGS.emphasis))
        if FLAGS.model_dir:
            print("Wrote", plotting.plot_run(FLAGS.model_dir, FLAGS.output))
