"""Kill safety and reproducibility of `dnnkit run` (real processes; slow)."""

import json
import sys

import pytest

from conftest import ROOT, cli

sys.path.insert(0, str(ROOT / "benchmarks"))
from kill_safety import trial  # noqa: E402


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_consistent_folder(tmp_path):
    result = trial(kills=4, seed=1, spec="models/digits_mlp.toml", epochs=3, recipe="export/mobile.toml",
                   out=tmp_path / "out", log=lambda *_: None)
    assert result["bad"] == 0, result["rows"]
    assert result["completed"], result["rows"]


@pytest.mark.slow
def test_identical_runs_write_identical_tflite_and_onnx(tmp_path):
    manifests = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = cli("run", "models/digits_mlp.toml", "--epochs", "3", "--out", str(out), timeout=900)
        assert result.returncode == 0, result.stdout[-2000:]
        manifests.append(json.loads((out / "manifest.json").read_text()))
    first, second = ({e["name"]: e for e in m["artifacts"]} for m in manifests)
    same = {name for name in first if first[name]["sha256"] == second[name]["sha256"]}
    for name, entry in first.items():
        if entry["format"] in ("tflite", "onnx"):
            assert entry["reproducible"] == {"bytes": True, "why": None}
            assert name in same, name
        if not entry["reproducible"]["bytes"]:
            assert entry["reproducible"]["why"]  # the manifest says why the bytes may differ
    assert {"tflite_fp32", "tflite_fp16", "tflite_dynamic_int8", "tflite_int8", "onnx_fp32", "onnx_int8"} <= same
