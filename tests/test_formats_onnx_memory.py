"""The memory fixes in the ONNX path change no byte of what they write: tf2onnx without its per-pass
rewrite, and the int8 file quantized from the job's fp32 file instead of the model."""

import json

import numpy as np

CONVERT = """
import hashlib, sys
import tf2onnx
from dnnkit.formats.frozen import frozen_graph
from dnnkit.formats.onnx import _lean_optimizer
from dnnkit.sources.open import load_reference_model
from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase
original = GraphOptimizerBase.optimize
graph_def, inputs, outputs, _ = frozen_graph(load_reference_model(sys.argv[1]), None, None)
def convert():
    return tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=17)[0]
if sys.argv[2] == "lean":
    with _lean_optimizer():
        proto = convert()
    assert GraphOptimizerBase.optimize is original  # put back
else:
    proto = convert()
import collections, json
import numpy as np
import onnxruntime as ort
from onnx import numpy_helper
x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 1)).astype("float32")
session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
out = session.run(None, {session.get_inputs()[0].name: x})[0]
print(json.dumps({"ops": sorted(collections.Counter(n.op_type for n in proto.graph.node).items()),
                  "weights": sorted(hashlib.sha256(numpy_helper.to_array(i).tobytes()).hexdigest()
                                    for i in proto.graph.initializer),
                  "outputs": hashlib.sha256(out.tobytes()).hexdigest()}))
"""


def test_lean_tf2onnx_writes_the_same_graph(trained_runs):
    # each in a fresh process (tf2onnx numbers node names process-wide, and its node order varies from
    # one process to the next): the same ops, the same weights, bit-identical outputs
    import subprocess
    import sys

    plain, lean = [json.loads(subprocess.run([sys.executable, "-c", CONVERT, str(trained_runs["digits_cnn"].model_path),
                                              how], capture_output=True, text=True, check=True,
                                             timeout=600).stdout.splitlines()[-1]) for how in ("plain", "lean")]
    assert plain["ops"] and plain["weights"] and plain == lean


def test_int8_onnx_from_a_file_is_the_int8_onnx_from_the_model(trained_runs, tmp_path):
    # quantizing the job's fp32 file instead of converting the model again: the same ops, bit-identical
    # outputs (one process: only tf2onnx's node names differ)
    import collections

    import onnx
    import onnxruntime as ort

    from dnnkit.formats.onnx import export_onnx, export_onnx_int8
    from dnnkit.sources.open import load_reference_model

    model = load_reference_model(trained_runs["digits_cnn"].model_path)
    x = np.random.default_rng(0).uniform(0, 1, (64, 8, 8, 1)).astype("float32")
    written = export_onnx(model, tmp_path / "fp32.onnx", check_inputs=x)
    fresh = export_onnx_int8(model, tmp_path / "fresh.onnx", calibration=x[:32])
    source = {"path": str(tmp_path / "fp32.onnx"), "transforms": written["transforms"], "external_data": None}
    reused = export_onnx_int8(model, tmp_path / "reused.onnx", calibration=x[:32], fp32_source=source)
    assert reused["quantized_from"] == "fp32.onnx" and "quantized_from" not in fresh
    assert reused["calibration_samples"] == fresh["calibration_samples"] == 32
    outputs, ops = [], []
    for name in ("fresh.onnx", "reused.onnx"):
        ops.append(collections.Counter(n.op_type for n in onnx.load(tmp_path / name).graph.node))
        session = ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"])
        outputs.append(session.run(None, {session.get_inputs()[0].name: x})[0])
    assert ops[0] == ops[1] and ops[0]["QuantizeLinear"] > 0
    assert np.array_equal(outputs[0], outputs[1])
    # without the model at all (a converter started afresh does not load it for this item): names and
    # dtypes from the file, the same file
    alone = export_onnx_int8(None, tmp_path / "alone.onnx", calibration=x[:32].astype("float64"), fp32_source=source)
    assert alone == reused
    assert onnx.load(tmp_path / "alone.onnx") == onnx.load(tmp_path / "reused.onnx")
