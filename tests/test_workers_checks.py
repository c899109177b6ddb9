"""Checks in a child process: a runtime that crashes or hangs on an artifact fails that artifact only."""

import json
import shutil

from conftest import cli


def test_a_runtime_crash_or_hang_fails_that_artifact_only(small_export, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(small_export, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["recipe"]["verify"]["timeout_s"] = 2.0
    (out / "manifest.json").write_text(json.dumps(manifest))
    for fault, reason in (("crash", "verification process crashed (killed by signal SIGSEGV)"),
                          ("hang", "verification timed out after 2 s")):
        result = cli("verify", str(out), env={"DNNKIT_INJECT_VERIFY_FAULT": f"tflite_fp32:{fault}"})
        assert result.returncode == 1, result.stderr[-2000:]
        again = {e["name"]: e for e in json.loads((out / "manifest.json").read_text())["artifacts"]}
        assert again["tflite_fp32"]["status"] == "failed"
        (only,) = again["tflite_fp32"]["failures"]
        assert only["check"] == "runtime" and only["message"].startswith(reason)
        if fault == "crash":  # the crashing frame, from the worker's faulthandler traceback
            assert only["message"].endswith(" inject_fault (child)") and " in protocol.py:" in only["message"]
        assert again["onnx_fp32"]["status"] == "verified"
        assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


def test_a_check_item_names_the_file_its_options_and_its_digest():
    from pathlib import Path

    from dnnkit.workers.checks import check_item

    item = check_item("a", Path("out/artifacts/a.onnx"), {"name": "a", "format": "onnx"}, fake_quant=1)
    assert item == {"name": "a", "path": "out/artifacts/a.onnx", "options": {"name": "a", "format": "onnx"},
                    "expected_sha256": None, "fake_quant": True}  # JSON-ready: the worker reads it on stdin
