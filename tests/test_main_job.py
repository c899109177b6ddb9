"""The README's main job: `dnnkit run` with no arguments, then `dnnkit verify` on its output."""

import json

from conftest import cli


def test_run_without_arguments_then_verify(tmp_path):
    result = cli("run", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "runs" / "digits_cnn-all"
    for header in ("artifact", "size", "accuracy", "parity", "p50 ms", "status"):
        assert header in result.stdout
    assert "7 of 7 artifacts verified" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["metrics"]["accuracy"] >= 0.95
    assert (out / "run" / "model.keras").is_file()
    again = cli("verify", str(out))
    assert again.returncode == 0, again.stdout + again.stderr[-2000:]
    assert "7 of 7 artifacts verified" in again.stdout
