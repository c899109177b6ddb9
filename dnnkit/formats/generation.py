"""Generation artifacts of a causal_lm or seq2seq model: its step model (:func:`dnnkit.builders.decoding.
step_model`: a Transformer's KV-cached step, an RNN's step with its ``h``/``c`` states) as a SavedModel and TFLite
files with two signatures, ``prefill`` (the whole window, right-padded) and ``decode`` (one token), and a third,
``encode`` (the source to ``encoder_hidden_states`` and an RNN decoder's first state) for an encoder-decoder;
and as one ONNX step file (a Transformer's token axis is dynamic, so prefill and decode are the same graph; an
RNN's step takes one token, and a prompt is fed token by token), with ``encoder.onnx`` beside it for an
encoder-decoder. Batch 1; the state is passed in and out, so no loop, no variable
and no dynamic slice is in any graph (builtin ops only). Precisions: fp32; fp16 and dynamic-range int8 in TFLite;
dynamic-range int8 in ONNX (onnxruntime's ``quantize_dynamic``). The teacher-forced full-sequence artifacts are
written as before, elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.builders.decoding import numpy_step, start_of, step_model
from dnnkit.core.generation import STEP_ARTIFACTS, encoder_file, greedy, onnx_name
from dnnkit.errors import one_line


def _functions(decoder: Any) -> dict[str, Any]:
    """The step model's functions: ``prefill``, ``decode`` (and ``encode`` for an encoder-decoder) with named
    inputs and outputs, and ``step`` (and ``encoder``) with flat arguments, for tf2onnx."""
    import tensorflow as tf

    caches = {n: tf.TensorSpec(shape, tf.float32, name=n) for n, shape in decoder.state_shapes(1).items()}
    encoded = getattr(decoder, "encoder_shapes", lambda batch: {})(1)
    caches.update({n: tf.TensorSpec(shape, tf.float32, name=n) for n, shape in encoded.items()})

    def signature(length: int | None, name: str) -> Any:
        spec = {"tokens": tf.TensorSpec((1, length), tf.int32, name="tokens"),
                "input_pos": tf.TensorSpec((1, length), tf.int32, name="input_pos"), **caches}

        def step(inputs: dict[str, Any]) -> dict[str, Any]:
            return decoder(inputs)
        step.__name__ = name  # the TFLite signature's key
        return tf.function(step, input_signature=[spec])

    names = list(caches)
    axis = decoder.token_axis
    flat = [tf.TensorSpec((1, axis), tf.int32, name="tokens"), tf.TensorSpec((1, axis), tf.int32, name="input_pos"),
            *caches.values()]

    @tf.function(input_signature=flat)
    def step(tokens: Any, input_pos: Any, *cache: Any) -> dict[str, Any]:  # tf2onnx reads flat arguments
        return decoder({"tokens": tokens, "input_pos": input_pos, **dict(zip(names, cache))})

    fns = {"prefill": signature(decoder.capacity, "prefill"), "decode": signature(1, "decode"), "step": step}
    if hasattr(decoder, "encode"):
        source = tf.TensorSpec((1, decoder.source_steps), tf.int32, name="source")

        def encode(inputs: dict[str, Any]) -> dict[str, Any]:
            return decoder.encode(inputs["source"])
        fns["encode"] = tf.function(encode, input_signature=[{"source": source}])
        fns["encoder"] = tf.function(lambda source: decoder.encode(source), input_signature=[source])
    return fns


def _named(frozen: Any, traced: Any) -> Any:
    """``frozen`` (flat outputs ``output_0..``) called from a function with ``traced``'s named inputs and
    outputs (a dict flattens by sorted keys)."""
    import tensorflow as tf

    keys = sorted(traced.get_concrete_function().structured_outputs)
    order = [t.name.split(":")[0] for t in frozen.inputs]

    def call(inputs: dict[str, Any]) -> dict[str, Any]:
        return dict(zip(keys, frozen(*[inputs[n] for n in order])))
    call.__name__ = traced.__name__
    return tf.function(call, input_signature=traced.input_signature).get_concrete_function()


def _onnx(step: Any, opset: int) -> Any:
    """The step function frozen (variables as constants) and converted by tf2onnx, its inputs and outputs
    named as Hugging Face Optimum's decoders are (:func:`onnx_name`)."""
    import tf2onnx
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    try:  # Keras's tf2onnx shim for NumPy 2 (np.object, np.cast)
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    except ImportError:  # pragma: no cover - older or newer Keras
        pass
    frozen = convert_variables_to_constants_v2(step.get_concrete_function())
    graph_def = frozen.graph.as_graph_def()
    inputs = [t.name for t in frozen.inputs]
    outputs = [t.name for t in frozen.outputs]
    proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=opset)
    structured = step.get_concrete_function().structured_outputs
    keys = sorted(structured) if isinstance(structured, dict) else []  # TensorFlow flattens a dict by sorted keys
    rename = {o: onnx_name(k, "out") for o, k in zip(outputs, keys)} if len(keys) == len(outputs) else {}
    rename.update({name: onnx_name(name.split(":")[0], "in") for name in inputs})
    for node in proto.graph.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    for value in list(proto.graph.input) + list(proto.graph.output):
        value.name = rename.get(value.name, value.name)
    return proto


