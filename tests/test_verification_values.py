"""Value checks on few inputs: a float artifact within parity is decided by parity; an inconclusive verdict
says how many inputs would decide it and how to accept it."""

import numpy as np
import pytest

from dnnkit.config.recipe import recipe_from_dict
from dnnkit.verification.criteria import inputs_needed, wilson
from dnnkit.verification.reference import Reference
from dnnkit.verification.values import check_values

# 36 test inputs, as a 178-sample dataset's 20 % split gives: too few for a 0.98 agreement bound
N = 36


def _reference(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(N, 3)).astype("float32") * 4
    y = logits.argmax(1)
    return Reference(x=np.zeros((N, 4), "float32"), outputs=[logits], heads=["multiclass"], labels=[y],
                     input_names=["x"], output_names=["logits"], metrics={"accuracy": 1.0}, n_test=N)


def _check(precision, out):
    recipe = recipe_from_dict({"name": "r", "artifacts": [{"name": "a", "format": "tflite", "precision": precision}]})
    failures, inconclusive = [], []
    checks = check_values(_reference(), 0, out, recipe.artifacts[0], recipe, precision == "int8", failures,
                          inconclusive)
    return checks, failures, inconclusive


def test_a_float_artifact_within_parity_is_decided_by_parity_on_few_inputs():
    ref = _reference()
    assert wilson(N, N)[0] < 0.98  # the statistics alone cannot decide at this n
    checks, failures, inconclusive = _check("fp32", ref.outputs[0] + 1e-7)
    assert failures == [] and inconclusive == []
    assert checks["top1_agreement"]["verdict"] == "pass"
    assert checks["top1_agreement"]["decided_by"] == "float_parity"


def test_a_float_artifact_outside_parity_is_not_rescued():
    ref = _reference()
    checks, failures, _ = _check("fp32", ref.outputs[0] + 0.5)
    assert checks["float_parity"]["verdict"] == "fail" and failures
    assert "decided_by" not in checks["top1_agreement"]


def test_an_inconclusive_quantized_artifact_says_what_would_decide_it():
    ref = _reference()
    _, failures, inconclusive = _check("int8", ref.outputs[0] + 0.01)
    assert failures == []
    agreement = next(i for i in inconclusive if i["check"] == "top1_agreement")
    needed = inputs_needed(1.0, 0.98)
    assert f"about {needed} inputs decide it" in agreement["message"]
    assert "unlabelled ones too" in agreement["message"] and "accept_inconclusive = true" in agreement["message"]
    assert not agreement["message"].startswith("inconclusive")


def test_inputs_needed_is_the_smallest_count_that_decides():
    for rate, limit in ((1.0, 0.98), (0.9733, 0.98), (0.995, 0.98), (0.0, 0.01)):
        n = inputs_needed(rate, limit)
        lo, hi = wilson(round(rate * n), n)
        lo_before, hi_before = wilson(round(rate * (n - 1)), n - 1)
        if rate > limit:
            assert lo >= limit > lo_before
        else:
            assert hi < limit <= hi_before
    assert inputs_needed(0.98, 0.98) is None


def _fp16_check(out, fp16_error):
    recipe = recipe_from_dict({"name": "r", "artifacts": [{"name": "a", "format": "tflite", "precision": "fp16"}]})
    ref = _reference()
    ref.fp16_weight_error = fp16_error
    failures, inconclusive = [], []
    checks = check_values(ref, 0, out, recipe.artifacts[0], recipe, False, failures, inconclusive)
    return checks["float_parity"], failures


def test_an_fp16_allowance_as_large_as_the_outputs_is_discarded():
    ref = _reference()
    scale = float(np.abs(ref.outputs[0]).max())
    # a Normalization layer whose variance overflowed fp16 made this allowance 26808 for logits of scale 18.8
    parity, failures = _fp16_check(np.zeros_like(ref.outputs[0]), fp16_error=scale)
    assert parity["calibrated"] == 0.0 and parity["calibration_discarded"]["allowance"] == 8 * scale
    assert parity["verdict"] == "fail" and failures and failures[0]["check"] == "float_parity"


def test_a_small_fp16_allowance_still_applies():
    ref = _reference()
    parity, failures = _fp16_check(ref.outputs[0] + 0.05, fp16_error=0.01)
    assert parity["calibrated"] == 0.08 and "calibration_discarded" not in parity
    assert parity["verdict"] == "pass" and failures == []


def test_a_tagging_artifact_is_judged_per_step_and_its_accuracy_drop_on_labelled_steps_only():
    rng = np.random.default_rng(1)
    n, steps = 40, 25
    logits = rng.normal(size=(n, steps, 4)).astype("float32") * 4
    tags = logits.argmax(-1)
    tags[:, 20:] = -1  # padding: no label
    ref = Reference(x=np.zeros((n, steps), "int32"), outputs=[logits], heads=["tagging"], labels=[tags],
                    input_names=["x"], output_names=["logits"], metrics={"accuracy": 1.0}, n_test=n)
    recipe = recipe_from_dict({"name": "r", "verify": {"min_agreement": 0.9, "max_degradation": 0.05},
                               "artifacts": [{"name": "a", "format": "tflite", "precision": "int8"}]})
    out = logits.copy()
    out[:, 20:] = -out[:, 20:]  # every padding step flips: 20 % of the steps, none of them labelled
    failures, inconclusive = [], []
    checks = check_values(ref, 0, out, recipe.artifacts[0], recipe, True, failures, inconclusive)
    agreement, drop = checks["top1_agreement"], checks["accuracy_drop"]
    assert agreement["n"] == n * steps and agreement["value"] == pytest.approx(0.8)
    assert agreement["verdict"] == "fail"  # the artifact computes another function at the padding steps
    assert drop["n"] == n * 20 and drop["value"] == 0.0  # ... and loses no accuracy on the labelled ones
    out = logits.copy()
    out[:10, :10] = -out[:10, :10]  # 100 labelled steps of 800 wrong: 12.5 % accuracy lost
    failures = []
    checks = check_values(ref, 0, out, recipe.artifacts[0], recipe, True, failures, inconclusive)
    assert checks["accuracy_drop"]["value"] == pytest.approx(100 / 800)
    assert any(f["check"] == "accuracy_drop" for f in failures)
