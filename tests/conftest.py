"""Test-session set-up.

The CPU is split into two logical devices before TensorFlow initialises its runtime, so
``tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])`` can stand in for two GPUs. This must
happen before any TensorFlow op runs, hence at conftest import.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
