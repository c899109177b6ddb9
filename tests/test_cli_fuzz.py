"""Hostile inputs: mutated artifacts through `dnnkit verify`, damaged `.keras` archives through
`dnnkit export` (corpus: tests/fuzz_corpus.py; figures: benchmarks/fuzz_verify.py).

Artifacts: zero crashes or tracebacks of dnnkit itself, zero hangs past the limit, zero
"verified" for a changed file. Archives: a one-line error, exit 2, nothing written.
"""

import json
import shutil
import time

import pytest

from conftest import RECIPES, cli
from fuzz_corpus import artifact_corpus, keras_corpus, write_fuzz_manifest

TIMEOUT_S = 20.0


@pytest.fixture(scope="module")
def mlp_export(trained_runs, tmp_path_factory):
    from dnnkit.jobs.export import export

    out = tmp_path_factory.mktemp("fuzz") / "export"
    run = trained_runs["digits_mlp"]
    manifest = export(run.model_path, RECIPES / "all.toml", out, spec=run.spec)
    assert manifest["status"] == "verified"
    return out


def _fuzz(mlp_export, tmp_path, every: int) -> None:
    out = tmp_path / "fuzz"
    shutil.copytree(mlp_export, out)
    entries = artifact_corpus(out, out / "mutated", seed=0)[::every]
    assert len(entries) >= 200 or every > 1
    formats = {e["format"] for e in entries}
    assert formats == {"tflite", "onnx", "saved_model"}
    write_fuzz_manifest(out, entries, timeout_s=TIMEOUT_S)
    start = time.monotonic()
    result = cli("verify", str(out), "--json", timeout=3000)
    seconds = time.monotonic() - start
    assert result.returncode == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr == "", result.stderr[-2000:]
    manifest = json.loads(result.stdout)
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert len(manifest["artifacts"]) == len(entries)
    verified = [e["name"] for e in manifest["artifacts"] if e["status"] != "failed"]
    assert verified == [], verified
    for entry in manifest["artifacts"]:
        assert entry["failures"], entry["name"]
        assert all(set(f) >= {"check", "observed", "limit", "message"} for f in entry["failures"])
        assert not any("timed out" in f["message"] for f in entry["failures"]), entry["name"]
    # every file changed, and the checksum says so first wherever the file still exists
    with_sha = [e for e in manifest["artifacts"] if "sha256" in e]
    assert all(e["failures"][0]["check"] == "sha256" for e in with_sha), [
        (e["name"], e["failures"][:2]) for e in with_sha if e["failures"][0]["check"] != "sha256"][:3]
    assert seconds < len(entries) * TIMEOUT_S


def test_mutated_artifacts_never_verify(mlp_export, tmp_path):
    # the whole corpus (>= 200 files) takes about 20 s: it runs in the default suite
    _fuzz(mlp_export, tmp_path, every=1)


@pytest.fixture(scope="module")
def keras_cases(trained_runs, tmp_path_factory):
    return keras_corpus(trained_runs["digits_mlp"].model_path, tmp_path_factory.mktemp("keras_fuzz"))


def test_keras_corpus_is_large_enough(keras_cases):
    assert len(keras_cases) >= 50


def test_damaged_keras_archives_are_one_line_errors(keras_cases, tmp_path, capsys):
    from dnnkit.cli import main

    problems = []
    for case, path in keras_cases:
        out = tmp_path / case
        code = main(["export", str(path), "--recipe", str(RECIPES / "server-onnx.toml"), "--data", "digits",
                     "--out", str(out)])
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        ok = code == 2 and len(err) == 1 and err[0].startswith("dnnkit: error: model:") and not out.exists()
        if not ok:
            problems.append((case, code, err[-3:], out.exists()))
    assert problems == []
