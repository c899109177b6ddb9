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
    # CPU seconds per process: TensorFlow's import alone is seconds of CPU in the parent and the converter;
    # together no more than the cores could give in the job's wall time
    from dnnkit.runtimes import usable_cores

    cpu = timings["cpu_s"]
    assert set(cpu) == {"parent", "converter", "verifier"} and min(cpu.values()) > 0.2, cpu
    assert sum(cpu.values()) <= timings["wall_s"] * usable_cores() + 0.5, cpu
    from dnnkit.report import time_line

    assert f"CPU {sum(cpu.values()):.1f} s (parent {cpu['parent']:.1f}, " in time_line(timings)[0]
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["timings"] == timings
    page = (out / "report.html").read_text()
    assert "id='timings'" in page and "id='throughput'" in page and "id='cpu'" in page


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
    # without the model at all (a converter started afresh does not load it for this item): names and
    # dtypes from the file, the same file
    alone = export_onnx_int8(None, tmp_path / "alone.onnx", calibration=x[:32].astype("float64"), fp32_source=source)
    assert alone == reused
    assert onnx.load(tmp_path / "alone.onnx") == onnx.load(tmp_path / "reused.onnx")


def test_converter_loads_no_model_for_the_int8_onnx_from_a_file(tmp_path):
    from dnnkit.formats import worker

    (tmp_path / "model.keras").write_bytes(b"not a model")
    np.savez(tmp_path / "rep.npz", x=np.zeros((2, 3), "float32"))
    job = {"model": str(tmp_path / "model.keras"), "representative": str(tmp_path / "rep.npz")}
    from_file = {"job": job, "format": "onnx", "precision": "int8", "fp32_onnx": {"path": "fp32.onnx"}}
    assert worker.prepare(from_file) >= 0 and "model" not in worker._LOADED
    for item in ({**from_file, "float_layers": ["conv"]}, {**from_file, "fp32_onnx": None},
                 {**from_file, "task": "rank"}, {**from_file, "format": "tflite"}):
        assert worker.needs_model(item)
        with pytest.raises(Exception):
            worker.prepare(item)


def test_tflite_starts_from_the_jobs_saved_model(run_manifest):
    # the SavedModel artifact is converted first and the TFLite conversions read it (no SavedModel of
    # their own); reading it changes nothing in it: it is verified against the digest taken at export
    _, manifest = run_manifest
    by_name = {e["name"]: e for e in manifest["artifacts"]}
    assert by_name["saved_model"]["status"] == "verified"
    # checked by the converter process (its TensorFlow is loaded), the others by the verifier
    assert by_name["saved_model"]["verification"]["process"] == "converter"
    assert all("process" not in e["verification"] for e in manifest["artifacts"] if e["format"] != "saved_model")
    tflite = [e for e in manifest["artifacts"] if e["format"] == "tflite"]
    assert tflite and all(e["conversion"]["converted_from"] == "saved_model" for e in tflite)
    assert all(e["status"] == "verified" for e in tflite)


def test_an_idle_verifier_checks_the_saved_model(tmp_path, monkeypatch):
    # while a long conversion runs the verifier has nothing to check: it takes the SavedModel, which the
    # converter would check only after its last conversion; checked the same, still timed by the converter
    import dnnkit
    import dnnkit.pipeline as pipeline
    from conftest import digits_dense

    model, x, y = digits_dense(epochs=1)
    monkeypatch.setattr(pipeline, "verifier_takes_saved_models", lambda timings: True)
    monkeypatch.setenv("DNNKIT_INJECT_FAULT", "tflite_fp32:sleep6")
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "two"\n[[artifacts]]\nname = "saved_model"\nformat = "saved_model"\n'
                      '[[artifacts]]\nname = "tflite_fp32"\nformat = "tflite"\n')
    manifest = dnnkit.export(model, recipe, tmp_path / "out", data=(x, y))
    saved_model, tflite = manifest["artifacts"]
    assert manifest["status"] == "verified" and saved_model["status"] == tflite["status"] == "verified"
    assert saved_model["verification"]["process"] == "verifier" and "process" not in tflite["verification"]
    assert saved_model["parity"]["max_abs_diff"] <= 1e-4 and saved_model["latency_ms"]["p50"] > 0
    # it was checked before the sleeping conversion ended: the checks overlapped the conversions
    assert manifest["timings"]["overlap_s"] >= 3


