"""Training: strategy, compile, tf.data pipeline, callbacks and the run directory.

A run directory holds ``model.keras`` (the trained model), ``spec.toml`` (the resolved
spec), ``history.json`` (every epoch, across restarts; built from ``history.jsonl``), ``metrics.json`` (test-split
metrics), ``run.json`` (strategy, replicas, timings, the epoch a resumed run started
from), ``checkpoints/best.keras``, ``backup/`` (BackupAndRestore, removed when a run
finishes) and ``logs/`` (TensorBoard).
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.config import Spec, TrainConfig, as_spec, dump_toml, spec_to_dict
from dnnkit.data import load_data
from dnnkit.errors import SpecError
from dnnkit.fileio import save_keras, write_json


@dataclass
class Run:
    """What :func:`train` produced."""

    out_dir: Path
    spec: Spec
    model: Any
    metrics: dict[str, float]
    history: dict[str, list[float]] = field(default_factory=dict)
    strategy: str = "default"
    replicas: int = 1
    train_seconds: float = 0.0
    resumed_from_epoch: int = 0

    @property
    def model_path(self) -> Path:
        return self.out_dir / "model.keras"


def make_tf_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool,
                    seed: int = 0) -> Any:
    """A ``tf.data`` pipeline: shuffle (seeded), batch at the global batch size, prefetch.

    Sharding is by data, so the same pipeline feeds every tf.distribute strategy.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        from dnnkit.signature import rows

        ds = ds.shuffle(rows(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """The optimizer and learning-rate schedule the train config names."""
    import keras

    lr: Any = cfg.learning_rate
    if cfg.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate,
                                                    decay_steps=max(1, cfg.epochs * steps_per_epoch))
    elif cfg.schedule == "step":
        lr = keras.optimizers.schedules.ExponentialDecay(
            cfg.learning_rate, decay_steps=max(1, cfg.step_epochs * steps_per_epoch),
            decay_rate=cfg.step_gamma, staircase=True)
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(lr)
    elif cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay or 0.004)
    else:
        opt = keras.optimizers.RMSprop(lr, momentum=cfg.momentum)
    if cfg.mixed_precision == "float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def make_loss(spec: Spec, losses: Any = None) -> Any:
    """The loss for the spec's head (``auto``) or the one it names: the one loss choice of training
    and of every fine-tuning pass.

    Args:
        spec: the model's spec.
        losses: the module to take the loss class from: ``keras.losses`` (default) or
            ``tf_keras.losses`` (the tfmot engine).
    """
    if losses is None:
        import keras

        losses = keras.losses
    head, loss = spec.model.head, spec.train.loss
    if head == "multiclass":
        name = "CategoricalCrossentropy" if loss == "categorical_crossentropy" else "SparseCategoricalCrossentropy"
        return getattr(losses, name)(from_logits=True)
    return losses.BinaryCrossentropy() if head == "binary" else losses.MeanSquaredError()


def _one_hot(spec: Spec) -> bool:
    return spec.model.head == "multiclass" and spec.train.loss == "categorical_crossentropy"


def prepare_targets(spec: Spec, y: np.ndarray) -> np.ndarray:
    """Labels as the spec's loss wants them: one-hot, a (n, 1) float column, or unchanged."""
    if _one_hot(spec):
        return np.eye(spec.model.num_classes, dtype=np.float32)[y]
    if spec.model.head == "binary":
        return y.astype(np.float32).reshape(-1, 1)
    return y


def predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run a Keras model eagerly over ``x`` in batches (outside any strategy) and return NumPy."""
    import keras

    from dnnkit.signature import batch_for

    batch_size = batch_for(x, batch_size)
    outs = [keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
            for i in range(0, len(x), batch_size)]
    return np.concatenate(outs, axis=0).astype(np.float32)


def fit(model: Any, *args: Any, **kwargs: Any) -> Any:
    """``model.fit`` on a tf.data pipeline, without Keras's warning that ``shuffle`` is
    ignored for tf.data input (the pipeline shuffles)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffle.*", category=UserWarning)
        return model.fit(*args, **kwargs)


