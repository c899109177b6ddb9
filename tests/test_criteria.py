"""The numeric criteria and the one verdict, on constructed outputs (no runtime, no TensorFlow)."""

import numpy as np
import pytest

from dnnkit.criteria import (agreement_check, decide_at_least, decide_at_most, degradation_check, float_parity,
                             paired_drop, rmse_ratio_check, wilson)
from dnnkit.recipe import VerifyConfig
from dnnkit.verdict import decide

FP16 = VerifyConfig()


def _logits(n=500, classes=10, scale=20.0, seed=0):
    return np.random.default_rng(seed).normal(0, scale / 3, (n, classes)).astype(np.float32)


@pytest.mark.parametrize("scale", [0.05, 1.0, 20.0, 3000.0])
def test_float_criterion_scales_with_the_outputs(scale):
    ref = _logits(scale=scale)
    s = float(np.abs(ref).max())
    # fp16 rounding of every output (relative error <= 2**-11) passes at any scale ...
    rounded = ref.astype(np.float16).astype(np.float32)
    assert float_parity(ref, rounded, FP16.atol_fp16, FP16.rtol_fp16)["ok"]
    # ... an error of 1 % of the output scale fails at any scale
    wrong = ref.copy()
    wrong[3, 4] += 0.01 * s + FP16.atol_fp16
    result = float_parity(ref, wrong, FP16.atol_fp16, FP16.rtol_fp16)
    assert not result["ok"] and result["max_abs_diff"] > result["allowed"]
    assert result["scale"] == pytest.approx(s)


def test_float_criterion_fails_non_finite_outputs():
    ref = _logits()
    bad = ref.copy()
    bad[0, 0] = np.nan
    assert not float_parity(ref, bad, 1.0, 1.0)["ok"]


def test_an_absolute_only_tolerance_was_scale_dependent():
    # Why the criterion changed: the same relative error passes or fails a fixed atol depending on
    # the logits' magnitude alone.
    for scale, ok in ((5.0, True), (50.0, False)):
        ref = _logits(scale=scale)
        noisy = ref * (1 + 4e-4)
        assert bool(np.abs(noisy - ref).max() <= 1e-2) is ok
        assert float_parity(ref, noisy, FP16.atol_fp16, FP16.rtol_fp16)["ok"]


def test_wilson_interval_brackets_the_rate():
    lo, hi = wilson(95, 100)
    assert lo < 0.95 < hi and 0.88 < lo and hi < 0.99
    assert wilson(0, 50)[0] == 0.0 and wilson(50, 50)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)


def test_decisions_both_sides_and_between():
    assert decide_at_least((0.985, 0.995), 0.98) == "pass"
    assert decide_at_least((0.90, 0.97), 0.98) == "fail"
    assert decide_at_least((0.97, 0.99), 0.98) == "inconclusive"
    assert decide_at_most((-0.01, 0.005), 0.01) == "pass"
    assert decide_at_most((0.02, 0.05), 0.01) == "fail"
    assert decide_at_most((0.0, 0.03), 0.01) == "inconclusive"


