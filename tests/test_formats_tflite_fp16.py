"""An fp16 TFLite file keeps its small constants other than weights in fp32 (dnnkit.formats.tflite_fp16).

The model subtracts an ImageNet-like mean (123.675, which fp16 rounds to 123.6875) from inputs in
0..255 before two Dense layers, whose kernels stay fp16. Both files run on LiteRT's built-in kernels
without XNNPACK, which compute in fp32 on every CPU: the only difference between the Keras model and
the file is then the rounding of the constants, so the figures do not depend on fp16 hardware.
"""

import numpy as np
MEAN, STD, FEATURES = 123.675, 58.395, 48


def _model():
    import keras

    rng = np.random.default_rng(0)
    inp = keras.Input((FEATURES,))
    x = keras.layers.Normalization(mean=MEAN, variance=STD ** 2)(inp)
    x = keras.layers.Dense(64, activation="relu")(x)
    out = keras.layers.Dense(3)(x)
    model = keras.Model(inp, out)
    model.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in model.get_weights()])
    return model, rng.uniform(0, 255, (64, FEATURES)).astype("float32")


def _run(content: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=content,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    return it.get_tensor(out["index"])


def _fp16_constants(content: bytes) -> list[int]:
    """Element counts of the fp16 constants a DEQUANTIZE op reads."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(content))
    graph = model.subgraphs[0]
    codes = {i for i, c in enumerate(model.operatorCodes)
             if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.DEQUANTIZE}
    return [int(np.prod(graph.tensors[op.inputs[0]].shape)) for op in graph.operators if op.opcodeIndex in codes
            and graph.tensors[op.inputs[0]].type == schema.TensorType.FLOAT16]


def test_small_constants_stay_fp32_and_the_mean_offset_is_gone(tmp_path):
    from dnnkit.formats.tflite import _convert, _converter, export_tflite, saved_model_for
    from dnnkit.formats.tflite_fp16 import keep_small_constants_fp32

    model, x = _model()
    ref = model.predict(x, verbose=0)
    fp32_path, fp16_path = tmp_path / "fp32.tflite", tmp_path / "fp16.tflite"
    export_tflite(model, fp32_path, precision="fp32")
    info = export_tflite(model, fp16_path, precision="fp16", fp32_source=str(fp32_path))
    fixed = fp16_path.read_bytes()
    # the converter's own fp16 file: every constant rounded
    plain = _convert(_converter(model, saved_model_for(model, None), "fp16", None, None, "float", False, False))

    # the two Dense kernels stay fp16 (a layer's weights: the size is there); biases and the Normalization's
    # constants are back in fp32
    assert sorted(_fp16_constants(fixed)) == [64 * 3, FEATURES * 64]
    assert len(_fp16_constants(plain)) == 2 + info["fp32_constants"] and info["fp32_constants"] >= 3
    assert len(fixed) < 0.75 * fp32_path.stat().st_size
    # the same file whether the fp32 values come from the job's fp32 artifact or a conversion of its own
    export_tflite(model, tmp_path / "own.tflite", precision="fp16")
    assert (tmp_path / "own.tflite").read_bytes() == fixed
    assert keep_small_constants_fp32(plain, fp32_path.read_bytes()) == (fixed, info["fp32_constants"])

    # the only error left is the kernels' rounding: equal to Keras with those rounded
    rounded = [w.astype(np.float16).astype(np.float32) if w.ndim == 2 else w for w in model.get_weights()]
    model.set_weights(rounded)
    ref_rounded = model.predict(x, verbose=0)
    scale = float(np.max(np.abs(ref)))
    err_fixed = float(np.max(np.abs(_run(fixed, x) - ref_rounded)))
    err_plain = float(np.max(np.abs(_run(plain, x) - ref_rounded)))
    assert err_fixed < 1e-5 * scale  # fp32 arithmetic only
    assert err_plain > 20 * err_fixed  # the rounded mean shifts every input by 0.0125 / 58.4
