"""Train a classifier on noisily labelled data and report what it fits.

The installed command `keras-imae-train` is the same program; its code and its --help text are in
keras_imae/cli/_train.py. Run `python scripts/train.py --help` for the flags.
"""

from keras_imae import cli

if __name__ == "__main__":
    cli.train()
