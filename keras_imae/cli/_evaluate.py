r"""Evaluate a SavedModel folder or a .keras file on a dataset's test split.

    keras-imae-evaluate --model=saved_models/digits_dm
    keras-imae-evaluate --model=runs/digits_dm/model.keras --dataset=digits

Prints accuracy and per-class accuracy; --output writes them as JSON.
"""

from absl import flags

from keras_imae import data
from keras_imae.cli import run_flags
from keras_imae.run_folder import evaluation, write_json

FLAGS = flags.FLAGS


def define_flags(flag_values=flags.FLAGS):
    fv = {"flag_values": flag_values}
    own = {**fv, "module_name": "evaluation"}  # its --help topic
    flags.DEFINE_string("model", None, "SavedModel folder or .keras file.", required=True,
                        **own)
    flags.DEFINE_string("dataset", "digits",
                        "Dataset whose test split is used (see keras-imae-train).", **own)
    flags.DEFINE_string("data_dir", None, "TFDS data directory.", **own)
    flags.DEFINE_string("output", None, "Optional JSON file for the results.", **own)
    flags.register_validator("dataset", data.is_known_source, message=data.SOURCES_HELP, **fv)

def main(_):
    run_flags.quiet_logs(FLAGS)
    with run_flags.one_line_errors("Nothing was written."):  # a missing or bad model: one line
        if FLAGS.output:
            run_flags.check_output_file("output", FLAGS.output, "JSON file")  # before any work
        predict = evaluation.load_predictor(FLAGS.model)
        dataset = data.load(FLAGS.dataset, data_dir=FLAGS.data_dir, streaming="off")
        try:
            results = evaluation.evaluate(predict, dataset.x_test, dataset.y_test,
                                          dataset.num_classes)
        except ValueError as err:
            raise ValueError(f"{err} (--dataset={FLAGS.dataset})") from None
    print(f"{FLAGS.model} on {dataset.name} test ({results['num_examples']} examples): "
          f"accuracy {results['accuracy']:.4f}")
    print("| class | accuracy |\n|---|---|")
    for name, acc in zip(dataset.class_names, results["per_class_accuracy"]):
        print(f"| {name} | {acc:.4f} |")
    if FLAGS.output:
        with run_flags.one_line_errors("Nothing was written."):
            write_json(FLAGS.output, results)