def _classes(n, flips, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.integers(0, 10, n)
    art = ref.copy()
    idx = rng.choice(n, flips, replace=False)
    art[idx] = (art[idx] + 1) % 10
    return ref, art, idx


def test_one_flip_on_64_samples_is_inconclusive_not_a_failure():
    # 64 test samples, the artifact changes one prediction that was right: accuracy drops 1.6 points,
    # more than max_degradation 0.01, but the data cannot tell that from noise.
    ref, art, idx = _classes(64, 1)
    y = ref.copy()
    agreement = agreement_check(ref, art, 0.98)
    assert agreement["value"] == pytest.approx(63 / 64)
    assert agreement["verdict"] == "inconclusive"
    drop = degradation_check(agreement, ref == y, art == y, 0.01)
    assert drop["value"] == pytest.approx(1 / 64) and drop["verdict"] == "inconclusive"


def test_many_inputs_without_labels_decide_what_64_labelled_cannot():
    # The same single flip among 64 labelled samples, but 2,000 inputs in all with 3 disagreements:
    # the disagreement bound (<= 0.4 % at 95 %) caps the accuracy loss below 1 point.
    ref, art, _ = _classes(2000, 3)
    y = ref[:64].copy()
    agreement = agreement_check(ref, art, 0.98)
    assert agreement["verdict"] == "pass" and agreement["n"] == 2000
    drop = degradation_check(agreement, ref[:64] == y, art[:64] == y, 0.01)
    assert drop["verdict"] == "pass" and drop["decided_by"] == "disagreement_bound"
    assert drop["disagreement_bound"] < 0.01


def test_a_real_loss_fails_decisively():
    ref, art, idx = _classes(1797, 150)
    y = ref.copy()  # the reference is right everywhere, so every flip is a loss
    agreement = agreement_check(ref, art, 0.98)
    assert agreement["verdict"] == "fail"
    drop = degradation_check(agreement, ref[:360] == y[:360], art[:360] == y[:360], 0.01)
    assert drop["verdict"] == "fail" and drop["decided_by"] == "paired_test" and drop["ci"][0] > 0.01


def test_digits_sized_data_gets_decisive_verdicts():
    # 1,797 inputs (digits), 360 labelled: an int8 artifact with 0.4 % disagreement passes outright.
    ref, art, _ = _classes(1797, 7)
    y = ref.copy()
    agreement = agreement_check(ref, art, 0.98)
    drop = degradation_check(agreement, ref[:360] == y[:360], art[:360] == y[:360], 0.01)
    assert agreement["verdict"] == "pass" and drop["verdict"] == "pass"


def test_paired_drop_counts_losses_and_gains():
    ref_ok = np.array([True] * 10 + [False] * 5 + [True] * 85)
    art_ok = np.array([False] * 10 + [True] * 5 + [True] * 85)
    d = paired_drop(ref_ok, art_ok)
    assert (d["lost"], d["gained"], d["n"]) == (10, 5, 100)
    assert d["value"] == pytest.approx(0.05) and d["ci"][0] < 0.05 < d["ci"][1]


def test_rmse_ratio_both_sides():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(400, 1))
    ref = y + rng.normal(0, 0.3, y.shape)
    assert rmse_ratio_check(y, ref, ref + rng.normal(0, 0.01, y.shape), 0.05)["verdict"] == "pass"
    assert rmse_ratio_check(y, ref, ref + rng.normal(0, 0.5, y.shape), 0.05)["verdict"] == "fail"


def _manifest(statuses, **extra):
    return {"reference": {"head": "multiclass"}, "recipe": {"verify": {"accept_inconclusive": False}},
            "artifacts": [{"name": f"a{i}", "status": s, "failure_reason": None if s == "verified" else "x",
                           "metrics": {"accuracy": 0.95}} for i, s in enumerate(statuses)], **extra}


def test_one_verdict_from_artifacts_and_goals():
    assert decide(_manifest(["verified", "verified"]))["status"] == "verified"
    m = decide(_manifest(["verified", "failed"]))
    assert m["status"] == "failed" and m["failures"][0] == {
        "check": "artifact", "observed": "failed", "limit": "verified", "message": "a1: x", "artifact": "a1"}
    m = decide(_manifest(["verified", "inconclusive"]))
    assert m["status"] == "inconclusive" and m["failures"] == [] and len(m["inconclusive"]) == 1
    accepted = _manifest(["inconclusive"])
    accepted["recipe"]["verify"]["accept_inconclusive"] = True
    assert decide(accepted)["status"] == "verified"
    # every artifact verified, but the compression goal was missed: the verdict is failed
    goal = decide(_manifest(["verified"], goals={"max_degradation": 0.01},
                            original={"metrics": {"accuracy": 0.99}}, passes=[]))
    assert goal["status"] == "failed" and goal["goals"]["met"] is False
    assert goal["failures"][0]["check"] == "goal" and goal["failures"][0]["observed"] == pytest.approx(0.04)
    missed_pass = decide(_manifest(["verified"], goals={"max_degradation": 0.01},
                                   passes=[{"type": "prune", "goal_met": False, "degradation": 0.03,
                                            "max_degradation": 0.01}]))
    assert missed_pass["status"] == "failed" and "after pass 1 (prune)" in missed_pass["goals"]["missed"][0]


def test_sqnr_check_separates_small_noise_from_large():
    from dnnkit.criteria import sqnr_check

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(500, 16, 32))
    small = ref + rng.normal(scale=0.01, size=ref.shape)  # 1 % of the signal's RMS: 40 dB
    large = ref + rng.normal(scale=0.2, size=ref.shape)  # 20 %: 14 dB
    assert abs(sqnr_check(ref, small, 20.0)["value"] - 40.0) < 0.5 and sqnr_check(ref, small, 20.0)["verdict"] == "pass"
    assert abs(sqnr_check(ref, large, 20.0)["value"] - 14.0) < 0.5 and sqnr_check(ref, large, 20.0)["verdict"] == "fail"
    assert sqnr_check(ref, ref, 20.0)["verdict"] == "pass"
    broken = small.copy()
    broken[0, 0, 0] = np.nan
    assert sqnr_check(ref, broken, 20.0)["verdict"] == "fail"
