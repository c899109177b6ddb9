"""Third-party log lines stay off the terminal (in OUT/logs/dnnkit.log), unless --verbose."""

import os
import subprocess
import sys

from conftest import ROOT


def test_terminal_shows_only_dnnkit_lines(small_export, tmp_path):
    out = tmp_path / "o"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "dnnkit", "export", str(small_export / "reference" / "model.keras"),
                             "--recipe", str(ROOT / "export" / "mobile.toml"), "--data", "digits", "--out", str(out)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:]
    assert result.stderr == ""
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == f"output: {out}  manifest: {out / 'manifest.json'}  logs: {out / 'logs'}"
    assert not any(ln.startswith(("I0000", "W0000", "E0000", "INFO:", "WARNING:")) for ln in lines)
    log = (out / "logs" / "dnnkit.log").read_text()
    assert "I0000" in log or "oneDNN" in log or "WARNING" in log  # TensorFlow's chatter went here
    verbose = subprocess.run([sys.executable, "-m", "dnnkit", "verify", str(out), "--verbose"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert verbose.returncode == 0 and verbose.stderr.strip() != ""
