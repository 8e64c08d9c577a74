"""Tests for keras_imae.optimizers: the papers' recipe and its schedules."""

import keras
import numpy as np
import pytest

from keras_imae.config import optimizers

make = optimizers.make_optimizer


def lr_at(optimizer, step):
    lr = optimizer.learning_rate
    return float(lr(step)) if callable(lr) else float(lr)


def test_make_optimizer_step_cosine_constant_adam():
    opt = make(learning_rate=0.1, schedule="step", epochs=8, steps_per_epoch=10)
    assert isinstance(opt, keras.optimizers.SGD) and opt.momentum == 0.9
    sched = opt._learning_rate  # the schedule object
    assert [float(sched(s)) for s in (0, 39, 41, 59, 61, 79)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    opt = make(learning_rate=0.1, schedule="step", epochs=8, steps_per_epoch=10,
               decay_epochs=(2,), decay_rate=0.5)
    assert [float(opt._learning_rate(s)) for s in (19, 21, 79)] == pytest.approx([0.1, 0.05, 0.05])
    opt = make(learning_rate=0.2, schedule="cosine", epochs=2, steps_per_epoch=5)
    assert float(opt._learning_rate(0)) == pytest.approx(0.2)
    assert float(opt._learning_rate(5)) == pytest.approx(0.1)
    assert float(opt._learning_rate(10)) == pytest.approx(0.0, abs=1e-7)
    opt = make(learning_rate=0.05, momentum=0.5)
    assert opt.momentum == 0.5 and float(opt.learning_rate) == pytest.approx(0.05)
    assert isinstance(make("adam", learning_rate=1e-3), keras.optimizers.Adam)
    adamw = make("adamw", learning_rate=1e-3, weight_decay=0.05)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.weight_decay == 0.05


def test_adamw_decay_is_decoupled_from_the_gradient():
    # Zero gradient: Adam(W) moves nothing but the decay, w <- w * (1 - lr * wd).
    var = keras.Variable(np.float32([2.0, -4.0]))
    opt = make("adamw", learning_rate=0.1, weight_decay=0.5)
    opt.apply_gradients([(np.float32([0.0, 0.0]), var)])
    np.testing.assert_allclose(var.numpy(), [2.0 * 0.95, -4.0 * 0.95], rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(learning_rate=0.1, schedule="linear"), "schedule"),
        (dict(learning_rate=0.1, decay_epochs=(3,)), "decay_epochs"),
        (dict(learning_rate=0.1, schedule="step", epochs=10), "steps_per_epoch"),
        (dict(learning_rate=0.1, schedule="step", epochs=10, steps_per_epoch=3,
              decay_epochs=(6, 4)), "increasing"),
        (dict(name="adam", learning_rate=0.1, momentum=0.9), "momentum"),
        (dict(name="rmsprop", learning_rate=0.1), "'sgd', 'adam' or 'adamw'"),
        (dict(name="adamw", learning_rate=0.1, momentum=0.9), "only used by SGD"),
        (dict(name="sgd", learning_rate=0.1, weight_decay=0.1), "decoupled decay"),
        (dict(name="adamw", learning_rate=0.1, weight_decay=-1.0), "weight_decay=-1.0"),
    ],
)
def test_make_optimizer_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


# -- mislabel ranking --------------------------------------------------------------------------
