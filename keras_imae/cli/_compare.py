r"""Compare every loss on the same data, noise and budget (tuned on a noisy validation split).

    keras-imae-compare --noise_type=symmetric --noise_rate=0.4 --num_seeds=3 \
        --output=results/digits_sym40.md

See keras_imae/run/comparison.py for the protocol. Prints and writes a markdown table.
"""

from absl import flags

from keras_imae import _files, data
from keras_imae.cli import run_flags
from keras_imae.config import recipe
from keras_imae.run import comparison

FLAGS = flags.FLAGS
# Set per run by the protocol (loss and its grid, seeds, folders), so not flags here.
_SET_BY_PROTOCOL = ("loss", "beta", "lam", "temperature", "q", "alpha", "noise_seed", "seed",
                    "noisy_labels", "model_dir", "export_dir", "overwrite", "verbose")


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    own = {**fv, "module_name": "comparison"}  # its --help topic
    run_flags.define_run_flags(exclude=_SET_BY_PROTOCOL, **fv, defaults={
        "validation_fraction": recipe.DEFAULTS["compare_validation_fraction"]})
    flags.DEFINE_list("losses", list(comparison.NAMES), "Losses to compare ('elr': "
                      "cross-entropy with early-learning regularisation).", **own)
    flags.DEFINE_integer("num_seeds", 3, "Seeds of the final runs.", lower_bound=1, **own)
    flags.DEFINE_string("work_dir", "runs/compare", "Folder of the individual runs.", **own)
    flags.DEFINE_string("output", None, "Markdown file for the table.", **own)
    flags.DEFINE_enum("selection", "noisy", list(comparison.SELECTIONS),
                      "Score that picks each loss's setting on the noisy validation split: "
                      "plain noisy accuracy, or that accuracy corrected by the transition "
                      "matrix estimated from the noisy labels (where the estimate is usable).",
                      **own)
    flags.DEFINE_integer("selection_seeds", comparison.SELECTION_SEEDS,
                         "Selection runs per grid point, each on its own noisy validation "
                         "split (another seed); the mean score picks the setting.", lower_bound=1,
                         **own)
    flags.register_validator(
        "losses", lambda names: all(n in comparison.NAMES for n in names),
        message=f"--losses takes names among: {', '.join(comparison.NAMES)}", **fv)

def main(_):
    run_flags.quiet_logs(FLAGS)
    base = run_flags.run_config(FLAGS, validation_fraction=0.0)
    with run_flags.one_line_errors("The same command again starts its runs afresh."):
        dataset = data.load(FLAGS.dataset, data_dir=FLAGS.data_dir, streaming=FLAGS.streaming)
        rows = comparison.compare(base, FLAGS.losses, num_seeds=FLAGS.num_seeds,
                                  validation_fraction=FLAGS.validation_fraction,
                                  work_dir=FLAGS.work_dir, dataset=dataset,
                                  selection=FLAGS.selection,
                                  selection_seeds=FLAGS.selection_seeds)
    title = (f"{dataset.name}, {FLAGS.noise_rate:.0%} {FLAGS.noise_type} noise, "
             f"{FLAGS.epochs} epochs, {FLAGS.num_seeds} seeds")
    table = (comparison.markdown_table(rows, title=title) + "\n\nSelection runs (* chosen; "
             f"means over {FLAGS.selection_seeds} noisy validation splits; test accuracy of "
             "the models trained on the rest):\n\n"
             + comparison.selection_table(rows))
    print(table)
    if FLAGS.output:  # atomically: an interrupted write never leaves half a table
        _files.atomic_write(FLAGS.output, lambda f: f.write(table + "\n"))
