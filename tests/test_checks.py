"""Tests for keras_imae.checks: the one checker of each kind."""

import math

import numpy as np
import pytest
import tensorflow as tf

from keras_imae import _checks as checks
from keras_imae.losses._labels import tensor_label_ids


@pytest.mark.parametrize("kwargs,value,want", [
    ({}, 0, 0.0), ({}, np.float32(2.5), 2.5), ({"high": 1.0}, 1, 1.0),
    ({"high": 1.0, "low_open": True}, 1e-9, 1e-9),
])
def test_number_accepts_and_returns_a_float(kwargs, value, want):
    got = checks.number("x", value, **kwargs)
    assert got == want and type(got) is float


@pytest.mark.parametrize("kwargs,value,expected", [
    ({}, -1.0, "a finite float >= 0"),
    ({}, math.inf, "a finite float >= 0"),
    ({}, float("nan"), "a finite float >= 0"),
    ({"low_open": True}, 0.0, "a finite float > 0"),
    ({"high": 1.0}, 1.5, r"a float in \[0, 1\]"),
    ({"high": 1.0, "low_open": True}, 0.0, r"a float in \(0, 1\]"),
    ({"high": 1.0, "high_open": True}, 1.0, r"a float in \[0, 1\)"),
    ({}, True, "a finite float >= 0"),
    ({}, "0.5", "a finite float >= 0"),
    ({}, None, "a finite float >= 0"),
])
def test_number_names_the_argument_and_the_value(kwargs, value, expected):
    with pytest.raises(ValueError, match=rf"Invalid value for argument `x`. Expected {expected}. "
                                         rf"Received: x={value!r}"):
        checks.number("x", value, **kwargs)


@pytest.mark.parametrize("kwargs,value,expected", [
    ({"low": 1}, 0, "a positive integer"),
    ({"low": 2}, 1, "an integer >= 2"),
    ({"low": 2, "high": 5}, 6, r"an integer in \[2, 5\]"),
    ({"low": 1}, 2.0, "a positive integer"),
    ({"low": 1}, True, "a positive integer"),
])
def test_integer(kwargs, value, expected):
    assert checks.integer("n", np.int64(3), **kwargs) == 3
    with pytest.raises(ValueError, match=rf"`n`. Expected {expected}. Received: n={value!r}"):
        checks.integer("n", value, **kwargs)


def test_label_ids_squeezes_and_converts_one_hot():
    np.testing.assert_array_equal(checks.label_ids([[2], [0]], 3), [2, 0])
    assert checks.label_ids(np.array([1, 2], np.int32)).dtype == np.int32  # dtype kept
    one_hot = np.eye(3)[[2, 0, 1]]
    ids = checks.label_ids(one_hot, 3, one_hot=True)
    np.testing.assert_array_equal(ids, [2, 0, 1])
    assert ids.dtype == np.int64


@pytest.mark.parametrize("labels,kwargs,match", [
    ([0.0, 1.0], {}, r"integer class ids. Received: labels with shape \(2,\) and dtype float"),
    ([True, False], {}, "dtype bool"),
    (np.eye(3), {}, r"shape \(3, 3\)"),  # one-hot only where allowed
    ([0, 3], {"num_classes": 3}, r"class ids in \[0, 3\). Received: labels\[1\]=3"),
    ([[0.5, 0.5], [1, 0]], {"one_hot": True}, r"soft labels are not supported\). "
                                               r"Received: labels\[0\]"),
    (np.eye(3), {"one_hot": True, "num_classes": 4}, "Expected 4 one-hot columns"),
])
def test_label_ids_errors(labels, kwargs, match):
    with pytest.raises(ValueError, match=match):
        checks.label_ids(labels, **kwargs)


def test_tensor_label_ids_accepts_integer_valued_floats_and_one_hot():
    logits = tf.zeros((3, 4))
    for y in ([3, 0, 1], np.float32([3, 0, 1]), np.float32([[3], [0], [1]]), np.eye(4)[[3, 0, 1]]):
        np.testing.assert_array_equal(tensor_label_ids(y, logits), [3, 0, 1])


@pytest.mark.parametrize("y,error,match", [
    ([0, 4, 1], tf.errors.InvalidArgumentError, r"\[0, num_classes\)"),
    (np.float32([0.5, 1, 2]), tf.errors.InvalidArgumentError, "integers"),
    (np.full((3, 4), 0.25, np.float32), tf.errors.InvalidArgumentError, "one-hot"),
    (np.zeros((3, 2)), ValueError, "y_true.shape"),
])
def test_tensor_label_ids_errors(y, error, match):
    with pytest.raises(error, match=match):
        tensor_label_ids(y, tf.zeros((3, 4)))
