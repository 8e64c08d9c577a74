"""A flat emphasis for DM's (or IMAE's) first epochs: this project's schedule."""

import keras

from keras_imae import _checks as checks
from keras_imae.callbacks import _state

__all__ = ["EmphasisWarmup"]


class EmphasisWarmup(keras.callbacks.Callback):
    """Trains the first ``epochs`` epochs with DM's (or IMAE's) emphasis flat, then with the
    loss as configured.

    During the warm-up the compiled loss runs with its emphasis strength at 0 (DM ``beta=0``,
    IMAE ``temperature=0``: ``w = 1``, every example pushed along ``(p - y)`` with the same
    unit force, normalisation and ``max_margin`` unchanged); from epoch ``epochs`` on, with
    its own value. This project's schedule, not the papers'; why (``docs/studies/dm_study.md``,
    part 7): with ``lam > 1`` DM's emphasis is asymmetric around ``p = 1/2``, and under
    class-dependent noise a region the network first assigns to the class its wrong
    labels name is *held* there, its wrong labels near the mode and its clean ones at low
    ``p`` (a second stable state; the majority wins everywhere only when
    ``(1 - r) w(p) > r w(1 - p)`` for every ``p``). With a flat emphasis the majority wins
    everywhere, so the first epochs sort the regions by their majority label before the
    emphasis starts rejecting the wrong labels.

    Switches in ``on_epoch_begin`` (a resumed run restarts in the right phase) by writing the
    loss's state, ``model.loss.state`` (``flat_emphasis``, a variable the compiled step reads
    when it runs: :class:`keras_imae.losses.LossState`); the loss's hyper-parameters never
    change, no step is rebuilt, and a model saved during the warm-up reloads with a flat
    emphasis. The state is left as configured (not flat) when ``fit`` returns. Keras skips
    ``on_train_end`` when an exception escapes ``fit``: a fit interrupted during the warm-up
    leaves the state flat until the next ``fit`` with an ``EmphasisWarmup`` (of any length, 0
    included) or ``model.loss.state.assign(flat_emphasis=False)``.

    With ``ramp_epochs = R > 0`` the emphasis does not switch on at once after the warm-up:
    its strength rises linearly, ``s * beta`` with ``s = min(1, (epoch - epochs + 1) / R)``
    (``loss.state``'s ``emphasis_scale``), so it is whole from epoch ``epochs + R - 1`` on
    (a run's ramp, ``emphasis_ramp``: to its last epoch). This project's schedule too: on a
    model that fits its data only in part, the whole emphasis switched on at once unlearns
    within one epoch the hard clean examples the warm-up fitted, since next to the examples
    near its mode it gives those at small ``p`` almost no weight
    (``docs/studies/instance_dependent_noise.md``).

    Args:
        epochs: number of warm-up epochs, ``>= 0`` (0: no warm-up).
        ramp_epochs: number of epochs over which the emphasis strength rises after the
            warm-up, ``>= 0`` (0: at once, the default).
    """

    def __init__(self, epochs, ramp_epochs=0):
        super().__init__()
        self.epochs = checks.integer("epochs", epochs, low=0)
        self.ramp_epochs = checks.integer("ramp_epochs", ramp_epochs, low=0)

    def scale(self, epoch):
        """The share of the emphasis strength in use at ``epoch`` after the warm-up."""
        if not self.ramp_epochs:
            return 1.0
        return min(1.0, max(0.0, (epoch - self.epochs + 1) / self.ramp_epochs))

    def on_train_begin(self, logs=None):
        if ((self.epochs or self.ramp_epochs)
                and getattr(type(self.model.loss), "EMPHASIS_STRENGTH", None) is None):
            raise ValueError(
                "EmphasisWarmup needs a model compiled with one loss that has an emphasis "
                "strength (keras_imae.losses.DerivativeManipulation or IMAE). Received: "
                f"loss={self.model.loss!r}")

    def on_epoch_begin(self, epoch, logs=None):
        self._set(epoch < self.epochs, self.scale(epoch))

    def on_train_end(self, logs=None):
        self._set(False, 1.0)  # a fit stopped early by a callback, during the warm-up

    def _set(self, flat, scale):
        # With epochs=0 any loss is accepted (no state: nothing to do), and a loss left flat
        # (or ramping) by an earlier fit that raised is reset here too.
        state = _state.loss_state(self.model, "flat_emphasis")
        if state is None:
            return
        now = state.values()
        values = {}
        if bool(now["flat_emphasis"]) != flat:
            values["flat_emphasis"] = flat
        if "emphasis_scale" in now and float(now["emphasis_scale"]) != scale:
            values["emphasis_scale"] = scale
        if values:
            _state.write(self.model, state, **values)
