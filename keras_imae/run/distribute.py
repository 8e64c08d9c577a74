"""Distribution strategy, mixed precision and resumable training, each from a string.

``get_strategy(name)`` returns a ``tf.distribute.Strategy``; build and compile the model in
``strategy.scope()`` and call ``fit`` as usual (``RobustModel`` also works under
``MultiWorkerMirroredStrategy``, see :mod:`keras_imae.models`). A requested device that is
absent is an error, never a silent fallback; only ``"auto"`` chooses.

Global batch: under a strategy the ``batch_size`` of the dataset is the *global* batch, split
across replicas; DM/IMAE's ``normalize="batch"`` mean is taken over the global batch.

XLA: ``jit_compile`` is simply passed to ``model.compile``; nothing here changes it. Keras'
default ``"auto"`` turns XLA off on CPU-only hosts and under any ``tf.distribute`` strategy.
``jit_compile=True`` works with the default/one-device strategy; under a multi-device
``MirroredStrategy`` Keras 3.15 compiles the whole distributed step and XLA fails ("Trying to
access resource ... located in device ...CPU:1 from device ...CPU:0"), for any model.
"""

import json
import os

import keras
import tensorflow as tf

from keras_imae.run_folder import RunBackup

__all__ = ["PRECISIONS", "STRATEGIES", "backup_and_restore", "get_strategy", "set_precision"]

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker", "tpu", "auto")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def _canonical(device):
    """``"/gpu:0"`` or ``"/job:localhost/.../device:GPU:0"`` -> ``("GPU", 0)``."""
    spec = tf.DeviceSpec.from_string(device)
    return (spec.device_type or "").upper(), spec.device_index


def _check_devices(devices):
    available = {_canonical(d.name) for d in tf.config.list_logical_devices()}
    for device in devices:
        try:
            known = _canonical(device) in available
        except ValueError:
            known = False
        if not known:
            raise ValueError(
                f"Device {device!r} in argument `devices` is not available. Available "
                f"devices: {[d.name for d in tf.config.list_logical_devices()]}"
            )


