"""The README a newcomer reads (issue 24, B11): short, in the order install -> your own model -> read the table ->
ship, every link alive, and its Python block runs as written, from an empty folder, to a verified export."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_the_readme_is_short_and_leads_with_what_a_newcomer_does():
    assert len(README.splitlines()) < 120
    headings = [line[3:] for line in README.splitlines() if line.startswith("## ")]
    assert headings[:4] == ["Install", "Your own model", "Read the table", "Ship"]
    assert "pip install" in README.split("## Your own model")[0]


def test_every_link_and_named_file_exists():
    for target in re.findall(r"\]\(([^)]+)\)", README):
        assert (ROOT / target).is_file(), target
    for name in re.findall(r"`(examples/[\w.]+\.py)`", README):
        assert (ROOT / name).is_file(), name


@pytest.mark.slow
def test_the_python_block_runs_as_written(tmp_path):
    block = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    assert "x, y =" in block.split("dnnkit.export")[0]  # every name it uses is defined in it
    result = subprocess.run([sys.executable, "-c", block], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "verified"
    assert any(line.startswith("tflite_fp16 ") and line.endswith("VERIFIED") for line in lines)
    assert (tmp_path / "cancer_out" / "artifacts" / "tflite_dynamic_int8.tflite").is_file()