def _save(fns: dict[str, Any], signatures: list[str], folder: Path) -> None:
    """The signatures frozen (weights as constants) into a SavedModel: the TFLite converter would otherwise keep
    weights the signatures share as resource variables (VAR_HANDLE / READ_VARIABLE) and could not quantize them.
    No gradients are saved: an activation with a custom gradient (SiLU's) would refuse its captured constant."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = {k: _named(convert_variables_to_constants_v2(fns[k].get_concrete_function()), fns[k])
              for k in signatures}
    tf.saved_model.save(tf.Module(), str(folder), signatures=frozen,
                        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))


def _quantize_dynamic(path: Path) -> None:
    """``path`` (an fp32 ONNX step file) replaced by onnxruntime's dynamic-range int8 twin: int8 MatMul
    weights, activations quantized per call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_suffix(".fp32.onnx")
    path.replace(fp32)
    try:
        quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"])
    finally:
        fp32.unlink(missing_ok=True)


def _calibration(decoder: Any, prompts: list[list[int]], limits: list[int]) -> list[tuple[str, dict[str, Any]]]:
    """A full-int8 file's representative inputs: every call the Keras step model makes generating after
    ``prompts`` (an encoder-decoder's ``encode`` calls too), as ``(signature, inputs)`` pairs."""
    calls: list[tuple[str, dict[str, Any]]] = []
    step = numpy_step(decoder)

    def record(tokens: Any, pos: Any, state: dict[str, Any]) -> tuple:
        calls.append(("prefill" if tokens.shape[1] > 1 else "decode",
                      {"tokens": tokens, "input_pos": pos, **{k: np.asarray(v, np.float32) for k, v in state.items()}}))
        return step(tokens, pos, state)

    steps = int(getattr(decoder, "source_steps", 0))
    for prompt, limit in zip(prompts, limits):
        state, rest = start_of(decoder, prompt)
        if steps:
            calls.append(("encode", {"source": np.array([prompt[:steps]], np.int32)}))
        greedy(record, state, rest, decoder.capacity, max(1, limit), prefill_len=decoder.capacity)
    return calls


def export_decoders(model: Any, folder: str | os.PathLike[str], names: tuple[str, ...] = tuple(STEP_ARTIFACTS),
                    opset: int = 17, capacity: int | None = None, calibration: list[list[int]] | None = None,
                    calibration_limits: list[int] | None = None) -> dict[str, dict[str, Any]]:
    """Write the generation artifacts ``names`` of ``model`` into ``folder``.

    Args:
        model: the causal_lm or seq2seq ``keras.Model``.
        folder: where the files go (:data:`dnnkit.core.generation.STEP_ARTIFACTS` names them).
        names: which of ``STEP_ARTIFACTS`` to write.
        opset: the ONNX opset.
        capacity: a keras-hub causal LM's cache positions (a dnnkit model's is its sequence length).
        calibration: prompts whose generation calibrates the full-int8 file (``calibration_limits`` tokens
            each, default 8).

    Returns:
        Per name: ``{"path", "format", "precision", "signatures"}`` (and ``"encoder_path"``: an encoder-decoder's
        ONNX encoder) or ``{"format", "precision", "error"}`` (one line).
    """
    import tensorflow as tf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    decoder = step_model(model, capacity)
    fns = _functions(decoder)
    saved = folder / STEP_ARTIFACTS["decoder_saved_model"][2]
    signatures = (["encode"] if "encode" in fns else []) + ["prefill", "decode"]
    _save(fns, signatures, saved)
    out: dict[str, dict[str, Any]] = {}
    onnx_fp32: dict[str, bytes] = {}  # converted once, for every ONNX precision
    for name in names:
        fmt, precision, file = STEP_ARTIFACTS[name]
        path = folder / file
        try:
            entry: dict[str, Any] = {"path": str(path), "format": fmt, "precision": precision,
                                     "signatures": signatures if fmt != "onnx" else ["step"]}
            if fmt == "tflite":
                conv = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=signatures)
                if precision in ("fp16", "dynamic_int8"):
                    conv.optimizations = [tf.lite.Optimize.DEFAULT]
                if precision == "fp16":
                    conv.target_spec.supported_types = [tf.float16]
                if precision == "int8":  # int8 weights and activations; the state stays float at the edges
                    if not calibration:
                        raise ValueError("a full-int8 step file needs calibration prompts, got none")
                    calls = _calibration(decoder, calibration, calibration_limits or [8] * len(calibration))
                    conv.optimizations = [tf.lite.Optimize.DEFAULT]
                    conv.representative_dataset = lambda: iter(calls)
                    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
                path.write_bytes(conv.convert())
            elif fmt == "onnx":
                if not onnx_fp32:
                    onnx_fp32["step"] = _onnx(fns["step"], opset).SerializeToString()
                    if "encoder" in fns:
                        onnx_fp32["encoder"] = _onnx(fns["encoder"], opset).SerializeToString()
                files = {"step": path}
                if "encoder" in onnx_fp32:
                    files["encoder"] = entry["encoder_path"] = path.with_name(encoder_file(file))
                    entry["signatures"] = ["encoder", "step"]
                for part, where in files.items():
                    where.write_bytes(onnx_fp32[part])
                    if precision == "dynamic_int8":
                        _quantize_dynamic(where)
                if "encoder_path" in entry:
                    entry["encoder_path"] = str(entry["encoder_path"])
            out[name] = entry
        except Exception as exc:  # noqa: BLE001 - a converter's failure is this artifact's, the rest go on
            out[name] = {"format": fmt, "precision": precision, "error": one_line(exc)}
    if "decoder_saved_model" in names:
        out["decoder_saved_model"] = {"path": str(saved), "format": "saved_model", "precision": "fp32",
                                      "signatures": signatures}
    return out
