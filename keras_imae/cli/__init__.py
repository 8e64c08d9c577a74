"""The command-line programs, installed as console commands (``setup.cfg``).

One private module per command -- ``_train``, ``_evaluate``, ``_export``, ``_plot``,
``_compare``, ``_find_label_issues`` -- each with ``define_flags(flag_values)`` and
``main(argv)``, its docstring the ``--help`` text. The functions here are the entry points
(``keras-imae-train`` runs :func:`train`; ``scripts/train.py`` calls the same function): each
silences TensorFlow's start-up chatter, *then* imports its command (which imports TensorFlow)
and runs it under absl. Importing this package imports neither TensorFlow nor a command.
"""

import contextlib
import importlib
import os
import re
import sys
import tempfile

__all__ = ["COMMANDS", "compare", "evaluate", "export", "find_label_issues", "launch", "plot",
           "train"]

COMMANDS = ("train", "evaluate", "export", "plot", "compare", "find_label_issues")
# What TensorFlow's native libraries print while it loads on a machine without a GPU (each
# line twice: two libraries log it) -- absl/TSL logging that TF_CPP_MIN_LOG_LEVEL misses.
_CHATTER = re.compile(r"absl::InitializeLog\(\)|(cudart_stub|cuda_platform|cuda_driver|"
                      r"cuda_diagnostics|cuda_dnn|cuda_fft|cuda_blas|cpu_feature_guard)\.cc|"
                      r"rebuild TensorFlow with the appropriate compiler flags")


@contextlib.contextmanager
def _native_stderr_filtered(pattern):
    """Capture file descriptor 2 (native libraries write there directly) and write back
    every line but those matching ``pattern``."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not pattern.search(line)))


def quiet_tensorflow():
    """Load TensorFlow without its start-up chatter, unless ``TF_CPP_MIN_LOG_LEVEL`` is set
    (``export TF_CPP_MIN_LOG_LEVEL=0`` shows everything). Call it before TensorFlow is first
    imported: an entry point's first act."""
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ or "tensorflow" in sys.modules:
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # TensorFlow's C++ INFO and WARNING lines
    with _native_stderr_filtered(_CHATTER):
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # "failed call to cuInit" on a CPU machine


def usage(doc, flag_values, names):
    """``--help``'s text: a command's docstring, then its flags ``names`` by topic (the topic
    is each flag's defining module in absl's terms: ``module_name`` of its ``DEFINE``)."""
    topics = dict.fromkeys(flag_values.find_module_defining_flag(name) for name in names)
    text = "\n".join(flag_values.module_help(topic) for topic in topics)
    # absl %-formats the usage text: a flag's "40%" would garble it
    return f"{doc}\nflags (--helpfull adds absl's and TensorFlow's):\n{text.replace('%', '%%')}"


def launch(name, argv=None):
    """Run command ``name`` (one of :data:`COMMANDS`) as its console command does."""
    quiet_tensorflow()
    from absl import app, flags

    command = importlib.import_module(f"{__name__}._{name}")
    before = set(flags.FLAGS)
    command.define_flags(flags.FLAGS)
    own = [flag for flag in flags.FLAGS if flag not in before]
    # absl prints __main__'s docstring for --help (a console command's __main__ has none)
    sys.modules["__main__"].__doc__ = usage(command.__doc__, flags.FLAGS, own)
    app.run(command.main, argv=argv)


def train():
    """``keras-imae-train``: ``keras_imae.cli._train``."""
    launch("train")


def evaluate():
    """``keras-imae-evaluate``: ``keras_imae.cli._evaluate``."""
    launch("evaluate")


def export():
    """``keras-imae-export``: ``keras_imae.cli._export``."""
    launch("export")


def plot():
    """``keras-imae-plot``: ``keras_imae.cli._plot``."""
    launch("plot")


def compare():
    """``keras-imae-compare``: ``keras_imae.cli._compare``."""
    launch("compare")


def find_label_issues():
    """``keras-imae-find-label-issues``: ``keras_imae.cli._find_label_issues``."""
    launch("find_label_issues")
