r"""Compare every loss on the same data, noise and budget (tuned on a noisy validation split).

    python scripts/compare.py --noise_type=symmetric --noise_rate=0.4 --num_seeds=3 \
        --output=results/digits_sym40.md

See keras_imae/comparison.py for the protocol. Prints and writes a markdown table.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF C++ start-up chatter; export 0 to see it

from absl import app, flags, logging

from keras_imae import comparison, data, losses, models, training

FLAGS = flags.FLAGS
_DEFAULTS = training.RunConfig()


def define_flags():
    d = _DEFAULTS
    flags.DEFINE_string("dataset", d.dataset, "Dataset (see train.py).")
    flags.DEFINE_string("data_dir", None, "TFDS data directory.")
    flags.DEFINE_enum("noise_type", d.noise_type, list(training.NOISE_TYPES), "Noise type.")
    flags.DEFINE_float("noise_rate", d.noise_rate, "Noise rate.")
    flags.DEFINE_list("losses", list(losses.LOSSES), "Losses to compare.")
    flags.DEFINE_integer("num_seeds", 3, "Seeds of the final runs.")
    flags.DEFINE_float("validation_fraction", 0.2, "Noisy validation share for selection.")
    flags.DEFINE_enum("model", d.model, ["auto", *models.ARCHITECTURES], "Architecture.")
    flags.DEFINE_integer("epochs", d.epochs, "Epochs of every run.")
    flags.DEFINE_integer("batch_size", d.batch_size, "Batch size.")
    flags.DEFINE_float("learning_rate", d.learning_rate, "Base learning rate.")
    flags.DEFINE_enum("lr_schedule", d.lr_schedule, ["none", "step", "cosine"], "Schedule.")
    flags.DEFINE_float("weight_decay", d.weight_decay, "L2 weight decay.")
    flags.DEFINE_string("work_dir", "runs/compare", "Folder of the individual runs.")
    flags.DEFINE_string("output", None, "Markdown file for the table.")
    flags.register_validator("dataset", data.is_known_source, message=data.SOURCES_HELP)
    flags.register_validator(
        "losses", lambda names: all(n in losses.LOSSES for n in names),
        message=f"--losses takes names among: {', '.join(losses.LOSSES)}")


def main(_):
    if not FLAGS["verbosity"].present:  # absl/TF INFO logs off unless --verbosity is given
        logging.set_verbosity(logging.WARNING)
    base = training.RunConfig(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, noise_type=FLAGS.noise_type,
        noise_rate=FLAGS.noise_rate, model=FLAGS.model, epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
        lr_schedule=FLAGS.lr_schedule, weight_decay=FLAGS.weight_decay)
    dataset = data.load_dataset(FLAGS.dataset, data_dir=FLAGS.data_dir)
    rows = comparison.compare(base, FLAGS.losses, num_seeds=FLAGS.num_seeds,
                              validation_fraction=FLAGS.validation_fraction,
                              work_dir=FLAGS.work_dir, dataset=dataset)
    title = (f"{dataset.name}, {FLAGS.noise_rate:.0%} {FLAGS.noise_type} noise, "
             f"{FLAGS.epochs} epochs, {FLAGS.num_seeds} seeds")
    table = comparison.markdown_table(rows, title=title)
    print(table)
    if FLAGS.output:
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
        with open(FLAGS.output, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    define_flags()
    app.run(main)
