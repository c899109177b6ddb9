"""Task metrics and degradation: one definition of a metric that got worse, and of a goal it meets."""

import numpy as np
import pytest

from dnnkit.core.metrics import degradation, reference_metrics, task_metrics, within


def test_degradation_is_accuracy_points_or_rmse_ratio_minus_one():
    assert degradation("multiclass", {"accuracy": 0.98}, {"accuracy": 0.95}) == pytest.approx(0.03)
    assert degradation("regression", {"rmse": 0.5}, {"rmse": 0.55}) == pytest.approx(0.1)
    multi = degradation("multi", {"a/accuracy": 0.9, "b/rmse": 1.0}, {"a/accuracy": 0.89, "b/rmse": 1.05})
    assert multi == pytest.approx(0.05)  # the worst labelled output's figure


def test_a_goal_is_met_up_to_rounding_and_no_further():
    drop = 0.98 - 0.97  # 0.010000000000000009 in floats
    assert within(drop, 0.01) and within(0.0, 0.0)
    assert not within(0.0101, 0.01) and not within(1e-9, 0.0)


def test_reference_metrics_name_each_labelled_output():
    y = np.array([0, 1, 1, 0])
    logits = np.eye(2)[y] * 3.0
    assert reference_metrics(["multiclass"], [y], [logits], ["out"], 4) == task_metrics("multiclass", y, logits)
    two = reference_metrics(["multiclass", "features"], [y, None], [logits, logits], ["a", "b"], 4)
    assert set(two) == {"a/accuracy", "a/precision", "a/recall", "a/f1"} and two["a/accuracy"] == 1.0
