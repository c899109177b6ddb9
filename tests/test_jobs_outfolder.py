"""The output folder never lies: written fresh, one writer at a time, published whole (real processes)."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, cli, error_lines
from test_core_staging import hold_lock

MOBILE = str(ROOT / "export" / "mobile.toml")


def digests(folder):
    """Every file of a folder by relative path, with its sha256 (what a user could ship from it)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "logs" not in p.parts}


@pytest.fixture
def export_copy(small_export, tmp_path):
    """A copy of a verified export folder, and the model it was exported from."""
    out = tmp_path / "o"
    shutil.copytree(small_export, out)
    manifest = json.loads((out / "manifest.json").read_text())
    return out, manifest["origin"]["source"]


def test_a_folder_holding_other_files_is_refused_and_left_alone(tmp_path, trained_runs):
    out = tmp_path / "m8"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    begin = time.monotonic()
    result = cli("export", str(trained_runs["digits_mlp"].model_path), "--recipe", MOBILE, "--data", "digits",
                 "--out", str(out))
    took = time.monotonic() - begin
    assert result.returncode == 2, result.stdout[-2000:]
    assert error_lines(result.stderr) == [f"dnnkit: error: --out: {out} is not empty and not a dnnkit export (it "
                                          "holds notes.txt); expected an empty or new folder (pass --overwrite to "
                                          "replace it)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m8"] and [p.name for p in out.iterdir()] == ["notes.txt"]
    assert took < 30  # refused before the model or TensorFlow is loaded


def test_an_export_of_another_model_is_refused_then_replaced_whole_with_overwrite(export_copy, tmp_path):
    out, source = export_copy
    other = tmp_path / "other.keras"
    shutil.copyfile(source, other)
    before = digests(out)
    refused = cli("export", str(other), "--recipe", MOBILE, "--data", "digits", "--out", str(out))
    assert refused.returncode == 2
    assert error_lines(refused.stderr) == [f"dnnkit: error: --out: {out} holds a dnnkit export of {source}; "
                                           f"expected an empty folder or an earlier export of {other} (pass "
                                           "--overwrite to replace it)"]
    assert digests(out) == before
    (out / "serving").mkdir()
    (out / "serving" / "stale.txt").write_text("an earlier layout")
    replaced = cli("export", str(other), "--recipe", MOBILE, "--data", "digits", "--out", str(out), "--overwrite")
    assert replaced.returncode == 0, replaced.stdout[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["origin"] == {"command": "export", "source": str(other)}
    listed = {e["path"] for e in manifest["artifacts"]}
    on_disk = {str(p.relative_to(out)) for p in (out / "artifacts").iterdir()}
    assert on_disk == listed == {"artifacts/tflite_fp16.tflite", "artifacts/tflite_dynamic_int8.tflite"}
    assert not (out / "serving").exists()  # nothing of the earlier export survives beside the new one


def test_a_second_command_on_a_busy_folder_is_refused_naming_the_holder(export_copy):
    out, source = export_copy
    before = digests(out)
    holder = hold_lock(out)
    try:
        result = cli("export", source, "--recipe", MOBILE, "--data", "digits", "--out", str(out))
        verify = cli("verify", str(out))
    finally:
        holder.kill()
        holder.wait()
    for r, field in ((result, "--out"), (verify, "out_dir")):
        assert r.returncode == 2
        (line,) = error_lines(r.stderr)
        assert line.startswith(f"dnnkit: error: {field}: {out} is being written by pid {holder.pid}"), line
    assert digests(out) == before


def _staging_started(out, proc, timeout=240):
    area = out.parent / f".{out.name}.dnnkit-staging" / out.name / "artifacts"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if area.is_dir() and any(area.iterdir()):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_re_export_killed_mid_conversion_leaves_the_previous_complete_folder(export_copy, sig):
    out, source = export_copy
    before = digests(out)
    assert json.loads((out / "manifest.json").read_text())["status"] == "verified"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "DNNKIT_INJECT_FAULT": "onnx_fp32:sleep60"}
    recipe = out.parent / "small.toml"
    recipe.write_text('name = "small"\n[[artifacts]]\nname = "tflite_fp32"\nformat = "tflite"\n'
                      '[[artifacts]]\nname = "onnx_fp32"\nformat = "onnx"\n')
    proc = subprocess.Popen([sys.executable, "-m", "dnnkit", "export", source, "--recipe", str(recipe), "--data",
                             "digits", "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert _staging_started(out, proc), proc.communicate()
    os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=120)
    assert digests(out) == before  # manifest, report and artifacts: the previous export, whole
    if sig == signal.SIGTERM:
        assert proc.returncode == 143
        assert error_lines(stderr)[-1] == ("dnnkit: terminated (SIGTERM); nothing of this command was published "
                                           "(the output folder is as it was)")
        assert not (out.parent / f".{out.name}.dnnkit-staging").exists()
    again = cli("export", source, "--recipe", str(recipe), "--data", "digits", "--out", str(out))
    assert again.returncode == 0, again.stdout[-2000:]
    assert not (out.parent / f".{out.name}.dnnkit-staging").exists()


@pytest.mark.parametrize("where", ["file", "procfs", "procfs_folder"])
def test_an_out_that_cannot_be_a_folder_is_bad_input(tmp_path, trained_runs, where):
    out = tmp_path / "notes.txt" if where == "file" else "/proc/x" if where == "procfs" else "/proc/sys"
    if where == "file":
        out.write_text("mine")
    result = cli("export", str(trained_runs["digits_mlp"].model_path), "--recipe", MOBILE, "--data", "digits",
                 "--out", str(out))
    assert result.returncode == 2
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"dnnkit: error: --out: ") and (
        "is a file" in line if where == "file" else f"cannot write {out}: its folder /proc refuses" in line), line
