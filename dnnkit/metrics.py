"""Task metrics: Keras metrics used during training and scikit-learn metrics for reports."""

from __future__ import annotations

from typing import Any

import numpy as np


def task_metrics(head: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Score model outputs against labels with scikit-learn.

    Args:
        head: ``multiclass`` (``y_pred`` are logits/scores), ``binary`` (probabilities)
            or ``regression``.
        y_true: labels or targets.
        y_pred: raw model outputs.

    Returns:
        accuracy, precision, recall and F1 (macro) for classification; MSE, RMSE and MAE
        for regression.
    """
    from sklearn import metrics as skm

    y_pred = np.asarray(y_pred, dtype=np.float64)
    if head == "regression":
        y_true = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
        mse = float(skm.mean_squared_error(y_true, y_pred))
        return {"mse": mse, "rmse": float(np.sqrt(mse)),
                "mae": float(skm.mean_absolute_error(y_true, y_pred))}
    predicted = predicted_classes(head, y_pred)
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, predicted, average="macro",
                                                     zero_division=0)
    return {"accuracy": float(skm.accuracy_score(y_true, predicted)),
            "precision": float(p), "recall": float(r), "f1": float(f)}


def predicted_classes(head: str, y_pred: np.ndarray) -> np.ndarray:
    """Class ids from raw outputs: argmax of logits, or a 0.5 threshold on a probability."""
    y_pred = np.asarray(y_pred)
    if head == "binary":
        return (y_pred.reshape(len(y_pred), -1)[:, 0] >= 0.5).astype(np.int32)
    return np.argmax(y_pred, axis=-1).astype(np.int32)


def keras_metrics(head: str, names: tuple[str, ...], num_classes: int | None,
                  one_hot: bool = False) -> list[Any]:
    """Keras metric objects for training logs.

    Multiclass precision/recall/F1 are macro averages over a running confusion matrix
    (``MacroScore``), so they work with integer labels and logits on any backend.
    """
    import keras

    out: list[Any] = []
    for name in names:
        if head == "regression":
            out.append({"mse": keras.metrics.MeanSquaredError(name="mse"),
                        "rmse": keras.metrics.RootMeanSquaredError(name="rmse"),
                        "mae": keras.metrics.MeanAbsoluteError(name="mae")}[name])
        elif head == "binary":
            out.append({"accuracy": lambda: keras.metrics.BinaryAccuracy(name="accuracy"),
                        "precision": lambda: keras.metrics.Precision(name="precision"),
                        "recall": lambda: keras.metrics.Recall(name="recall"),
                        "f1": lambda: keras.metrics.F1Score(average="micro", threshold=0.5, name="f1")}[name]())
        elif name == "accuracy":
            out.append(keras.metrics.CategoricalAccuracy(name="accuracy") if one_hot
                       else keras.metrics.SparseCategoricalAccuracy(name="accuracy"))
        else:
            from dnnkit.keras_metrics import MacroScore
            out.append(MacroScore(kind=name, num_classes=num_classes, one_hot=one_hot, name=name))
    return out
