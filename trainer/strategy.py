"""TensorFlow setup for training: import it, split the CPU into logical devices, pick a strategy."""

from __future__ import annotations

import os

from charwright.runtime.errors import ConfigError, require

DISTRIBUTE = ("auto", "mirrored", "none")


def import_tf(cpu_devices: int):
    """Imports TensorFlow (BackendUnavailable naming the [train] extra if it is missing) and,
    with cpu_devices > 1, splits the CPU into that many logical devices."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = require("tensorflow", "train")
    require("keras", "train")
    if cpu_devices > 1:
        cpus = tf.config.list_physical_devices("CPU")
        try:
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * cpu_devices
            )
        except RuntimeError:
            # already initialised with the same split (a second run in one process) is fine
            if len(tf.config.list_logical_devices("CPU")) != cpu_devices:
                raise ConfigError(
                    "cannot split the CPU into logical devices after TensorFlow started; "
                    "run in a fresh process"
                ) from None
    return tf


def make_strategy(tf, distribute: str, cpu_devices: int, mode: str):
    """Returns (strategy, name in words): mirrored over several GPUs or logical CPUs, else the
    default strategy."""
    if distribute not in DISTRIBUTE:
        raise ConfigError(f"distribute {distribute!r}: use {', '.join(DISTRIBUTE)}")
    if distribute == "none":
        return tf.distribute.get_strategy(), "default"
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        devices = [d.name for d in gpus]
    elif cpu_devices > 1:
        devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    else:
        devices = []
    if distribute == "mirrored" and len(devices) < 2:
        raise ConfigError("--distribute mirrored needs two or more devices (GPUs or --cpu-devices)")
    if len(devices) >= 2:
        if mode == "stateful":
            raise ConfigError("stateful training runs on one device; pass --distribute none")
        return tf.distribute.MirroredStrategy(devices), f"mirrored over {len(devices)} devices"
    return tf.distribute.get_strategy(), "default"
