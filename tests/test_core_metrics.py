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


def test_a_near_constant_reference_is_named():
    from dnnkit.core.metrics import near_constant

    rng = np.random.default_rng(0)
    constant = np.tile([[-1.0, 2.0]], (200, 1)) + rng.normal(0, 0.01, (200, 2))  # class 1 for every input
    labels = rng.integers(0, 2, 200)
    why = near_constant("multiclass", constant, labels)
    assert why.startswith("the reference predicts class 1 for 200 of 200 inputs;") and "of the labels are" in why
    assert near_constant("multiclass", rng.normal(size=(200, 2)), labels) is None
    assert near_constant("binary", np.full((200, 1), 0.9), None).startswith("the reference predicts class 1")
    y = rng.normal(0, 3.0, 200)
    assert "predicts nearly one value" in near_constant("regression", np.full((200, 1), y.mean()) + 0.01, y)
    assert near_constant("regression", y[:, None] + rng.normal(0, 0.5, (200, 1)), y) is None
    assert near_constant("multiclass", constant[:10], labels[:10]) is None  # too few inputs to say


def test_the_manifest_records_a_near_constant_reference():
    from dnnkit.manifest.record import reference_warnings
    from dnnkit.verification.reference import Reference

    outputs = np.tile([[-1.0, 2.0]], (64, 1)).astype("float32")
    ref = Reference(x=np.zeros((64, 3), "float32"), outputs=[outputs], heads=["multiclass"],
                    labels=[np.array([0, 1] * 16)], input_names=["x"], output_names=["logits"],
                    metrics={"accuracy": 0.5}, n_test=32)
    assert reference_warnings(ref) == ["the reference predicts class 1 for 64 of 64 inputs; 50% of the labels are: "
                                       "an artifact that does the same agrees with it, so agreement says little"]


def test_tagging_metrics_count_labelled_steps_only():
    y = np.array([[0, 1, 2, -1, -1], [1, 1, -1, -1, -1]])
    logits = np.eye(3)[np.array([[0, 1, 2, 0, 0], [1, 0, 2, 2, 2]])] * 5.0  # padding steps all "wrong"
    m = task_metrics("tagging", y, logits)
    assert m["accuracy"] == pytest.approx(4 / 5)  # 5 labelled steps, one wrong; padding not counted
    # macro IoU from the 5 labelled steps: class 0 1/1, class 1 2/3 (one 1 predicted 0 -> union 3), class 2 1/1
    assert m["mean_iou"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
    perfect = task_metrics("tagging", y, np.eye(3)[np.where(y < 0, 0, y)] * 5.0)
    assert perfect["accuracy"] == 1.0 and perfect["f1"] == 1.0
    assert degradation("tagging", perfect, m) == pytest.approx(1 / 5)


def test_a_value_per_step_is_scored_per_step_with_psnr():
    y = np.linspace(0, 1, 20, dtype=np.float32).reshape(2, 10, 1)
    pred = y + 0.1
    m = task_metrics("sequence_regression", y, pred)
    assert m["rmse"] == pytest.approx(0.1, rel=1e-5) and m["mae"] == pytest.approx(0.1, rel=1e-5)
    assert m["psnr_db"] == pytest.approx(20 * np.log10(1.0 / 0.1), rel=1e-4)
    assert degradation("sequence_regression", {"rmse": 0.1}, {"rmse": 0.12}) == pytest.approx(0.2)
