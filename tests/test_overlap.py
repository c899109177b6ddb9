"""The export's work overlapped (issue 12): workers started ahead, conversion and verification side by
side, latency timed alone at the end, stage timings in the manifest; and the memory fixes in the ONNX
path change no byte of the files they write."""

import json

import numpy as np
import pytest

from conftest import MODELS, RECIPES


@pytest.fixture(scope="module")
def run_manifest(tmp_path_factory):
    import dnnkit

    out = tmp_path_factory.mktemp("overlap") / "run"
    return out, dnnkit.run(MODELS / "digits_mlp.toml", RECIPES / "all.toml", out, epochs=2)


def test_manifest_says_where_the_time_went(run_manifest):
    out, manifest = run_manifest
    assert manifest["status"] == "verified"
    timings = manifest["timings"]
    for stage in ("wall_s", "data_s", "import_s", "train_s", "reference_s", "conversions_s", "verifications_s",
                  "latency_s", "report_s"):
        assert timings[stage] >= 0, stage
    assert timings["wall_s"] >= timings["train_s"] + timings["conversions_s"]
    # conversion and verification ran side by side: checks began before the last conversion was done
    assert 0 < timings["overlap_s"] <= min(timings["conversions_s"], timings["verifications_s"])
    (converter,), (verifier,) = timings["workers"]["converter"], timings["workers"]["verifier"]
    for worker in (converter, verifier):  # started before training, one process each for the whole job
        assert worker["prestarted"] is True and worker["import_s"] > 0 and worker["waited_s"] >= 0
    assert converter["ready_after_s"] < timings["import_s"] + timings["train_s"] + timings["data_s"] + 5
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["timings"] == timings
    page = (out / "report.html").read_text()
    assert "id='timings'" in page and "id='throughput'" in page


def test_every_artifact_timed_after_its_checks(run_manifest):
    _, manifest = run_manifest
    for entry in manifest["artifacts"]:
        assert "latency_pending" not in entry
        assert entry["latency_ms"]["p50"] > 0 and entry["verification"]["latency_seconds"] > 0, entry["name"]
        assert entry["verification"]["seconds"] > 0


CONVERT = """
import hashlib, sys
import tf2onnx
from dnnkit.formats.frozen import frozen_graph
from dnnkit.formats.onnx import _lean_optimizer
from dnnkit.modelio import load_reference_model
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


def test_int8_onnx_quantizes_the_jobs_fp32_onnx(run_manifest):
    _, manifest = run_manifest
    by_name = {e["name"]: e for e in manifest["artifacts"]}
    fp32, int8 = by_name["onnx_fp32"], by_name["onnx_int8"]
    assert int8["conversion"]["quantized_from"] == "onnx_fp32.onnx"
    assert int8["transforms"] == fp32["transforms"] and int8["status"] == "verified"


def test_int8_onnx_from_a_file_is_the_int8_onnx_from_the_model(trained_runs, tmp_path):
    # quantizing the job's fp32 file instead of converting the model again: the same ops, bit-identical
    # outputs (one process: only tf2onnx's node names differ)
    import collections

    import onnx
    import onnxruntime as ort

    from dnnkit.formats.onnx import export_onnx, export_onnx_int8
    from dnnkit.modelio import load_reference_model

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
