"""Compare every loss on the same data, noise and budget (tuned on a noisy validation split).

The installed command `keras-imae-compare` is the same program; its code and its --help text are in
keras_imae/cli/_compare.py. Run `python scripts/compare.py --help` for the flags.
"""

from keras_imae import cli

if __name__ == "__main__":
    cli.compare()
