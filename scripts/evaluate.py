"""Evaluate a SavedModel folder or a .keras file on a dataset's test split.

The installed command `keras-imae-evaluate` is the same program; its code and its --help text are in
keras_imae/cli/_evaluate.py. Run `python scripts/evaluate.py --help` for the flags.
"""

from keras_imae import cli

if __name__ == "__main__":
    cli.evaluate()
