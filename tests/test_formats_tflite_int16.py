"""TFLite 16x8 files of models with LayerNormalization run (dnnkit.formats.tflite_int16).

The converter writes LayerNorm's variance as SQUARED_DIFFERENCE, which LiteRT has no int16 kernel for; dnnkit
converts a copy whose variance is a mean of products.
"""

import numpy as np
import pytest


def _model():
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((6, 16))
    x = keras.layers.Dense(32)(inp)
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    x = keras.layers.Activation("gelu")(x)
    block = keras.Sequential([keras.layers.Dense(32), keras.layers.LayerNormalization()], name="nested")
    x = block(x)
    out = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inp, out)
    first = model.layers[1]
    kernel, bias = first.get_weights()
    kernel[:, 0] *= 200.0  # one channel 200x wider before the LayerNorm, as in ConvNeXt's residual stream
    first.set_weights([kernel, bias])
    for layer in model.layers + block.layers:  # LayerNorm weights away from 1 and 0
        if isinstance(layer, keras.layers.LayerNormalization):
            layer.set_weights([np.random.default_rng(2).uniform(0.5, 2, 32).astype("float32"),
                               np.random.default_rng(3).normal(0, 0.5, 32).astype("float32")])
    return model


def _ops_and_run(path, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    return {op["op_name"] for op in it._get_ops_details()}, it.get_tensor(out["index"])  # noqa: SLF001


def test_16x8_files_of_layer_norm_models_run_all_integer(tmp_path):
    from dnnkit.formats.tflite import _convert, _converter, export_tflite, saved_model_for

    model = _model()
    rng = np.random.default_rng(0)
    # bounded inputs: a test value outside the calibrated range would be clipped, in both files
    calib, x = rng.uniform(-1, 1, (200, 6, 16)).astype("float32"), rng.uniform(-1, 1, (100, 6, 16)).astype("float32")
    ref = model.predict(x, verbose=0)

    plain = tmp_path / "plain.tflite"  # the converter's own 16x8 file of the same model
    plain.write_bytes(_convert(_converter(model, saved_model_for(model, None), "int16x8", calib, None, "float",
                                          False, True)))
    with pytest.raises(RuntimeError, match="SquaredDifference only supports FLOAT32 and INT32"):
        _ops_and_run(plain, x)

    path = tmp_path / "x.tflite"
    info = export_tflite(model, path, precision="int8", activations="int16", representative=calib,
                         float_fallback=True)
    assert info["layer_norms_without_squared_difference"] == 2
    ops, got = _ops_and_run(path, x)
    assert "SQUARED_DIFFERENCE" not in ops and {"MEAN", "RSQRT", "MUL", "SUB"} <= ops
    assert ops - {"QUANTIZE", "DEQUANTIZE"} <= {"FULLY_CONNECTED", "MEAN", "SUB", "MUL", "ADD", "RSQRT", "GELU",
                                                "RESHAPE", "SHAPE", "GATHER", "REDUCE_PROD", "CONCATENATION",
                                                "PACK", "STRIDED_SLICE", "SUM"}
    # only the input's QUANTIZE and the output's DEQUANTIZE leave int16: no op fell back to float
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    kinds = [op["op_name"] for op in it._get_ops_details()]  # noqa: SLF001
    assert kinds.count("QUANTIZE") == 1 and kinds.count("DEQUANTIZE") == 1

    # one channel 200x wider: int8 activations keep the others to a step or two, int16 ones to ~500 steps; the
    # all-int8 file of the same model (its LayerNorm runs: SQUARED_DIFFERENCE has an int8 kernel) is the bound
    export_tflite(model, tmp_path / "int8.tflite", precision="int8", representative=calib)
    _, got8 = _ops_and_run(tmp_path / "int8.tflite", x)
    err16, err8 = float(np.max(np.abs(got - ref))), float(np.max(np.abs(got8 - ref)))
    assert err16 < 0.5 * err8
