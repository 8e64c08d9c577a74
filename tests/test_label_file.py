"""Tests for keras_imae.label_file and the ``labels:DIR`` streamed source."""
import os

import keras
import numpy as np
import pytest

from keras_imae import data
from keras_imae.data import _label_file as label_file


def stream_load(name, **kwargs):
    """The source streamed from disk (``data.load(..., streaming="on")``)."""
    return data.load(name, streaming="on", **kwargs)


def eval_with_ids(*args, **kwargs):
    """``data.eval_dataset`` yielding example ids, as the monitor reads it."""
    return data.eval_dataset(*args, with_ids=True, **kwargs)


def _images(root, names, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        os.makedirs(os.path.dirname(root / name), exist_ok=True)
        keras.utils.save_img(root / name, rng.integers(0, 256, (6, 6, 3), dtype=np.uint8),
                             scale=False)


def _write(root, train, test, classes=None, ext=".csv"):
    (root / f"train{ext}").write_text(train)
    (root / f"test{ext}").write_text(test)
    if classes is not None:
        (root / "classes.txt").write_text(classes)


@pytest.fixture
def clothes(tmp_path):
    """Named classes, a header, clean labels for a subset only (as in Clothing1M)."""
    _images(tmp_path, [f"img/{i}.png" for i in range(6)] + ["t/0.png", "t/1.png"])
    _write(tmp_path,
           "path,label,clean_label\n"
           "img/0.png,shirt,shirt\n"
           "img/1.png,coat,\n"
           "\n"
           "img/2.png,shirt,coat\n"
           "img/3.png,coat\n"
           "img/4.png,dress,dress\n"
           "img/5.png,coat,\n",
           "t/0.png,coat\nt/1.png,dress\n")
    return tmp_path


class TestFormat:
    def test_names_header_partial_clean_labels(self, clothes):
        train, test, names = label_file.read_label_files(str(clothes))
        assert names == ["coat", "dress", "shirt"]  # sorted unique training names
        np.testing.assert_array_equal(train.labels, [2, 0, 2, 0, 1, 0])
        np.testing.assert_array_equal(train.clean_labels, [2, -1, 0, -1, 1, -1])
        np.testing.assert_array_equal(test.labels, [0, 1])
        assert os.fsdecode(train.paths[2]) == os.path.join(str(clothes), "img", "2.png")

    def test_integer_ids_tsv_no_header(self, tmp_path):
        _images(tmp_path, ["a.png", "b.png", "c.png"])
        _write(tmp_path, "a.png\t0\t1\nb.png\t3\t3\n", "c.png\t2\n", ext=".tsv")
        train, test, names = label_file.read_label_files(str(tmp_path))
        assert names == ["0", "1", "2", "3"]  # K = max id + 1 over both files
        np.testing.assert_array_equal(train.labels, [0, 3])
        np.testing.assert_array_equal(train.clean_labels, [1, 3])
        np.testing.assert_array_equal(test.labels, [2])

    def test_classes_file_fixes_the_ids_and_accepts_names_or_ids(self, tmp_path):
        _images(tmp_path, ["a.png", "b.png", "c.png"])
        _write(tmp_path, "a.png,zebra\nb.png,1\n", "c.png,ant,zebra\n", classes="zebra\nant\n")
        train, test, names = label_file.read_label_files(str(tmp_path))
        assert names == ["zebra", "ant"]
        np.testing.assert_array_equal(train.labels, [0, 1])
        np.testing.assert_array_equal(test.labels, [0])  # a test clean_label is the truth

    def test_quoted_path_with_delimiter(self, tmp_path):
        _images(tmp_path, ["a,b.png", "c.png"])
        _write(tmp_path, '"a,b.png",0\nc.png,1\n', "c.png,1\n")
        train, _, _ = label_file.read_label_files(str(tmp_path))
        assert train.paths[0].endswith(b"a,b.png")


class TestErrorsNameFileAndLine:
    def test_missing_image(self, clothes):
        (clothes / "img" / "4.png").unlink()
        with pytest.raises(data.DataError, match=r"train\.csv:7: image 'img/4.png' not found"):
            label_file.read_label_files(str(clothes))

    @pytest.mark.parametrize("row", ["img/3.png", "img/3.png,coat,coat,extra", ",coat",
                                     "img/3.png,,coat"])
    def test_bad_row(self, clothes, row):
        text = (clothes / "train.csv").read_text().replace("img/3.png,coat\n", row + "\n")
        (clothes / "train.csv").write_text(text)
        with pytest.raises(data.DataError, match=r"train\.csv:6: bad row .*Expected "
                                                 r"path,label\[,clean_label\]"):
            label_file.read_label_files(str(clothes))

    def test_unknown_test_class(self, clothes):
        (clothes / "test.csv").write_text("t/0.png,coat\nt/1.png,hat\n")
        with pytest.raises(data.DataError, match=r"test\.csv:2: unknown class 'hat' in "
                                                 r"column label"):
            label_file.read_label_files(str(clothes))

    def test_unknown_class_against_classes_file(self, clothes, tmp_path):
        (clothes / "classes.txt").write_text("coat\nshirt\n")
        ids = tmp_path / "ids"  # clothes lives in tmp_path itself
        ids.mkdir()
        _images(ids, ["a.png"])
        _write(ids, "a.png,0,2\n", "a.png,0\n", classes="x\ny\n")  # an id out of range
        for root, match in ((clothes, r"train\.csv:7: unknown class 'dress'"),
                            (ids, r"train\.csv:1: unknown class '2' in column clean_label")):
            with pytest.raises(data.DataError, match=match):
                label_file.read_label_files(str(root))

    def test_split_files(self, tmp_path):
        (tmp_path / "train.csv").write_text("a.png,0\n")
        with pytest.raises(data.DataError, match=r"needs exactly one of test\.csv and test\.tsv"):
            label_file.read_label_files(str(tmp_path))
        (tmp_path / "test.csv").write_text("path,label\n")
        with pytest.raises(data.DataError, match=r"test\.csv: no example rows"):
            label_file.read_label_files(str(tmp_path))

    def test_bad_classes_file(self, clothes):
        (clothes / "classes.txt").write_text("coat\ncoat\n")
        with pytest.raises(data.DataError, match=r"classes\.txt: expected at least 2 distinct"):
            label_file.read_label_files(str(clothes))


def test_labels_source_streams_given_and_clean_labels(clothes):
    st = stream_load(f"labels:{clothes}", image_size=(4, 4))
    np.testing.assert_array_equal(st.given_labels, [2, 0, 2, 0, 1, 0])
    np.testing.assert_array_equal(st.y_train, [2, -1, 0, -1, 1, -1])
    np.testing.assert_array_equal(st.verified, [True, False, True, False, True, False])
    assert st.input_shape == (4, 4, 3) and st.num_classes == 3 and len(st.test) == 2
    x, y = zip(*eval_with_ids(st.train, st.given_labels, st.y_train, batch_size=4)
               .as_numpy_iterator())
    np.testing.assert_array_equal(np.concatenate([b["clean_label"] for b in y]), st.y_train)
    assert np.concatenate(x).shape == (6, 4, 4, 3)
