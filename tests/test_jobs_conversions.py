"""The export's work overlapped (issue 12): workers started ahead, conversion and verification side by
side, latency timed alone at the end, stage timings in the manifest; which process checks a SavedModel."""

import json

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
    # the converter imported while the job loaded data and trained, so the job waited less than that import took
    # (a bound in seconds failed on a loaded 2-core machine, where the import alone took 8.5 s)
    assert converter["waited_s"] < converter["import_s"]
    # CPU seconds per process: TensorFlow's import alone is seconds of CPU in the parent and the converter;
    # together no more than the cores could give in the job's wall time
    from dnnkit.verification.runtimes.base import usable_cores

    cpu = timings["cpu_s"]
    assert set(cpu) == {"parent", "converter", "verifier"} and min(cpu.values()) > 0.2, cpu
    assert sum(cpu.values()) <= timings["wall_s"] * usable_cores() + 0.5, cpu
    from dnnkit.manifest.table import time_line

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


def test_int8_onnx_quantizes_the_jobs_fp32_onnx(run_manifest):
    _, manifest = run_manifest
    by_name = {e["name"]: e for e in manifest["artifacts"]}
    fp32, int8 = by_name["onnx_fp32"], by_name["onnx_int8"]
    assert int8["conversion"]["quantized_from"] == "onnx_fp32.onnx"
    assert int8["transforms"] == fp32["transforms"] and int8["status"] == "verified"


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
    import dnnkit.jobs.conversions as conversions
    from conftest import digits_dense

    model, x, y = digits_dense(epochs=1)
    monkeypatch.setattr(conversions, "verifier_takes_saved_models", lambda timings: True)
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
    from dnnkit.jobs.conversions import TF_IMPORT_S, verifier_takes_saved_models

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
    import dnnkit.jobs.conversions as conversions
    import dnnkit.jobs.export as export_job
    from conftest import digits_dense

    model, x, y = digits_dense(epochs=1)

    def failing(*args, **kwargs):
        time.sleep(0.5)
        raise RuntimeError("reference failed on purpose")

    settled = []
    convert = conversions.convert_artifacts

    def recording(*args, **kwargs):
        return convert(*args, **{**kwargs, "on_settled": lambda name, result: (settled.append(name),
                                                                            kwargs["on_settled"](name, result))})

    monkeypatch.setattr(export_job, "reference_outputs", failing)
    monkeypatch.setattr(conversions, "convert_artifacts", recording)
    with pytest.raises(RuntimeError, match="on purpose"):
        dnnkit.export(model, RECIPES / "all.toml", tmp_path / "out", data=(x, y))
    assert not [t for t in threading.enumerate() if t.name == "dnnkit-conversions"]
    assert 1 <= len(settled) <= 2  # the first had started (the converter was importing); none after the failure
    assert not (tmp_path / "out" / "manifest.json").exists()
