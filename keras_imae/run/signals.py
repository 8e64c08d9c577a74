"""Stopping on SIGTERM or Ctrl-C at a safe point, not inside whatever code was running.

A signal handler that raises can fire anywhere -- inside TensorFlow's garbage-collection
callback, say, where the exception is printed ("Exception ignored in ...") and swallowed, and
the run goes on. Inside :func:`deferred` (what the scripts run in) the handler only records
the signal; :class:`StopOnSignal` (a callback of every ``fit`` a run makes) and :func:`check`
(between tuning points and before an export) raise :class:`Stopped` at the next boundary:
before the next batch, or once an epoch's backup is written. A second Ctrl-C raises at once.
Outside :func:`deferred` nothing changes: :func:`check` does nothing.
"""

import contextlib
import signal

import keras

__all__ = ["StopOnSignal", "Stopped", "check", "deferred"]

_received = []  # signal numbers recorded by the handler inside deferred()


class Stopped(KeyboardInterrupt):
    """The run stopped at a safe point after signal ``signum`` (SIGTERM or SIGINT)."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def check():
    """Raise :class:`Stopped` if a signal was recorded (inside :func:`deferred`)."""
    if _received:
        raise Stopped(_received[0])


def _record(signum, frame):
    if signum == signal.SIGINT and signal.SIGINT in _received:
        raise KeyboardInterrupt  # a second Ctrl-C: stop now, wherever that is
    _received.append(signum)


@contextlib.contextmanager
def deferred():
    """Record SIGTERM and SIGINT instead of raising them, until the block ends."""
    previous = {signum: signal.signal(signum, _record)
                for signum in (signal.SIGTERM, signal.SIGINT)}
    _received.clear()
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received.clear()


class StopOnSignal(keras.callbacks.Callback):
    """Raise :class:`Stopped` before the next batch, or at the end of an epoch, once a signal
    was recorded. Pass it last, so that an epoch's log row and backup are written first."""

    def on_train_batch_begin(self, batch, logs=None):
        check()

    def on_epoch_end(self, epoch, logs=None):
        check()
