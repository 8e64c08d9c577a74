"""Find the wrong labels of a training set: robust probabilities + confident learning's flags.

The installed command `keras-imae-find-label-issues` is the same program; its code and its
--help text are in keras_imae/cli/_find_label_issues.py. Run
`python scripts/find_label_issues.py --help` for the flags.
"""

from keras_imae import cli

if __name__ == "__main__":
    cli.find_label_issues()
