"""One verdict for every command, recipe selectors checked at load, verification contained in a
child process, and quiet terminal output."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import MODELS, ROOT, cli
from dnnkit.cli import main

GOAL_MISSED = """
name = "goal-missed"
[goals]
max_degradation = 0.0
[[passes]]
type = "prune"
final_sparsity = 0.95
schedule = "constant"
initial_sparsity = 0.95
epochs = 1
learning_rate = 1e-6
[[artifacts]]
name = "tflite_fp32"
format = "tflite"
"""


def test_verify_on_a_compress_output_that_missed_its_goal_exits_1(trained_runs, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(GOAL_MISSED)
    out = tmp_path / "o"
    made = cli("compress", str(trained_runs["digits_mlp"].out_dir), "--recipe", str(recipe), "--out", str(out))
    assert made.returncode == 1, made.stdout[-2000:] + made.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"][0]["status"] == "verified"  # the artifact matches its (pruned) reference
    assert manifest["status"] == "failed" and manifest["goals"]["met"] is False
    checks = {f["check"] for f in manifest["failures"]}
    assert checks == {"goal"}
    goal = manifest["failures"][0]
    assert goal["observed"] > goal["limit"] == 0.0
    again = cli("verify", str(out))
    assert again.returncode == 1, again.stdout[-2000:]
    assert "GOAL MISSED" in again.stdout
    reverified = json.loads((out / "manifest.json").read_text())
    assert reverified["status"] == "failed" and reverified["verified_again"]
    assert [f["check"] for f in reverified["failures"]] == [f["check"] for f in manifest["failures"]]


SELECTOR_CASES = {
    "layers_string": ('layers = "conv_*"', 'passes[0].layers: expected a list of name patterns, '
                                           'e.g. ["conv_*", "dense_1"] (a bare string is not a list), got "conv_*"'),
    "unknown_type": ('types = ["dense"]', "passes[0].types: expected prunable layer classes, one of"),
    "no_match": ('layers = ["conv_*"]', "passes[0].layers: expected patterns that match layers of the model "
                                        "(inputs, dense_0"),
}


@pytest.mark.parametrize("case", sorted(SELECTOR_CASES))
def test_recipe_selectors_are_checked_before_any_data(case, tmp_path, capsys, monkeypatch):
    line, fragment = SELECTOR_CASES[case]
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\n[[passes]]\ntype = "prune"\n{line}\n[[artifacts]]\nname = "a"\nformat = "onnx"\n')

    def no_data(*a, **k):
        raise AssertionError("data was loaded before the selectors were checked")

    monkeypatch.setattr("dnnkit.data.load_data", no_data)
    code = main(["run", str(MODELS / "digits_mlp.toml"), "--recipe", str(recipe), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert "got 'conv_*', which matches none" in err[0] or case != "no_match"
    assert "(unknown: 'dense')" in err[0] or case != "unknown_type"
    assert not (tmp_path / "o").exists()


def test_selector_that_matches_is_accepted(trained_runs):
    from dnnkit.passes import check_selectors
    from dnnkit.recipe import recipe_from_dict

    recipe = recipe_from_dict({"name": "r", "passes": [{"type": "prune", "layers": ["dense_*"], "types": ["Dense"]}],
                               "artifacts": [{"name": "a", "format": "onnx"}]})
    check_selectors(trained_runs["digits_mlp"].model, recipe.passes)  # no error


@pytest.fixture(scope="module")
def small_export(trained_runs, tmp_path_factory):
    """The MLP exported to two cheap artifacts, for the containment tests."""
    from dnnkit.pipeline import export

    out = tmp_path_factory.mktemp("small")
    recipe = out.parent / "small.toml"
    recipe.write_text('name = "small"\n[[artifacts]]\nname = "tflite_fp32"\nformat = "tflite"\n'
                      '[[artifacts]]\nname = "onnx_fp32"\nformat = "onnx"\n')
    manifest = export(trained_runs["digits_mlp"].model_path, recipe, out / "x", spec=trained_runs["digits_mlp"].spec)
    assert manifest["status"] == "verified"
    return out / "x"


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
            assert only["message"].endswith(" inject_fault (dnnkit)") and " in child.py:" in only["message"]
        assert again["onnx_fp32"]["status"] == "verified"
        assert "Traceback" not in result.stderr and "Traceback" not in result.stdout


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


def test_a_quantized_artifact_slower_than_its_fp32_twin_is_named():
    from dnnkit.report import slower_than_fp32

    arts = [{"name": "onnx_fp32", "format": "onnx", "precision": "fp32", "latency_ms": {"p50": 0.010}},
            {"name": "onnx_int8", "format": "onnx", "precision": "int8", "latency_ms": {"p50": 0.015}},
            {"name": "tflite_fp32", "format": "tflite", "precision": "fp32", "latency_ms": {"p50": 0.004}},
            {"name": "tflite_int8", "format": "tflite", "precision": "int8", "latency_ms": {"p50": 0.003}},
            {"name": "tflite_fp16", "format": "tflite", "precision": "fp16", "latency_ms": None}]
    assert slower_than_fp32(arts) == [
        "SLOWER onnx_int8: batch-1 p50 0.015 ms vs 0.010 ms for onnx fp32 (1.50x) on this CPU"]
