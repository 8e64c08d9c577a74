"""Plot emphasis curves w(p) of every loss and of DM, and/or a run's per-epoch fit curves.

The installed command `keras-imae-plot` is the same program; its code and its --help text are in
keras_imae/cli/_plot.py. Run `python scripts/plot.py --help` for the flags.
"""

from keras_imae import cli

if __name__ == "__main__":
    cli.plot()
