"""Empirical bias correction (issue 26, rung c): the mean error rounded weights cause, taken out of the biases
(or the BatchNormalization after a bias-free layer), checked against a direct computation on held-out inputs."""

import numpy as np
import pytest

from dnnkit.passes.bias_correction import bias_correction, correctable_layers, quantize_per_channel


def test_the_weight_quantizer_is_symmetric_per_output_channel():
    rng = np.random.default_rng(0)
    kernel = (rng.normal(size=(3, 3, 4, 5)) * np.array([0.01, 1, 10, 100, 0.5])).astype("float32")
    q = quantize_per_channel(kernel, bits=8)
    scale = np.abs(kernel).reshape(-1, 5).max(0) / 127
    steps = q.reshape(-1, 5) / scale
    assert np.allclose(steps, np.round(steps), atol=1e-3)  # on each channel's own grid
    assert np.allclose(np.abs(q).reshape(-1, 5).max(0), np.abs(kernel).reshape(-1, 5).max(0), rtol=1e-6)
    assert np.all(np.abs(q - kernel).reshape(-1, 5) <= scale / 2 + 1e-7)
    q7 = quantize_per_channel(kernel, bits=7, axis=-2)  # depthwise kernels: channels on axis -2
    scale7 = np.abs(np.moveaxis(kernel, -2, -1)).reshape(-1, 4).max(0) / 63
    assert np.all(np.abs(np.moveaxis(q7 - kernel, -2, -1)).reshape(-1, 4) <= scale7 / 2 + 1e-7)


def _model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3), name="image")
    h = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same", name="depthwise")(h)
    h = keras.layers.Conv2D(6, 1, use_bias=False, name="no_target")(h)  # read by two layers: nothing absorbs it
    a, b = keras.layers.GlobalAveragePooling2D()(h), keras.layers.GlobalMaxPooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(keras.layers.Concatenate()([a, b])))
    bn = model.get_layer("bn")
    bn.set_weights([np.full(8, 1.5, "float32"), np.full(8, 0.2, "float32"), np.full(8, 0.3, "float32"),
                    np.full(8, 2.0, "float32")])
    return model


@pytest.mark.parametrize("bits", [4, 8])
def test_the_corrected_model_has_no_mean_output_error_on_held_out_inputs(bits):
    model = _model()
    pairs = {layer.name: (bn.name if bn is not None else None) for layer, bn in correctable_layers(model)}
    assert pairs == {"conv": "bn", "depthwise": None, "logits": None}  # "no_target" has two readers
    rng = np.random.default_rng(1)
    calibration = rng.uniform(0, 1, (200, 8, 8, 3)).astype("float32")  # a non-zero mean: the error is biased
    held_out = rng.uniform(0, 1, (200, 8, 8, 3)).astype("float32")
    fixed, record = bias_correction(model, calibration, bits=bits)
    assert record["layers"] == 3 and record["bits"] == bits and record["calibration_samples"] == 200
    rounded = {"conv": quantize_per_channel(model.get_layer("conv").get_weights()[0], bits, -1),
               "depthwise": quantize_per_channel(model.get_layer("depthwise").get_weights()[0], bits, -2)}
    # each corrected layer's output (the conv's through its BatchNormalization), every weight upstream rounded:
    # the mean error per channel against the float model, on inputs the correction never saw
    for reader, rounded_here in (("bn", ["conv"]), ("depthwise", ["conv", "depthwise"])):
        ref = keras_out(model, reader, held_out, {})
        channels = ref.shape[-1]
        before = (keras_out(model, reader, held_out, {k: rounded[k] for k in rounded_here}) - ref
                  ).reshape(-1, channels).mean(0)
        after = (keras_out(fixed, reader, held_out, {k: rounded[k] for k in rounded_here}) - ref
                 ).reshape(-1, channels).mean(0)
        assert np.abs(before).max() > 1e-4, (reader, before)
        # what is left: held-out vs calibration means, and the upstream noise's mean after ReLU (second order;
        # measured 9x smaller at 8 bits, more at 4)
        assert np.abs(after).max() < 0.25 * np.abs(before).max(), (reader, bits, before, after)
    # the float weights themselves are untouched: only the biases and the moving mean moved
    assert np.array_equal(fixed.get_layer("conv").get_weights()[0], model.get_layer("conv").get_weights()[0])
    moved = fixed.get_layer("bn").get_weights()[2] - model.get_layer("bn").get_weights()[2]
    assert np.abs(moved).max() > 0
    for name in ("bn", "depthwise"):  # the rest of each layer's weights as they were
        assert np.array_equal(fixed.get_layer(name).get_weights()[0], model.get_layer(name).get_weights()[0])


def keras_out(model, name, x, kernels):
    """Layer ``name``'s output on ``x`` with the kernels of the layers ``kernels`` names replaced meanwhile."""
    import keras

    saved = {k: model.get_layer(k).get_weights() for k in kernels}
    for k, kernel in kernels.items():
        model.get_layer(k).set_weights([kernel, *saved[k][1:]])
    try:
        out = keras.Model(model.inputs, model.get_layer(name).output)(x, training=False)
        return keras.ops.convert_to_numpy(out).astype(np.float64)
    finally:
        for k, weights in saved.items():
            model.get_layer(k).set_weights(weights)


def test_a_batchnorm_after_a_nonlinear_bias_free_layer_takes_no_correction():
    """The error is before the activation; the BatchNormalization reads it after, bent by the ReLU."""
    import keras

    inp = keras.Input((6, 6, 2))
    h = keras.layers.Conv2D(4, 3, use_bias=False, activation="relu", name="relu_conv")(inp)
    h = keras.layers.BatchNormalization(name="bn")(h)
    model = keras.Model(inp, keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(h)))
    assert [(layer.name, bn) for layer, bn in correctable_layers(model)] == [("logits", None)]


def test_a_model_with_nothing_to_correct_is_refused():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)])
    with pytest.raises(ValueError, match="no Conv/Dense layer with a bias or a BatchNormalization after it"):
        bias_correction(model, np.zeros((4, 4), "float32"))
