"""The three ways people use dnnkit (issue 11), each example run as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT


def _example(name: str, out, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "examples" / name), "--out", str(out)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def test_python_api_builds_trains_and_exports(tmp_path):
    result = _example("api_build_train_export.py", tmp_path / "api")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "trained digits_mlp: test accuracy 0.9" in result.stdout and "status: verified" in result.stdout
    manifest = json.loads((tmp_path / "api" / "export" / "manifest.json").read_text())
    assert all(e["metadata"]["labels"] == [f"digit {d}" for d in range(10)] for e in manifest["artifacts"])


def test_mobile_app_runs_the_int8_tflite_from_its_metadata(tmp_path):
    result = _example("mobile_tflite.py", tmp_path / "mobile")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    line = next(x for x in result.stdout.splitlines() if x.startswith("tflite_int8.tflite"))
    right = int(line.split("; ")[-1].split(" of ")[0])
    assert "verified" in line and right >= 45  # of 50 raw digits, named through the file's own labels


def test_serving_reads_onnx_metadata_and_builds_a_triton_request(tmp_path):
    result = _example("serve_onnx.py", tmp_path / "serve")
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "config.pbtxt, labels.txt, 1/model.onnx (onnx_fp32, verified)" in result.stdout
    assert "task multiclass, 10 labels" in result.stdout
    assert "input inputs FP32 [16, 64] -> output logits (top 3 from labels.txt); matches config.pbtxt: True" \
        in result.stdout


@pytest.mark.parametrize("name", ["api_build_train_export.py", "mobile_tflite.py", "serve_onnx.py"])
def test_each_example_says_how_to_run_it(name):
    text = (ROOT / "examples" / name).read_text()
    assert f"python examples/{name}" in text.split('"""')[1]
