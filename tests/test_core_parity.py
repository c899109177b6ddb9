"""The float criterion (element-wise closeness scaled by the reference), on constructed outputs."""

import numpy as np
import pytest

from dnnkit.core.parity import float_parity
from dnnkit.config.recipe import VerifyConfig

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