def test_verifier_takes_saved_models_where_the_check_outlasts_the_import():
    from dnnkit.pipeline import TF_IMPORT_S, verifier_takes_saved_models

    converter = {"workers": {"converter": [{"import_s": 3.4}]}}
    assert verifier_takes_saved_models({**converter, "reference_s": 18.0})  # 224x224 ResNet50
    assert not verifier_takes_saved_models({**converter, "reference_s": 0.3})  # digits
    assert not verifier_takes_saved_models({**converter, "reference_s": 3.0})
    assert verifier_takes_saved_models({"reference_s": TF_IMPORT_S + 0.1})  # no import measured yet
    assert not verifier_takes_saved_models({"reference_s": TF_IMPORT_S - 0.1})
    assert not verifier_takes_saved_models({})


def test_reference_failure_stops_the_conversions(tmp_path, monkeypatch):
    # the reference outputs are computed while the first artifacts convert; when that fails, no further
    # conversion starts and the error is raised once the one in progress has ended
    import threading
    import time

    import dnnkit
    import dnnkit.pipeline as pipeline
    from conftest import digits_dense

    model, x, y = digits_dense(epochs=1)

    def failing(*args, **kwargs):
        time.sleep(0.5)
        raise RuntimeError("reference failed on purpose")

    import dnnkit.formats as formats

    settled = []
    convert = formats.convert_artifacts

    def recording(*args, **kwargs):
        return convert(*args, **{**kwargs, "on_settled": lambda name, result: (settled.append(name),
                                                                            kwargs["on_settled"](name, result))})

    monkeypatch.setattr(pipeline, "_reference_outputs", failing)
    monkeypatch.setattr(formats, "convert_artifacts", recording)
    with pytest.raises(RuntimeError, match="on purpose"):
        dnnkit.export(model, RECIPES / "all.toml", tmp_path / "out", data=(x, y))
    assert not [t for t in threading.enumerate() if t.name == "dnnkit-conversions"]
    assert 1 <= len(settled) <= 2  # the first had started (the converter was importing); none after the failure
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_large_samples_are_predicted_by_a_compiled_call():
    import gc

    import keras

    from dnnkit import signature

    keras.utils.set_random_seed(0)
    inp = keras.Input((128, 128, 3))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, activation="relu")(inp))
    model = keras.Model(inp, keras.layers.Dense(4)(h))
    x = np.random.default_rng(0).uniform(0, 1, (10, 128, 128, 3)).astype("float32")
    assert x[:1].nbytes >= signature.COMPILED_SAMPLE_BYTES
    got = signature.predict(model, x, batch_size=4)[0]
    assert model in signature._COMPILED  # noqa: SLF001
    want = np.concatenate([np.asarray(model(x[i:i + 4], training=False)) for i in range(0, 10, 4)])
    assert got.shape == (10, 4) and np.allclose(got, want, rtol=1e-5, atol=1e-6)
    digits = np.zeros((5, 64), "float32")  # small samples stay eager (tracing would cost more)
    dense = keras.Sequential([keras.Input((64,)), keras.layers.Dense(3)])
    signature.predict(dense, digits)
    assert dense not in signature._COMPILED  # noqa: SLF001
    count = len(signature._COMPILED)  # noqa: SLF001
    del model
    gc.collect()
    assert len(signature._COMPILED) == count - 1  # the compiled call does not keep its model alive  # noqa: SLF001
