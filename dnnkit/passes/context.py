"""What every pass gets besides the model: the spec, the data and where paths resolve."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.core.heads import LOGIT_HEADS, PAD_LABEL, STEP_CLASS_HEADS
from dnnkit.core.metrics import reference_metrics, task_metrics
from dnnkit.core.tensors import output_activation, output_names, predict as predict_all, rows
from dnnkit.data.dataset import Dataset
from dnnkit.data.named import load_model_data
from dnnkit.config.model import Spec
from dnnkit.training.fit import fit, make_loss, make_tf_dataset, predict, prepare_targets


@dataclass
class PassContext:
    """Shared inputs of the passes of one pipeline run."""

    spec: Spec
    dataset: Dataset
    base_dir: Path  # relative paths in a recipe resolve against its folder
    seed: int = 0
    verbose: bool = False
    # several outputs: one loss per output name, targets per split and output name, a head per output
    losses: dict[str, Any] | None = None
    targets: dict[str, dict[str, np.ndarray]] | None = None
    heads: list[str] | None = None

    def fine_tune(self, model: Any, *, epochs: int, learning_rate: float, batch_size: int,
                  callbacks: list[Any] | None = None) -> dict[str, list[float]]:
        """Compile ``model`` with Adam and the spec's loss, and fit it on the training split."""
        import keras

        keras.utils.set_random_seed(self.seed)
        ds = self.dataset
        if self.losses is not None:
            model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=self.losses)
            y_train, y_val = self.targets["train"], self.targets["val"]
        else:
            model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=make_loss(self.spec))
            y_train, y_val = prepare_targets(self.spec, ds.y_train), prepare_targets(self.spec, ds.y_val)
        train = make_tf_dataset(ds.x_train, y_train, batch_size, shuffle=True, seed=self.seed)
        val = make_tf_dataset(ds.x_val, y_val, batch_size, shuffle=False)
        history = fit(model, train, validation_data=val, epochs=epochs, callbacks=callbacks or [],
                      verbose=0)
        return history.history

    def score(self, model: Any) -> dict[str, float]:
        """Task metrics of ``model`` on the test split."""
        if self.heads is not None:
            names = output_names(model)
            outputs = predict_all(model, self.dataset.x_test)
            labels = [self.dataset.y_test.get(n) for n in names]
            return reference_metrics(self.heads, labels, outputs, names, rows(self.dataset.x_test))
        return task_metrics(self.spec.model.head, self.dataset.y_test, predict(model, self.dataset.x_test))

    def steps_per_epoch(self, batch_size: int) -> int:
        return int(np.ceil(rows(self.dataset.x_train) / batch_size))


def multi_output_context(model: Any, spec: Any, data: str | None, task: str | None, base_dir: Path,
                         verbose: bool) -> PassContext:
    """A context for a model with several inputs or outputs: its data per name, a loss per output
    (cross-entropy for class heads, MSE for regression), and for an output with no labels (a
    backbone's features) the incoming model's own outputs as targets, so fine-tuning keeps it where it was.
    """
    import keras

    dataset, heads = load_model_data(model, data or spec.data.source, spec.data, task=task)
    names = output_names(model)
    losses: dict[str, Any] = {}
    targets: dict[str, dict[str, np.ndarray]] = {"train": {}, "val": {}}
    own = {split: predict_all(model, getattr(dataset, f"x_{split}")) for split in ("train", "val")}
    for k, (name, head) in enumerate(zip(names, heads)):
        labelled = name in dataset.y_train
        if head in LOGIT_HEADS and labelled:
            losses[name] = keras.losses.SparseCategoricalCrossentropy(
                from_logits=output_activation(model, k) != "softmax",
                ignore_class=PAD_LABEL if head in STEP_CLASS_HEADS else None)
        elif head == "binary":
            losses[name] = keras.losses.BinaryCrossentropy()
        else:
            losses[name] = keras.losses.MeanSquaredError()
        for split in ("train", "val"):
            if labelled:
                y = getattr(dataset, f"y_{split}")[name]
                targets[split][name] = y.astype(np.float32).reshape(-1, 1) if head == "binary" else y
            else:
                targets[split][name] = own[split][k]
    return PassContext(spec=spec, dataset=dataset, base_dir=base_dir, seed=spec.train.seed, verbose=verbose,
                       losses=losses, targets=targets, heads=heads)
