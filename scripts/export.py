"""Export a .keras model (logits out) as a serving SavedModel, atomically.

The installed command `keras-imae-export` is the same program; its code and its --help text are in
keras_imae/cli/_export.py. Run `python scripts/export.py --help` for the flags.
"""

from keras_imae import cli

if __name__ == "__main__":
    cli.export()
