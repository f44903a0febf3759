"""TensorFlow setup for training: import it, split the CPU into logical devices, pick a strategy.

One machine: MirroredStrategy over its GPUs (or logical CPUs), else the default strategy.
Several machines: TF_CONFIG (tf.distribute's cluster description) naming two or more tasks
selects MultiWorkerMirroredStrategy, created before any other TensorFlow work (see
start_multi_worker); each global batch is split between the workers and their gradients are
all-reduced, so the run takes the optimizer steps a one-machine run takes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from charwright.runtime.errors import ConfigError, require

DISTRIBUTE = ("auto", "mirrored", "none")


def import_tf(cpu_devices: int, cluster: "Cluster | None" = None):
    """Imports TensorFlow (BackendUnavailable naming the [train] extra if it is missing) and,
    with cpu_devices > 1, splits the CPU into that many logical devices; with a cluster, starts
    its MultiWorkerMirroredStrategy first (waiting for every task)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tf = require("tensorflow", "train")
    require("keras", "train")
    if cluster is not None:
        if cpu_devices > 1:
            raise ConfigError("--cpu-devices splits one machine's CPU; under a multi-worker "
                              "TF_CONFIG each worker trains on its own device: drop it")
        start_multi_worker(tf, cluster)
        return tf
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


def make_strategy(tf, distribute: str, cpu_devices: int, mode: str,
                  cluster: "Cluster | None" = None):
    """Returns (strategy, name in words): the cluster's multi-worker strategy, mirrored over
    several GPUs or logical CPUs, else the default strategy."""
    if distribute not in DISTRIBUTE:
        raise ConfigError(f"distribute {distribute!r}: use {', '.join(DISTRIBUTE)}")
    if cluster is not None:
        check_cluster(cluster, distribute, mode)
        strategy = start_multi_worker(tf, cluster)
        return strategy, (f"multi-worker mirrored over {cluster.tasks} workers "
                          f"({strategy.num_replicas_in_sync} replicas; this is "
                          f"{cluster.describe()})")
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


# --- several machines: TF_CONFIG and MultiWorkerMirroredStrategy -------------------------------

# seconds a collective may wait for the other workers before it fails (a hung, not a dead,
# worker: a dead one is noticed sooner through the coordination service's heartbeats)
TIMEOUT_ENV = "CHARWRIGHT_WORKER_TIMEOUT"
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class Cluster:
    """This process's place in a TF_CONFIG cluster of several training tasks.

    The chief is the task of type "chief", or worker 0 where the cluster names no chief (the
    tf.distribute convention); only the chief writes RUN_DIR."""

    tasks: int
    task_type: str
    task_index: int
    is_chief: bool
    timeout: float

    def describe(self) -> str:
        role = "the chief" if self.is_chief else "not the chief: writes nothing to RUN_DIR"
        return f"{self.task_type} {self.task_index}, {role}"


def cluster_from_env(environ=None) -> Cluster | None:
    """The cluster TF_CONFIG describes, or None where it is unset or names a single task.

    Raises:
        ConfigError: TF_CONFIG is not JSON, lacks cluster/task, names a task that is not in
            its cluster, holds a parameter server or evaluator, or the timeout is no number.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("TF_CONFIG", "").strip()
    if not raw:
        return None
    try:
        cfg = json.loads(raw)
        cluster, task = cfg["cluster"], cfg["task"]
        task_type, task_index = str(task["type"]), int(task["index"])
        sizes = {str(k): len(v) for k, v in cluster.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"TF_CONFIG is not a tf.distribute cluster ({e!r}); see the README "
                          "section on training across machines") from None
    odd = sorted(set(sizes) - {"chief", "worker"})
    if odd:
        raise ConfigError(f"TF_CONFIG names {', '.join(odd)} tasks; charwright trains with "
                          "MultiWorkerMirroredStrategy, give only chief and worker tasks")
    if not 0 <= task_index < sizes.get(task_type, 0):
        raise ConfigError(f"TF_CONFIG task {task_type} {task_index} is not in its cluster "
                          f"({sizes})")
    tasks = sum(sizes.values())
    if tasks < 2:
        return None
    try:
        timeout = float(environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
    except ValueError:
        raise ConfigError(f"{TIMEOUT_ENV}={environ.get(TIMEOUT_ENV)!r}: give seconds") from None
    if not (timeout > 0 and timeout < float("inf")):
        raise ConfigError(f"{TIMEOUT_ENV}={environ.get(TIMEOUT_ENV)!r}: give a positive number "
                          "of seconds")
    is_chief = task_type == "chief" or ("chief" not in sizes and task_index == 0)
    return Cluster(tasks, task_type, task_index, is_chief, timeout)


def check_cluster(cluster: Cluster | None, distribute: str, mode: str) -> None:
    """Refuses what a multi-worker run cannot do, before TensorFlow starts."""
    if cluster is None:
        return
    if distribute == "none":
        raise ConfigError(f"TF_CONFIG names {cluster.tasks} training tasks but --distribute "
                          "none trains on one machine: unset TF_CONFIG, or drop --distribute")
    if mode == "stateful":
        raise ConfigError("stateful training runs on one device; unset TF_CONFIG to train it")


_MULTI_WORKER = None  # one per process: TensorFlow's collective runtime starts once


def start_multi_worker(tf, cluster: Cluster):
    """Creates the MultiWorkerMirroredStrategy of `cluster` (once per process; it must come
    before any other TensorFlow work, which would start the runtime without the cluster).
    Blocks until every task of TF_CONFIG has started."""
    global _MULTI_WORKER
    if _MULTI_WORKER is None:
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=cluster.timeout)
        _MULTI_WORKER = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        _patch_keras_multi_worker(tf)
    return _MULTI_WORKER


def _patch_keras_multi_worker(tf) -> None:
    """Two fixes to Keras 3's TensorFlow trainer under MultiWorkerMirroredStrategy, without
    which model.fit fails on its first batch (keras-team/keras#20585, open; seen on Keras 3.15):

    - `_maybe_symbolic_build` reduces the first (x, y) batch across workers with
      strategy.reduce("MEAN", (x, y)), which cannot convert a tuple of PerReplica values:
      the build only needs a batch's shapes and dtypes, so this replica's part is used;
    - `reduce_per_replica` reduces the step's scalar logs with axis=0 across workers
      ("Invalid reduction dimension 0 for input with 0 dimensions"): scalars take axis=None.
    Applied only in a process that runs a multi-worker strategy."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as kt

    if getattr(kt, "_charwright_patched", False):
        return
    original_reduce = kt.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction="auto"):
        if reduction in ("auto", "mean") and kt._collective_all_reduce_multi_worker(strategy):
            def one(v):
                if not isinstance(v, tf.distribute.DistributedValues):
                    return v
                return strategy.reduce("MEAN", v, axis=0 if v.values[0].shape.rank else None)
            return tree.map_structure(one, values)
        return original_reduce(values, strategy, reduction)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        strategy = self.distribute_strategy
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tree.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0]
                    if isinstance(v, tf.distribute.DistributedValues) else v, next(it))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    kt.reduce_per_replica = reduce_per_replica
    kt.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    kt._charwright_patched = True
