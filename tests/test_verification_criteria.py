"""The statistical criteria of quantized artifacts (pass, fail or inconclusive), on constructed outputs (no runtime, no TensorFlow)."""

import numpy as np
import pytest

from dnnkit.verification.criteria import (
    agreement_check,
    decide_at_least,
    decide_at_most,
    degradation_check,
    paired_drop,
    rmse_ratio_check,
    wilson,
)


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


def test_sqnr_check_separates_small_noise_from_large():
    from dnnkit.verification.criteria import sqnr_check

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
