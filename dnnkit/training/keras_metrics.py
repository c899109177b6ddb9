"""The Keras metrics a training run logs, and a metric for macro precision / recall / F1 with integer
labels and logits (Keras has none)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from dnnkit.core.heads import STEP_CLASS_HEADS


@keras.saving.register_keras_serializable(package="dnnkit")
class MacroScore(keras.metrics.Metric):
    """Macro-averaged precision, recall or F1 from a running confusion matrix.

    Args:
        kind: ``"precision"``, ``"recall"`` or ``"f1"``.
        num_classes: number of classes.
        one_hot: whether ``y_true`` is one-hot (else integer ids).
    """

    def __init__(self, kind: str, num_classes: int, one_hot: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        if kind not in ("precision", "recall", "f1"):
            raise ValueError(f"kind: expected 'precision', 'recall' or 'f1', got {kind!r}")
        self.kind, self.num_classes, self.one_hot = kind, num_classes, one_hot
        self.confusion = self.add_variable(shape=(num_classes, num_classes), initializer="zeros",
                                           name="confusion", aggregation="sum")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self.one_hot:
            truth = ops.cast(y_true, "float32")
        else:
            ids = ops.cast(ops.reshape(y_true, (-1,)), "int32")
            truth = ops.one_hot(ids, self.num_classes, dtype="float32")
        # one row per sample (per step for a tagging head); a padding tag (-1) one-hots to a row of zeros
        guess = ops.one_hot(ops.reshape(ops.argmax(y_pred, axis=-1), (-1,)), self.num_classes, dtype="float32")
        self.confusion.assign_add(ops.matmul(ops.transpose(truth), guess))

    def result(self):
        tp = ops.diagonal(self.confusion)
        predicted = ops.sum(self.confusion, axis=0)
        actual = ops.sum(self.confusion, axis=1)
        precision = ops.divide_no_nan(tp, predicted)
        recall = ops.divide_no_nan(tp, actual)
        if self.kind == "precision":
            return ops.mean(precision)
        if self.kind == "recall":
            return ops.mean(recall)
        return ops.mean(ops.divide_no_nan(2.0 * precision * recall, precision + recall))

    def reset_state(self):
        self.confusion.assign(ops.zeros((self.num_classes, self.num_classes)))

    def get_config(self) -> dict:
        return {**super().get_config(), "kind": self.kind, "num_classes": self.num_classes,
                "one_hot": self.one_hot}


@keras.saving.register_keras_serializable(package="dnnkit")
class TokenAccuracy(keras.metrics.Mean):
    """The share of labelled steps whose argmax is their tag; padding steps (tag < 0) do not count."""

    def __init__(self, name: str = "accuracy", **kwargs) -> None:
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
        right = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        super().update_state(right, sample_weight=ops.cast(ops.greater_equal(y_true, 0), "float32"))


def keras_metrics(head: str, names: tuple[str, ...], num_classes: int | None,
                  one_hot: bool = False) -> list[Any]:
    """Keras metric objects for training logs.

    Multiclass precision/recall/F1 are macro averages over a running confusion matrix
    (``MacroScore``), so they work with integer labels and logits on any backend; for a tagging head they
    count every labelled step, and accuracy is the token accuracy (padding steps left out).
    """
    out: list[Any] = []
    for name in names:
        if head in ("regression", "sequence_regression"):
            out.append({"mse": keras.metrics.MeanSquaredError(name="mse"),
                        "rmse": keras.metrics.RootMeanSquaredError(name="rmse"),
                        "mae": keras.metrics.MeanAbsoluteError(name="mae")}[name])
        elif head == "binary":
            out.append({"accuracy": lambda: keras.metrics.BinaryAccuracy(name="accuracy"),
                        "precision": lambda: keras.metrics.Precision(name="precision"),
                        "recall": lambda: keras.metrics.Recall(name="recall"),
                        "f1": lambda: keras.metrics.F1Score(average="micro", threshold=0.5, name="f1")}[name]())
        elif name == "accuracy" and head in STEP_CLASS_HEADS:
            out.append(TokenAccuracy(name="accuracy"))
        elif name == "accuracy":
            out.append(keras.metrics.CategoricalAccuracy(name="accuracy") if one_hot
                       else keras.metrics.SparseCategoricalAccuracy(name="accuracy"))
        else:
            out.append(MacroScore(kind=name, num_classes=num_classes, one_hot=one_hot, name=name))
    return out
