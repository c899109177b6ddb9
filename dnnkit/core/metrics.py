"""Task metrics (scikit-learn) of a model's outputs, and how much a metric got worse.

Training, the compression passes, verification, the manifest's verdict and ``optimize`` all score
and compare models with these functions, so a degradation goal means the same thing everywhere.
"""

from __future__ import annotations


import numpy as np

from dnnkit.core.heads import GENERATIVE_HEADS, STEP_CLASS_HEADS, STEP_HEADS, is_class, is_value
from dnnkit.core.tensors import HEAD_FEATURES


def task_metrics(head: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Score model outputs against labels with scikit-learn.

    Args:
        head: ``multiclass`` (``y_pred`` are logits/scores), ``binary`` (probabilities),
            ``regression``, or per step ``tagging`` (logits) and ``sequence_regression``.
        y_true: labels or targets (a tag per step, below 0 for padding, for ``tagging``).
        y_pred: raw model outputs.

    Returns:
        accuracy, precision, recall and F1 (macro) for classification; MSE, RMSE and MAE
        for regression. Per element (a step, a pixel), each labelled element counts once (token or pixel
        accuracy, per-step RMSE), with mean IoU for tagging and PSNR for a value per element.
    """
    from sklearn import metrics as skm

    y_pred = np.asarray(y_pred, dtype=np.float64)
    if is_value(head):
        y_true = np.asarray(y_true, dtype=np.float64).reshape(y_pred.shape)
        if head in STEP_HEADS:
            y_true, y_pred = y_true.reshape(-1), y_pred.reshape(-1)
        mse = float(skm.mean_squared_error(y_true, y_pred))
        out = {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(skm.mean_absolute_error(y_true, y_pred))}
        peak = float(np.ptp(y_true)) if y_true.size else 0.0
        if head in STEP_HEADS and peak > 0 and mse > 0:  # image-to-image's figure: the targets' range over RMSE
            out["psnr_db"] = float(20 * np.log10(peak / np.sqrt(mse)))
        return out
    predicted = predicted_classes(head, y_pred)
    exact = None
    if head in STEP_CLASS_HEADS:
        steps = np.asarray(y_true)
        right = (predicted == steps) | (steps < 0)
        exact = float(np.mean(np.all(right.reshape(len(steps), -1), axis=1))) if len(steps) else 0.0
        y_true, predicted, logits = labelled_steps(y_true, predicted, y_pred)
    p, r, f, _ = skm.precision_recall_fscore_support(y_true, predicted, average="macro",
                                                     zero_division=0)
    out = {"accuracy": float(skm.accuracy_score(y_true, predicted)),
           "precision": float(p), "recall": float(r), "f1": float(f)}
    if head == "tagging":  # segmentation's figure: intersection over union, averaged over the classes present
        out["mean_iou"] = float(skm.jaccard_score(y_true, predicted, average="macro", zero_division=0))
    if exact is not None:  # every labelled step of a sequence right
        out["exact_match"] = exact
    if head in GENERATIVE_HEADS and len(y_true):  # exp of the mean next-token cross-entropy (logits in)
        z = logits - logits.max(axis=1, keepdims=True)
        log_p = z[np.arange(len(y_true)), y_true] - np.log(np.exp(z).sum(axis=1))
        out["perplexity"] = float(np.exp(-np.mean(log_p)))
    return out


def predicted_classes(head: str, y_pred: np.ndarray) -> np.ndarray:
    """Class ids from raw outputs: argmax of logits, or a 0.5 threshold on a probability."""
    y_pred = np.asarray(y_pred)
    if head == "binary":
        return (y_pred.reshape(len(y_pred), -1)[:, 0] >= 0.5).astype(np.int32)
    return np.argmax(y_pred, axis=-1).astype(np.int32)


def labelled_steps(tags: np.ndarray, *per_step: np.ndarray) -> tuple[np.ndarray, ...]:
    """The labelled steps (tag >= 0) of ``tags`` and of each array of the same leading shape, flattened."""
    tags = np.asarray(tags)
    keep = tags >= 0
    return (tags[keep],) + tuple(np.asarray(a).reshape(tags.shape + np.shape(a)[tags.ndim:])[keep] for a in per_step)


def per_class(head: str, labels: np.ndarray, outputs: np.ndarray) -> dict[str, dict[str, float]] | None:
    """Precision, recall, F1 and support of each class (scikit-learn) for a classifier's outputs on its labelled
    inputs (the first ``len(labels)`` rows of ``outputs``), keyed by class id; ``None`` for other heads."""
    if head not in ("multiclass", "binary") or labels is None or np.asarray(labels).ndim != 1 or not len(labels):
        return None
    from sklearn import metrics as skm

    y = np.asarray(labels).astype(np.int64)
    pred = predicted_classes(head, np.asarray(outputs)[:len(y)])
    classes = np.unique(np.concatenate([y, pred]))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred, labels=classes, zero_division=0)
    return {str(int(c)): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
            for c, p, r, f, n in zip(classes, precision, recall, f1, support)}


NEAR_CONSTANT_SHARE = 0.95  # one class in this share of the predictions
NEAR_CONSTANT_SPREAD = 0.05  # a value output's spread under this fraction of its labels'


def near_constant(head: str, outputs: np.ndarray, labels: np.ndarray | None = None) -> str | None:
    """Why a reference model's outputs are near-constant, or ``None``: a classifier that predicts one class for
    at least 95 % of the inputs, or a regressor whose outputs spread less than 5 % of its labels' standard
    deviation. Every artifact that repeats such a model agrees with it, so its checks say little.

    Args:
        head: the output's head.
        outputs: the reference's outputs on every checked input.
        labels: the labels of the first ``len(labels)`` of those inputs (the test split), if any.
    """
    out = np.asarray(outputs)
    if len(out) < 20:
        return None
    if is_class(head):
        pred = predicted_classes(head, out).reshape(-1)
        values, counts = np.unique(pred, return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] < NEAR_CONSTANT_SHARE * len(pred):
            return None
        share = ""
        if labels is not None and len(labels) and np.asarray(labels).ndim == 1:
            share = f"; {np.mean(np.asarray(labels) == values[top]):.0%} of the labels are"
        return (f"the reference predicts class {values[top]} for {counts[top]} of {len(pred)} inputs{share}: an "
                "artifact that does the same agrees with it, so agreement says little")
    if head == "regression" and labels is not None and len(labels) > 1:  # per step: the spread is over time too
        spread = float(np.max(np.std(out.reshape(len(out), -1), axis=0)))
        scale = float(np.max(np.std(np.asarray(labels, np.float64).reshape(len(labels), -1), axis=0)))
        if scale > 0 and spread < NEAR_CONSTANT_SPREAD * scale:
            return (f"the reference's outputs spread {spread:.3g} (std) across inputs, its labels {scale:.3g}: it "
                    "predicts nearly one value, so parity with it says little")
    return None


def reference_metrics(heads: list[str], labels: list[np.ndarray | None], outputs: list[np.ndarray],
                      names: list[str], n_test: int) -> dict[str, float]:
    """Task metrics of every labelled output; keys ``NAME/metric`` when there are several outputs."""
    out: dict[str, float] = {}
    for name, head, y, o in zip(names, heads, labels, outputs):
        if y is None or head == HEAD_FEATURES:
            continue
        m = task_metrics(head, y, o[:n_test])
        out.update(m if len(outputs) == 1 else {f"{name}/{k}": v for k, v in m.items()})
    return out


def degradation(head: str, baseline: dict[str, float], now: dict[str, float]) -> float:
    """How much the task metric got worse: accuracy points (token accuracy for tagging), or RMSE ratio - 1 for
    regression (per step too).

    With several outputs (``head == "multi"``, metrics keyed ``NAME/metric``), the worst labelled
    output's figure.
    """
    if head == "multi":
        drops = [baseline[k] - now[k] for k in baseline if k.endswith("/accuracy") and k in now]
        drops += [now[k] / max(baseline[k], 1e-12) - 1.0 for k in baseline if k.endswith("/rmse") and k in now]
        return max(drops) if drops else 0.0
    if is_value(head):
        return now["rmse"] / max(baseline["rmse"], 1e-12) - 1.0
    return baseline["accuracy"] - now["accuracy"]


# a goal is met up to this much over its limit (the figures are sums of floats)
GOAL_SLACK = 1e-12


def within(drop: float, limit: float) -> bool:
    """Whether a degradation ``drop`` (see :func:`degradation`) meets the goal ``limit``."""
    return drop <= limit + GOAL_SLACK
