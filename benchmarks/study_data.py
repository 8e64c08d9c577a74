"""Offline datasets for the studies (no download), written as npz files that ``--dataset=npz:``
reads, so a study runs the library exactly as a user would.

    python benchmarks/study_data.py --out=/tmp/study_data [--only=digits28x,mnist1d]

- ``digits28x``: scikit-learn's digits (the library's 1,347 / 450 split) upsampled to 28x28
  (bilinear) and expanded by random affine maps (rotation within 12 degrees, scale 0.9-1.1,
  shift within 2 pixels): 12,000 training images from the 1,347 training images, 3,000 test
  images from the 450 test images only (no leakage). An MNIST-like stand-in, seeded.
- ``mnist1d``: ``mnist1d.make_dataset`` (Greydanus 2020; generated from the package's
  templates: never ``get_dataset()``, which downloads), 15,000 signals: 12,000 / 3,000,
  40 float32 features. Needs the ``study`` extra (``pip install -e ".[study]"``).
- ``mnist1d_image``: the same signals as 40x1 one-channel images, for the CNN (``--model=auto``
  picks ``cnn`` for them).
- ``tabular``: ``sklearn.datasets.make_classification`` (40 features, 20 informative,
  10 classes, 2 clusters per class, class separation 1.0, seed 0): 12,000 / 3,000.
- ``tabular_b``: another ``make_classification`` (30 features, 15 informative, 5 redundant,
  10 classes, 3 clusters per class, class separation 1.5, seed 1): a held-out check.
"""

import argparse
import os

import numpy as np
from scipy import ndimage

NAMES = ("digits28x", "mnist1d", "mnist1d_image", "tabular", "tabular_b")


def _affine_copies(images, labels, count, rng):
    """``count`` random affine copies of 28x28 ``images`` (pixel values 0-16)."""
    index = np.concatenate([rng.permutation(len(images))
                            for _ in range(count // len(images) + 1)])[:count]
    out = np.empty((count, 28, 28), np.float32)
    centre = np.array([13.5, 13.5])
    for n, i in enumerate(index):
        angle, scale = np.deg2rad(rng.uniform(-12, 12)), rng.uniform(0.9, 1.1)
        shift = rng.uniform(-2, 2, size=2)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        matrix = rotation / scale  # output -> input coordinates
        offset = centre - matrix @ (centre + shift)
        out[n] = ndimage.affine_transform(images[i], matrix, offset=offset, order=1,
                                          mode="constant", cval=0.0)
    return np.clip(out, 0, 16)[..., None], labels[index].astype("int64")


def digits28x(seed=0):
    from keras_imae import data

    ds = data.load("digits")
    rng = np.random.default_rng(seed)

    def up(x):
        return np.clip(ndimage.zoom(x[..., 0], (1, 3.5, 3.5), order=1), 0, 16).astype("float32")

    x, y = _affine_copies(up(ds.x_train), ds.y_train, 12000, rng)
    x_test, y_test = _affine_copies(up(ds.x_test), ds.y_test, 3000, rng)
    return x, y, x_test, y_test


def mnist1d():
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 15000
    d = make_dataset(args)
    return (d["x"].astype("float32"), d["y"].astype("int64"),
            d["x_test"].astype("float32"), d["y_test"].astype("int64"))


def _classification(**kwargs):
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=15000, n_classes=10, **kwargs)
    return (x[:12000].astype("float32"), y[:12000].astype("int64"),
            x[12000:].astype("float32"), y[12000:].astype("int64"))


def tabular():
    return _classification(n_features=40, n_informative=20, n_clusters_per_class=2,
                           class_sep=1.0, random_state=0)


def tabular_b():
    return _classification(n_features=30, n_informative=15, n_redundant=5,
                           n_clusters_per_class=3, class_sep=1.5, random_state=1)


def mnist1d_image():
    x, y, x_test, y_test = mnist1d()
    return x[:, :, None, None], y, x_test[:, :, None, None], y_test


def write(name, folder):
    """``folder/name.npz`` (made once; an existing file is reused). Returns its path."""
    path = os.path.join(folder, f"{name}.npz")
    if not os.path.exists(path):
        x, y, x_test, y_test = {"digits28x": digits28x, "mnist1d": mnist1d,
                                "mnist1d_image": mnist1d_image, "tabular": tabular,
                                "tabular_b": tabular_b}[name]()
        os.makedirs(folder, exist_ok=True)
        np.savez_compressed(path, x_train=x, y_train=y, x_test=x_test, y_test=y_test)
    return path


def load(name, folder, num_train=0):
    """The study dataset ``name`` (or the library's ``digits``) as a ``keras_imae.data.Dataset``,
    read back through ``npz:`` as a user's run reads it; ``num_train > 0`` keeps the first
    ``num_train`` training examples."""
    import dataclasses

    from keras_imae import data

    dataset = data.load("digits" if name == "digits" else f"npz:{write(name, folder)}")
    if 0 < num_train < len(dataset.y_train):
        dataset = dataclasses.replace(dataset, train=data.ArrayReader(dataset.x_train[:num_train]),
                                      y_train=dataset.y_train[:num_train])
    return dataset


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", default=",".join(NAMES))
    args = parser.parse_args()
    for name in args.only.split(","):
        print(write(name, args.out))


if __name__ == "__main__":
    main()
