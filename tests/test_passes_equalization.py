"""Cross-layer equalization (dnnkit.passes.equalization): the function stays the same, the channel ranges
become equal, and it is applied only where the activation between two layers allows it."""

import numpy as np
import pytest

from dnnkit.passes.equalization import cross_layer_equalization, equalizable_pairs


def _spread_channels(layer, factors, axis=-1):
    weights = layer.get_weights()
    shape = [1] * weights[0].ndim
    shape[axis] = -1
    weights[0] = weights[0] * factors.reshape(shape).astype("float32")
    layer.set_weights(weights)


def triplet_model(seed=0):
    """conv -> BatchNorm -> ReLU -> depthwise -> BatchNorm -> ReLU -> conv -> Dense, the first conv's channels
    100x apart; plus a leaky-ReLU Dense pair."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 3))
    c1 = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="expand")
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn1")(c1(inp)))
    x = keras.layers.ZeroPadding2D(1)(x)
    x = keras.layers.DepthwiseConv2D(3, name="dw")(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(name="bn2")(x))
    x = keras.layers.Conv2D(8, 1, name="project")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(12, activation="relu", name="fc1")(x)
    out = keras.layers.Dense(4, name="fc2")(keras.layers.LeakyReLU(0.1)(x))
    model = keras.Model(inp, out)
    _spread_channels(c1, np.logspace(0, 2, 16))
    rng = np.random.default_rng(seed)
    for bn in ("bn1", "bn2"):
        layer = model.get_layer(bn)
        gamma, beta, mean, var = layer.get_weights()
        layer.set_weights([rng.uniform(0.5, 2, 16).astype("float32"), rng.normal(0, 0.1, 16).astype("float32"),
                           rng.normal(0, 0.1, 16).astype("float32"), rng.uniform(0.5, 2, 16).astype("float32")])
    return model, rng.normal(size=(64, 8, 8, 3)).astype("float32")


def test_equalization_keeps_the_function_and_equalizes_the_ranges():
    model, x = triplet_model()
    original = [w.copy() for w in model.get_weights()]
    pairs = [(a.name, b.name if b is not None else None, c.name) for a, b, c in equalizable_pairs(model)]
    assert pairs == [("expand", "bn1", "dw"), ("dw", "bn2", "project"), ("fc1", None, "fc2")]
    copy, record = cross_layer_equalization(model)
    ref, got = model.predict(x, verbose=0), copy.predict(x, verbose=0)
    assert np.max(np.abs(got - ref)) <= 1e-5 * np.max(np.abs(ref))
    assert record["pairs"] == 3 and record["spread_before"] > 50
    assert record["spread_after"] < record["spread_before"] / 10
    # the first conv's effective ranges (BatchNorm folded) and the depthwise's input ranges now match per channel
    bn = {w.path.split("/")[-1]: v for w, v in zip(copy.get_layer("bn1").weights, copy.get_layer("bn1").get_weights())}
    r1 = np.abs(copy.get_layer("expand").get_weights()[0]).reshape(-1, 16).max(0) * np.abs(bn["gamma"]) / np.sqrt(
        bn["moving_variance"] + copy.get_layer("bn1").epsilon)
    r2 = np.abs(copy.get_layer("dw").get_weights()[0]).reshape(-1, 16).max(0)
    # each sweep equalizes one pair exactly; its neighbour's next step moves the shared layer, so within a tenth
    np.testing.assert_allclose(r1, r2, rtol=0.1)
    assert all(np.array_equal(a, b) for a, b in zip(original, model.get_weights()))  # the model itself untouched


@pytest.mark.parametrize("between", ["swish", "relu6", "residual", "gelu"])
def test_not_applied_where_rescaling_would_change_the_function(between):
    import keras

    inp = keras.Input((6, 6, 2))
    a = keras.layers.Conv2D(8, 3, padding="same")(inp)
    if between == "relu6":
        x = keras.layers.ReLU(6.0)(a)
    elif between == "residual":
        x = keras.layers.Add()([a, keras.layers.Conv2D(8, 1)(a)])
    else:
        x = keras.layers.Activation(between)(a)
    model = keras.Model(inp, keras.layers.Conv2D(4, 1)(x))
    assert equalizable_pairs(model) == []
    with pytest.raises(ValueError, match="cross-layer equalization: no two Conv/Dense layers joined"):
        cross_layer_equalization(model)
