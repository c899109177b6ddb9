"""Training: strategy, compile, tf.data pipeline, callbacks and the run directory.

A run directory holds ``model.keras`` (the trained model), ``spec.toml`` (the resolved
spec), ``history.json`` (every epoch, across restarts; built from ``history.jsonl``), ``metrics.json`` (test-split
metrics), ``run.json`` (strategy, replicas, timings, the epoch a resumed run started
from), ``checkpoints/best.keras``, ``backup/`` (BackupAndRestore, removed when a run
finishes) and ``logs/`` (TensorBoard).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnnkit.builders import build
from dnnkit.core.fileio import save_keras, write_json
from dnnkit.core.metrics import task_metrics
from dnnkit.data.load import load_data
from dnnkit.errors import SpecError
from dnnkit.config.model import Spec, as_spec, spec_to_dict
from dnnkit.config.toml import dump_toml
from dnnkit.training.callbacks import backup, best_checkpoint, epoch_recorder, read_history
from dnnkit.training.fit import fit, make_loss, make_optimizer, make_tf_dataset, one_hot, predict, prepare_targets
from dnnkit.training.strategy import choose_strategy, fix_multi_worker_build, split_cpu


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
    if cpu_devices and cpu_devices > 1:
        split_cpu(cpu_devices)
    info = choose_strategy(strategy or cfg.strategy)

    import keras

    from dnnkit.training.keras_metrics import keras_metrics  # defines Keras classes: imports Keras

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
                                            one_hot=one_hot(spec)))
    fix_multi_worker_build(model, info)
    train_ds = make_tf_dataset(dataset.x_train, prepare_targets(spec, dataset.y_train), global_batch,
                               shuffle=True, seed=cfg.seed)
    val_ds = make_tf_dataset(dataset.x_val, prepare_targets(spec, dataset.y_val), global_batch,
                             shuffle=False)

    recorder = epoch_recorder(out / ".first_epoch.json", out / "history.jsonl",
                              progress_of=n_epochs if progress and info.is_chief else None)
    (out / "checkpoints").mkdir(exist_ok=True)
    best_path = out / "checkpoints" / "best.keras"
    if info.name == "default":  # one process, one device: saves at most every SAVE_INTERVAL_S
        saves = [backup(backup_dir), best_checkpoint(best_path)]
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
    history = read_history(out / "history.jsonl")
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
