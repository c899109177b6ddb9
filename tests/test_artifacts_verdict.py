"""Each file's own verdict stored inside it (issue 24, B2): only the fixed-size slot's bytes change, the file
still loads and gives the same outputs, and the manifest's digests follow."""

from __future__ import annotations

import numpy as np
import pytest

from dnnkit.artifacts.metadata import SLOT, UNCHECKED, VERDICT, read_verdict, stamp_verdict


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import keras
    import onnx
    import tensorflow as tf

    from dnnkit.artifacts.metadata import add_tflite_metadata, set_onnx_metadata

    tmp = tmp_path_factory.mktemp("verdict")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    fields = {"name": "m", "labels": ["a", "b", "c"], VERDICT: UNCHECKED}
    (tmp / "m.tflite").write_bytes(add_tflite_metadata(content, fields))
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])])
    proto = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    set_onnx_metadata(proto, fields)
    onnx.save(proto, str(tmp / "m.onnx"))
    return tmp


@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_only_the_slot_changes_and_the_file_still_runs(files, fmt):
    path = files / f"m.{fmt}"
    before = path.read_bytes()
    assert read_verdict(path, fmt) == UNCHECKED
    verdict = {"status": "failed", "reason": "agreement 0.44 < 0.98", "criteria": "mobile", "inputs_checked": 178}
    assert stamp_verdict(path, fmt, verdict) and read_verdict(path, fmt) == verdict
    after = path.read_bytes()
    assert len(after) == len(before)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
    assert changed and changed[-1] - changed[0] < SLOT  # one window of the slot, nothing else
    assert not stamp_verdict(path, fmt, verdict)  # the same verdict again: the file is left alone
    x = np.ones((1, 4), "float32")
    if fmt == "tflite":
        from ai_edge_litert.interpreter import Interpreter

        run = Interpreter(model_path=str(path))
        run.allocate_tensors()
        run.set_tensor(run.get_input_details()[0]["index"], x)
        run.invoke()
        assert run.get_tensor(run.get_output_details()[0]["index"]).shape == (1, 3)
    else:
        import onnxruntime as ort

        assert np.array_equal(ort.InferenceSession(str(path)).run(None, {"x": x})[0], x)


def test_a_long_reason_is_cut_to_fit_and_a_file_without_a_slot_is_left_alone(files, tmp_path):
    path = files / "m.tflite"
    stamp_verdict(path, "tflite", {"status": "failed", "reason": "x" * 2000, "criteria": "c", "inputs_checked": 1})
    stored = read_verdict(path, "tflite")
    assert stored["reason"].endswith("...") and len(stored["reason"]) < 500
    import keras
    import tensorflow as tf

    plain = tmp_path / "plain.tflite"
    plain.write_bytes(tf.lite.TFLiteConverter.from_keras_model(
        keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])).convert())
    assert read_verdict(plain, "tflite") is None and not stamp_verdict(plain, "tflite", {"status": "verified"})