def _epoch_recorder(first_epoch_path: Path, history_path: Path, progress_of: int | None = None) -> Any:
    """A callback that logs every finished epoch (flushed to disk before BackupAndRestore
    records it) and the first epoch this process trains (where a resumed run picked up); with
    ``progress_of`` (the number of epochs) it also prints a line per epoch, as Keras's ``verbose=2``."""
    import time

    import keras

    class EpochRecorder(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.first_epoch: int | None = None
            self.started = time.monotonic()

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.started = time.monotonic()
            if self.first_epoch is None:
                self.first_epoch = epoch
                write_json(first_epoch_path, {"first_epoch": epoch})

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            row = {"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}}
            with history_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            if progress_of:
                figures = " - ".join(f"{k}: {v:.4f}" for k, v in row.items() if k != "epoch")
                print(f"  epoch {epoch + 1}/{progress_of} - {time.monotonic() - self.started:.1f} s - {figures}",
                      flush=True)

    return EpochRecorder()


# A one-device run saves its backup and its best checkpoint at most this often (and the best one at the
# end): saving both every epoch was 1.6 s of the digits CNN's 20 epochs (7.3 s against 5.7 s without);
# a killed run then resumes at most this much training earlier than it would have.
SAVE_INTERVAL_S = 3.0


def _backup(folder: Path) -> Any:
    """Keras's BackupAndRestore (resumable after a kill, removed when training ends) that backs up at the
    end of an epoch only when SAVE_INTERVAL_S have passed since the last backup (or the start)."""
    import time

    import keras

    class Backup(keras.callbacks.BackupAndRestore):
        def on_train_begin(self, logs: Any = None) -> None:
            super().on_train_begin(logs)
            self._last_save = time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if time.monotonic() - self._last_save >= SAVE_INTERVAL_S:
                super().on_epoch_end(epoch, logs)
                self._last_save = time.monotonic()

    return Backup(str(folder), delete_checkpoint=True, double_checkpoint=True)


def _best_checkpoint(path: Path) -> Any:
    """``path`` holds the model at its lowest ``val_loss`` so far: each improving epoch's weights are
    copied in memory and written when SAVE_INTERVAL_S have passed since the last write, and at the end."""
    import math
    import time

    import keras

    from dnnkit.fileio import save_keras

    class BestCheckpoint(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.best, self.pending, self.written = math.inf, None, time.monotonic()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            loss = (logs or {}).get("val_loss")
            if loss is None or not float(loss) < self.best:  # NaN never improves
                return
            self.best = float(loss)
            if time.monotonic() - self.written >= SAVE_INTERVAL_S:
                save_keras(self.model, path)  # this epoch's weights are the best
                self.pending, self.written = None, time.monotonic()
            else:
                self.pending = self.model.get_weights()

        def on_train_end(self, logs: Any = None) -> None:
            if self.pending is None:
                return
            current = self.model.get_weights()
            self.model.set_weights(self.pending)
            try:
                save_keras(self.model, path)
            finally:
                self.model.set_weights(current)
            self.pending = None

    return BestCheckpoint()


def _read_history(path: Path) -> dict[str, list[float]]:
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    # A run killed between logging an epoch and backing it up trains that epoch again
    # when resumed; the later row wins.
    by_epoch = {int(row["epoch"]): row for row in rows}
    hist: dict[str, list[float]] = {}
    for epoch in sorted(by_epoch):
        for k, v in by_epoch[epoch].items():
            hist.setdefault(k, []).append(epoch if k == "epoch" else float(v))
    return hist


def train(spec: Spec | str | os.PathLike[str] | dict[str, Any], out_dir: str | os.PathLike[str] | None = None,
          *, strategy: str | None = None, epochs: int | None = None, cpu_devices: int | None = None,
          data: str | None = None, verbose: int = 0, progress: bool = False) -> Run:
    """Train the model a spec describes and fill a run directory.

    Args:
        spec: a Spec, a path to a spec file, or a spec dict.
        out_dir: the run directory (default ``runs/<spec name>``). Re-running the same
            command in a directory with a ``backup/`` resumes the interrupted run.
        strategy: overrides ``train.strategy`` (auto|default|mirrored|multi_worker|tpu).
        epochs: overrides ``train.epochs``.
        cpu_devices: split the CPU into this many logical devices first (tf.distribute
            without GPUs).
        data: overrides ``data.source``.
        verbose: Keras ``fit`` verbosity.
        progress: print one line per finished epoch (loss, metrics, seconds).

    Returns:
        A :class:`Run` with the trained model and its test metrics.

    Raises:
        SpecError, DataError, StrategyError: on bad input, before anything is written.
    """
    spec = as_spec(spec)
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise SpecError(f"epochs: expected a positive integer, got {epochs!r}")
    if cpu_devices is not None and (not isinstance(cpu_devices, int) or cpu_devices < 1):
        raise SpecError(f"cpu_devices: expected a positive integer, got {cpu_devices!r}")
    dataset = load_data(spec, source=data)
    cfg = spec.train
    n_epochs = epochs or cfg.epochs

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from dnnkit.strategy import choose_strategy, fix_multi_worker_build, split_cpu

    if cpu_devices and cpu_devices > 1:
        split_cpu(cpu_devices)
    info = choose_strategy(strategy or cfg.strategy)

    import keras

    from dnnkit.builders import build
    from dnnkit.metrics import keras_metrics, task_metrics

    root = Path(out_dir) if out_dir is not None else Path("runs") / spec.name
    out = root if info.is_chief else root / f".worker-{info.worker_index}"
    out.mkdir(parents=True, exist_ok=True)
    backup_dir = out / "backup"
    resuming = (backup_dir / "training_metadata.json").is_file()
    if not resuming:
        for stale in ("history.jsonl", "model.keras", "metrics.json", "run.json"):
            (out / stale).unlink(missing_ok=True)

    keras.utils.set_random_seed(cfg.seed)
    global_batch = cfg.batch_size * info.replicas
    steps = math.ceil(len(dataset.x_train) / global_batch)
    with info.strategy.scope():
        model = build(spec)
        model.compile(optimizer=make_optimizer(cfg, steps), loss=make_loss(spec),
                      metrics=keras_metrics(spec.model.head, cfg.metrics, spec.model.num_classes,
                                            one_hot=_one_hot(spec)))
    fix_multi_worker_build(model, info)
    train_ds = make_tf_dataset(dataset.x_train, prepare_targets(spec, dataset.y_train), global_batch,
                               shuffle=True, seed=cfg.seed)
    val_ds = make_tf_dataset(dataset.x_val, prepare_targets(spec, dataset.y_val), global_batch,
                             shuffle=False)

    recorder = _epoch_recorder(out / ".first_epoch.json", out / "history.jsonl",
                               progress_of=n_epochs if progress and info.is_chief else None)
    (out / "checkpoints").mkdir(exist_ok=True)
    best_path = out / "checkpoints" / "best.keras"
    if info.name == "default":  # one process, one device: saves at most every SAVE_INTERVAL_S
        saves = [_backup(backup_dir), _best_checkpoint(best_path)]
    else:  # every epoch, as Keras does it (workers must agree on when they save)
        saves = [keras.callbacks.BackupAndRestore(str(backup_dir), delete_checkpoint=True, double_checkpoint=True),
                 keras.callbacks.ModelCheckpoint(str(best_path), monitor="val_loss", save_best_only=True)]
    callbacks = [recorder, *saves]  # the recorder first: an epoch is logged before it counts as done
    if cfg.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=cfg.early_stopping_patience, restore_best_weights=True))
    if cfg.tensorboard and info.is_chief:
        callbacks.append(keras.callbacks.TensorBoard(str(out / "logs")))

    start = time.perf_counter()
    fit(model, train_ds, validation_data=val_ds, epochs=n_epochs, callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - start

    y_pred = predict(model, dataset.x_test)
    metrics = task_metrics(spec.model.head, dataset.y_test, y_pred)
    save_keras(model, out / "model.keras")
    (out / "spec.toml").write_text(dump_toml(spec_to_dict(spec)), encoding="utf-8")
    history = _read_history(out / "history.jsonl")
    write_json(out / "history.json", history)
    write_json(out / "metrics.json", metrics)
    first = recorder.first_epoch or 0
    write_json(out / "run.json", {
        "spec": spec.name, "strategy": info.name, "replicas": info.replicas,
        "global_batch_size": global_batch, "epochs": n_epochs, "train_seconds": round(seconds, 3),
        "resumed_from_epoch": first, "params": int(model.count_params()),
        "data": dataset.name, "split_sizes": dataset.sizes(),
        "keras_backend": keras.backend.backend(),
    })
    return Run(out_dir=out, spec=spec, model=model, metrics=metrics, history=history,
               strategy=info.name, replicas=info.replicas, train_seconds=seconds,
               resumed_from_epoch=first)
