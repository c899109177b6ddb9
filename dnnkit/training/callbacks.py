"""The callbacks of a training run: every epoch logged (and printed), a resumable backup, the best
checkpoint; and the history read back."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dnnkit.core.fileio import save_keras, write_json


def epoch_recorder(first_epoch_path: Path, history_path: Path, progress_of: int | None = None) -> Any:
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


def backup(folder: Path) -> Any:
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


def best_checkpoint(path: Path) -> Any:
    """``path`` holds the model at its lowest ``val_loss`` so far: each improving epoch's weights are
    copied in memory and written when SAVE_INTERVAL_S have passed since the last write, and at the end."""
    import math
    import time

    import keras

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


def read_history(path: Path) -> dict[str, list[float]]:
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