def _tf_config():
    """The parsed ``TF_CONFIG`` environment variable, validated for multi-worker training."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise RuntimeError(
            "Strategy 'multi_worker' needs the TF_CONFIG environment variable, e.g. "
            '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}. It is not set.'
        )
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        task_type, index = config["task"]["type"], int(config["task"]["index"])
    except (ValueError, KeyError, TypeError) as e:
        raise RuntimeError(
            "Invalid TF_CONFIG for strategy 'multi_worker': expected JSON with "
            "cluster.worker (list of host:port) and task.type / task.index. "
            f"Received: TF_CONFIG={raw!r} ({type(e).__name__}: {e})"
        ) from e
    tasks = config["cluster"].get(task_type)
    if not isinstance(workers, list) or not workers or not tasks or not 0 <= index < len(tasks):
        raise RuntimeError(
            "Invalid TF_CONFIG for strategy 'multi_worker': the task "
            f"{task_type}:{index} is not in the cluster. Received: TF_CONFIG={raw!r}"
        )
    return config


def _tpu_strategy(tpu):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, OSError, tf.errors.OpError) as e:
        raise RuntimeError(
            f"Strategy 'tpu' requested but no TPU was found at tpu={tpu!r} "
            f"({type(e).__name__}: {e})"
        ) from e
    return tf.distribute.TPUStrategy(resolver)


def _check_arguments(name, tpu, devices):
    if name not in STRATEGIES:
        raise ValueError(
            f"Invalid value for argument `name`. Expected one of {list(STRATEGIES)}. "
            f"Received: name={name!r}"
        )
    if devices is not None and name != "mirrored":
        raise ValueError(
            "Argument `devices` is only used with name='mirrored'. "
            f"Received: devices={devices}, name={name!r}"
        )
    if tpu is not None and name not in ("tpu", "auto"):
        raise ValueError(
            f"Argument `tpu` is only used with name='tpu' or 'auto'. Received: tpu={tpu!r}, "
            f"name={name!r}"
        )


def _mirrored(devices, gpus):
    """``MirroredStrategy`` over ``devices``, or all local GPUs when ``None``."""
    if devices is None:
        if not gpus:
            raise RuntimeError(
                "Strategy 'mirrored' requested but no GPU is available. Pass "
                "devices=[...] (e.g. ['/cpu:0', '/cpu:1'] with logical CPUs) or use "
                "name='default'."
            )
        devices = [d.name for d in gpus]
    devices = list(devices)
    if not devices:
        raise ValueError("Argument `devices` must not be empty. Received: devices=[]")
    _check_devices(devices)
    # TF picks CollectiveAllReduce for CPU-only device lists; its collective instance
    # keys collide between several MirroredStrategy objects in one process (shape
    # mismatch errors once a loss all-reduces inside its gradient, as DM/IMAE do).
    # Reducing on one device avoids collectives; GPUs keep TF's choice (NCCL).
    cpu_only = all(_canonical(d)[0] == "CPU" for d in devices)
    return tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice() if cpu_only else None
    )


def get_strategy(name="default", *, tpu=None, devices=None):
    """A ``tf.distribute.Strategy`` chosen by name.

    - ``"default"``: the default (no-op) strategy, one device.
    - ``"one_device"``: ``OneDeviceStrategy`` on the first GPU, else the CPU.
    - ``"mirrored"``: ``MirroredStrategy`` over all local GPUs, or over ``devices`` (e.g.
      ``["/cpu:0", "/cpu:1"]``, reduced with ``ReductionToOneDevice``). No GPU and no
      ``devices`` is an error.
    - ``"multi_worker"``: ``MultiWorkerMirroredStrategy`` configured from ``TF_CONFIG``
      (missing or invalid is an error). Create it at program start, before other TF ops.
    - ``"tpu"``: ``TPUClusterResolver(tpu=tpu)`` + ``initialize_tpu_system`` +
      ``TPUStrategy`` (``tpu``: name or ``grpc://`` address; ``None`` for a TPU VM). No TPU
      found is an error.
    - ``"auto"``: ``"tpu"`` if a TPU is given (``tpu``, ``TPU_NAME``) or local, else
      ``"mirrored"`` over all GPUs if any, else ``"default"``.

    Args:
        name: One of :data:`STRATEGIES`.
        tpu: TPU name/address, for ``"tpu"`` and ``"auto"`` only.
        devices: Explicit device list, for ``"mirrored"`` only.

    Returns:
        A ``tf.distribute.Strategy``.
    """
    _check_arguments(name, tpu, devices)
    if name == "multi_worker":  # Before any device query: collectives need a fresh runtime.
        _tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tpu)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "auto":
        has_tpu = (
            tpu is not None
            or bool(os.environ.get("TPU_NAME"))
            or bool(tf.config.list_physical_devices("TPU"))
        )
        if has_tpu:
            return _tpu_strategy(tpu)
        if gpus:
            return tf.distribute.MirroredStrategy([d.name for d in gpus])
        return tf.distribute.get_strategy()
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    return _mirrored(devices, gpus)


def set_precision(policy):
    """Sets Keras' global dtype policy: ``"float32"``, ``"mixed_float16"`` or
    ``"mixed_bfloat16"``.

    Call it before building the model. Under ``mixed_float16``, ``compile`` wraps the
    optimizer in ``keras.optimizers.LossScaleOptimizer`` and ``RobustModel.train_step``
    scales the loss through it. Models from :func:`keras_imae.models.build_model` output
    float32 logits; keras_imae losses compute in float32 whatever the input dtype.

    Args:
        policy: One of :data:`PRECISIONS`.

    Returns:
        The ``keras.DTypePolicy`` now in effect.
    """
    if policy not in PRECISIONS:
        raise ValueError(
            f"Invalid value for argument `policy`. Expected one of {list(PRECISIONS)}. "
            f"Received: policy={policy!r}"
        )
    keras.mixed_precision.set_dtype_policy(policy)
    return keras.mixed_precision.dtype_policy()


def backup_and_restore(model_dir, *, delete_when_done=True):
    """The run's backup callback, saving to ``<model_dir>/backup`` after every epoch
    (:class:`keras_imae.run_folder.RunBackup`: written crash-consistently, restored
    from the newest generation that reads back whole).

    Pass it to every ``fit`` of a run: if the run is interrupted, calling the same ``fit``
    again (same ``epochs``, same ``model_dir``) restores weights, optimizer state and the
    epoch counter and trains only the remaining epochs, so the run ends after exactly the
    planned number of epochs; the backup is deleted when ``fit`` completes unless
    ``delete_when_done=False``. Under ``MultiWorkerMirroredStrategy`` every worker passes
    its own ``model_dir``.
    """
    return RunBackup(os.path.join(os.fspath(model_dir), "backup"),
                     delete_when_done=delete_when_done)
