"""A small image folder (3 classes of PNGs) shared by tests/test_run_data.py and
tests/test_scripts.py. A helper module, not a test file."""

import os

import keras
import numpy as np


def image_folder(root, per_class=12, size=(10, 10), seed=0):
    """Writes ``root/c0..c2/NN.png``: ``per_class`` RGB images per class, class-shaded."""
    rng = np.random.default_rng(seed)
    for c in range(3):
        os.makedirs(root / f"c{c}", exist_ok=True)
        for i in range(per_class):
            img = np.full((*size, 3), 60 * c, np.uint8) + rng.integers(0, 40, (*size, 3),
                                                                          dtype=np.uint8)
            keras.utils.save_img(root / f"c{c}" / f"{i:02d}.png", img, scale=False)
