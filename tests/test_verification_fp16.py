"""The float criterion in both directions, with the arithmetic produced inside the test.

True fp16 arithmetic comes from a copy of each model whose layers all have the Keras ``float16``
dtype policy (weights, activations and every op's result in fp16), so the figures do not depend on whether this CPU runs fp16 natively
(XNNPACK on ARM or AVX512-FP16 does; other x86 CPUs do not). Wrong artifacts are simulated the
same way: weights perturbed by 1 %, one layer's units swapped, outputs permuted. The fp16
tolerance is the one verification applies: ``atol + max(rtol * max|ref|, fp16_factor * e)`` with
``e`` the output error of the weights rounded to fp16 in fp32 arithmetic (an independent, milder
computation than the fp16 arithmetic it must admit).
"""

import numpy as np
import pytest

from conftest import RECIPES, SPECS
from dnnkit.core.parity import float_parity
from dnnkit.config.recipe import ArtifactConfig, load_recipe

RECIPE = load_recipe(RECIPES / "all.toml")
FP16 = ArtifactConfig(name="x", format="tflite", precision="fp16")
FP32 = ArtifactConfig(name="y", format="tflite", precision="fp32")


@pytest.fixture(scope="module")
def cases(trained_runs):
    import keras

    from dnnkit.data.load import load_data
    from dnnkit.training.fit import predict
    from dnnkit.verification.fp16 import fp16_outputs, fp16_weight_error

    out = {}
    for name in SPECS:
        run = trained_runs[name]
        ds = load_data(run.spec)
        x = np.concatenate([ds.x_test, ds.x_train, ds.x_val])
        model = run.model
        ref = predict(model, x)
        weights = model.get_weights()
        fp16 = fp16_outputs(model, x)

        def variant(new_weights):
            clone = keras.models.clone_model(model)
            clone.set_weights(new_weights)
            return predict(clone, x)

        rng = np.random.default_rng(0)
        perturbed = variant([w * (1 + 0.01 * rng.standard_normal(w.shape)).astype(w.dtype) for w in weights])
        swapped = [w.copy() for w in weights]
        k = [i for i, w in enumerate(swapped) if w.ndim >= 2][-2]  # the last hidden layer's kernel
        swapped[k] = swapped[k][..., ::-1]  # its output units in reverse order
        out[name] = {"ref": ref, "fp16": fp16,
                     "calibrated": RECIPE.verify.fp16_factor * fp16_weight_error(model, x, ref),
                     "perturbed": perturbed, "swapped": variant(swapped),
                     "permuted": ref[:, np.roll(np.arange(ref.shape[1]), 1)]}
    return out


@pytest.mark.parametrize("name", SPECS)
def test_true_fp16_arithmetic_passes(cases, name):
    c = cases[name]
    assert not np.array_equal(c["fp16"], c["ref"])  # the arithmetic really was different
    result = float_parity(c["ref"], c["fp16"], RECIPE.atol(FP16), RECIPE.rtol(FP16), c["calibrated"])
    assert result["ok"], result
    # with margin: the error is at most half of what the tolerance allows
    assert result["max_abs_diff"] <= 0.5 * result["allowed"], result
    assert np.mean(c["fp16"].argmax(1) == c["ref"].argmax(1)) >= 0.995


@pytest.mark.parametrize("wrong", ["perturbed", "swapped", "permuted"])
@pytest.mark.parametrize("name", SPECS)
def test_wrong_artifacts_fail_even_the_fp16_tolerance(cases, name, wrong):
    c = cases[name]
    for art, calibrated in ((FP16, c["calibrated"]), (FP32, 0.0)):
        result = float_parity(c["ref"], c[wrong], RECIPE.atol(art), RECIPE.rtol(art), calibrated)
        assert not result["ok"], (art.precision, result)
    loose = float_parity(c["ref"], c[wrong], RECIPE.atol(FP16), RECIPE.rtol(FP16), c["calibrated"])
    assert loose["max_abs_diff"] >= 2 * loose["allowed"], loose  # with margin


def test_weights_beyond_fp16_range_are_not_rounded_to_inf():
    """A Normalization layer adapted to features in the thousands holds a variance above 65504: rounded to
    fp16 it became inf, the model's outputs collapsed, and the fp16 allowance grew to 1400x the logits' scale
    (any fp16 file passed). fp16 cannot hold such a value, so the calibration leaves it as it is."""
    import keras

    from dnnkit.core.tensors import fp16_round, set_weights
    from dnnkit.verification.fp16 import fp16_weight_error

    rng = np.random.default_rng(0)
    x = (rng.normal(size=(256, 4)) * np.array([1.0, 10.0, 800.0, 3000.0])).astype("float32")
    norm = keras.layers.Normalization()
    norm.adapt(x)
    model = keras.Sequential([keras.Input((4,)), norm, keras.layers.Dense(3, kernel_initializer="ones")])
    assert max(float(np.max(w)) for w in model.get_weights()) > 65504  # the variance
    ref = np.asarray(model.predict(x, verbose=0))
    copy = keras.models.clone_model(model)
    set_weights(copy, model.get_weights())  # a plain set_weights left the copy unnormalized: 10861 off
    np.testing.assert_array_equal(np.asarray(copy.predict(x, verbose=0)), ref)
    error = fp16_weight_error(model, x, ref)
    assert error < 0.01 * float(np.abs(ref).max())
    naive = keras.models.clone_model(model)
    with np.errstate(over="ignore"):
        set_weights(naive, [w.astype(np.float16).astype(w.dtype) for w in model.get_weights()])  # variance: inf
    assert float(np.abs(np.asarray(naive.predict(x, verbose=0)) - ref).max()) > 0.1 * float(np.abs(ref).max())
    kept = fp16_round(np.array([1.0001, 7e4], np.float32))
    assert kept[0] == np.float32(np.float16(1.0001)) and kept[1] == np.float32(7e4)
