"""What every pass gets besides the model: the spec, the data and where paths resolve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class PassContext:
    """Shared inputs of the passes of one pipeline run."""

    spec: Any  # dnnkit.config.Spec
    dataset: Any  # dnnkit.data.Dataset
    base_dir: Path  # relative paths in a recipe resolve against its folder
    seed: int = 0
    verbose: bool = False

    def fine_tune(self, model: Any, *, epochs: int, learning_rate: float, batch_size: int,
                  callbacks: list[Any] | None = None) -> dict[str, list[float]]:
        """Compile ``model`` with Adam and the spec's loss, and fit it on the training split."""
        import keras

        from dnnkit.training import prepare_targets, fit, make_loss, make_tf_dataset

        keras.utils.set_random_seed(self.seed)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=make_loss(self.spec))
        ds = self.dataset
        train = make_tf_dataset(ds.x_train, prepare_targets(self.spec, ds.y_train), batch_size, shuffle=True,
                                seed=self.seed)
        val = make_tf_dataset(ds.x_val, prepare_targets(self.spec, ds.y_val), batch_size, shuffle=False)
        history = fit(model, train, validation_data=val, epochs=epochs, callbacks=callbacks or [],
                      verbose=0)
        return history.history

    def score(self, model: Any) -> dict[str, float]:
        """Task metrics of ``model`` on the test split."""
        from dnnkit.metrics import task_metrics
        from dnnkit.training import predict

        return task_metrics(self.spec.model.head, self.dataset.y_test, predict(model, self.dataset.x_test))

    def steps_per_epoch(self, batch_size: int) -> int:
        return int(np.ceil(len(self.dataset.x_train) / batch_size))
