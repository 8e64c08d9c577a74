r"""Evaluate a SavedModel folder or a .keras file on a dataset's test split.

    python scripts/evaluate.py --model=saved_models/digits_dm
    python scripts/evaluate.py --model=runs/digits_dm/model.keras --dataset=digits

Prints accuracy and per-class accuracy; --output writes them as JSON.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF C++ start-up chatter; export 0 to see it

from absl import app, flags

from keras_imae import data
from keras_imae.training import cli, evaluation, write_json

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    flags.DEFINE_string("model", None, "SavedModel folder or .keras file.", required=True, **fv)
    flags.DEFINE_string("dataset", "digits", "Dataset whose test split is used (see train.py).",
                        **fv)
    flags.DEFINE_string("data_dir", None, "TFDS data directory.", **fv)
    flags.DEFINE_string("output", None, "Optional JSON file for the results.", **fv)
    flags.register_validator("dataset", data.is_known_source, message=data.SOURCES_HELP, **fv)

def main(_):
    cli.quiet_logs(FLAGS)
    if FLAGS.output:
        cli.check_output_file("output", FLAGS.output, "JSON file")  # before any work
    with cli.one_line_errors("Nothing was written."):
        try:
            predict = evaluation.load_predictor(FLAGS.model)
            dataset = data.load(FLAGS.dataset, data_dir=FLAGS.data_dir, streaming="off")
        except (FileNotFoundError, ValueError) as err:
            raise app.UsageError(str(err)) from None
        try:
            results = evaluation.evaluate(predict, dataset.x_test, dataset.y_test,
                                          dataset.num_classes)
        except ValueError as err:
            raise app.UsageError(f"{err} (--dataset={FLAGS.dataset})") from None
    print(f"{FLAGS.model} on {dataset.name} test ({results['num_examples']} examples): "
          f"accuracy {results['accuracy']:.4f}")
    print("| class | accuracy |\n|---|---|")
    for name, acc in zip(dataset.class_names, results["per_class_accuracy"]):
        print(f"| {name} | {acc:.4f} |")
    if FLAGS.output:
        with cli.one_line_errors("Nothing was written."):
            write_json(FLAGS.output, results)


if __name__ == "__main__":
    define_flags()
    app.run(main)
