"""Choosing and creating the tf.distribute strategy a run trains under."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from dnnkit.errors import StrategyError

CHOICES = ("auto", "default", "mirrored", "multi_worker", "tpu")


@dataclass
class StrategyInfo:
    """The strategy object plus what a run records about it."""

    strategy: Any
    name: str
    replicas: int
    is_chief: bool = True
    worker_index: int = 0


def tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG`` environment variable ({} when unset)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw.strip():
        return {}
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise StrategyError(f"TF_CONFIG: expected JSON, got {raw[:60]!r} ({exc.msg})") from None
    if not isinstance(cfg, dict):
        raise StrategyError(f"TF_CONFIG: expected a JSON object, got {raw[:60]!r}")
    return cfg


def _worker_count(cfg: dict[str, Any]) -> int:
    cluster = cfg.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def split_cpu(count: int) -> None:
    """Split the host CPU into ``count`` logical devices (tf.distribute without GPUs).

    Must run before TensorFlow initialises its devices.

    Raises:
        StrategyError: if the devices were already initialised with another layout.
    """
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)])
    except RuntimeError as exc:
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise StrategyError(f"cpu_devices: cannot split the CPU into {count} devices after "
                                f"TensorFlow started ({exc})") from None


def _tpu_available() -> bool:
    # Asking a TPUClusterResolver off Google Cloud may wait on a metadata server; only
    # ask where a TPU is plausible.
    return bool(os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
                or os.path.exists("/dev/accel0") or os.path.exists("/dev/vfio/0"))


def _tpu(tf: Any) -> Any:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(os.environ.get("TPU_NAME", ""))
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        raise StrategyError(f"strategy: 'tpu' requested but no TPU answered ({exc})") from None


def _mirrored(tf: Any) -> Any:
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)


def choose_strategy(name: str = "auto") -> StrategyInfo:
    """Create the tf.distribute strategy to train under.

    ``auto`` picks TPUStrategy when a TPU answers, MultiWorkerMirroredStrategy when
    TF_CONFIG names several workers, MirroredStrategy with more than one GPU, else the
    default strategy. ``mirrored`` without GPUs mirrors over the logical CPU devices.

    Args:
        name: one of ``auto``, ``default``, ``mirrored``, ``multi_worker``, ``tpu``.

    Returns:
        A :class:`StrategyInfo`.

    Raises:
        StrategyError: if the name is unknown or that strategy cannot be created here.
    """
    if name not in CHOICES:
        raise StrategyError(f"strategy: expected one of {', '.join(CHOICES)}, got {name!r}")
    cfg = tf_config()
    import tensorflow as tf

    if name == "auto":
        if _tpu_available():
            name = "tpu"
        elif _worker_count(cfg) > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            name = "default"
    if name == "default":
        strategy = tf.distribute.get_strategy()
    elif name == "mirrored":
        strategy = _mirrored(tf)
    elif name == "multi_worker":
        if _worker_count(cfg) < 1 or "task" not in cfg:
            raise StrategyError("strategy: 'multi_worker' needs TF_CONFIG with a cluster of "
                                "workers and this process's task, got "
                                f"{os.environ.get('TF_CONFIG', 'no TF_CONFIG')!r}")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = _tpu(tf)
    task = cfg.get("task", {}) if name == "multi_worker" else {}
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = bool(cfg.get("cluster", {}).get("chief"))
    is_chief = kind == "chief" or (not has_chief and kind == "worker" and index == 0)
    return StrategyInfo(strategy=strategy, name=name, replicas=strategy.num_replicas_in_sync,
                        is_chief=is_chief, worker_index=index if kind == "worker" else 0)


def fix_multi_worker_build(model: Any, info: StrategyInfo) -> None:
    """Work around two Keras 3.15 bugs under MultiWorkerMirroredStrategy.

    1. After each step ``fit`` reduces the step's logs with ``strategy.reduce("MEAN", v,
       axis=0)``, which fails on the scalar losses and metrics ("Invalid reduction
       dimension 0 for input with 0 dimensions"). Scalars are reduced over replicas
       (axis=None) instead; other values keep Keras's own reduction.
    2. ``fit`` builds a model by ``strategy.reduce("MEAN", first_batch)`` outside a
    tf.function; in multi-worker mode that eager collective fails ("Attempt to convert a
    value (PerReplica ...)"). Only the batch's shapes and dtypes matter for that build, so
    for this model the local replica's batch is used instead.
    """
    if info.name != "multi_worker":
        return
    import types

    import tensorflow as tf

    strategy = info.strategy

    def local(value: Any) -> Any:
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def _maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(local, next(it))
                break
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    model._maybe_symbolic_build = types.MethodType(_maybe_symbolic_build, model)

    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer.reduce_per_replica, "_dnnkit_patched", False):
        return
    original = tf_trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            def scalar_safe(v: Any) -> Any:
                # With one local replica ``run`` returns plain tensors, not PerReplica.
                if strategy.experimental_local_results(v)[0].shape.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)
            return tf.nest.map_structure(scalar_safe, values)
        return original(values, strategy, reduction)

    reduce_per_replica._dnnkit_patched = True
    tf_trainer.reduce_per_replica = reduce_per_replica
