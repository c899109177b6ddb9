"""`dnnkit verify`: an export folder checked again as it lies; a goal missed when it was made still fails."""

import json

from conftest import cli

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


STRICT = """
name = "strict"
[verify]
atol_fp16 = 1e-9
rtol_fp16 = 0.0
fp16_factor = 0.0
[[artifacts]]
name = "tflite_fp16"
format = "tflite"
precision = "fp16"
"""


def test_verify_never_takes_looser_criteria_from_the_folder_it_checks(trained_runs, tmp_path):
    recipe = tmp_path / "strict.toml"
    recipe.write_text(STRICT)
    out = tmp_path / "o"
    made = cli("export", str(trained_runs["digits_mlp"].model_path), "--recipe", str(recipe), "--data", "digits",
               "--out", str(out))
    assert made.returncode == 1, made.stdout[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["artifacts"][0]["status"] == "failed"
    # the folder loosened by hand: its recorded [verify] table, the artifact's own tolerances, accept_inconclusive
    manifest["recipe"]["verify"].update(atol_fp16=1.0, rtol_fp16=1.0, accept_inconclusive=True)
    manifest["artifacts"][0]["options"].update(atol=1.0, rtol=1.0)
    (out / "manifest.json").write_text(json.dumps(manifest))
    strict = cli("verify", str(out), "--recipe", str(recipe))
    assert strict.returncode == 1, strict.stdout[-2000:]
    assert f"verifying {out} with the criteria of recipe {recipe}" in strict.stdout
    judged = json.loads((out / "manifest.json").read_text())
    assert judged["artifacts"][0]["status"] == "failed"
    assert judged["verified_with"]["criteria"] == f"recipe {recipe}"
    assert judged["verified_with"]["verify"]["atol_fp16"] == 1e-9
    assert "atol" not in judged["artifacts"][0]["options"]
    default = cli("verify", str(out), "--json")
    judged = json.loads(default.stdout)
    assert judged["verified_with"]["criteria"] == "defaults"
    assert judged["verified_with"]["verify"]["atol_fp16"] == 1e-3  # dnnkit's default, not the folder's 1.0
    assert (default.returncode == 0) == (judged["status"] == "verified")


def test_a_folder_whose_reference_is_gone_is_marked_failed(small_export, tmp_path):
    import shutil

    out = tmp_path / "o"
    shutil.copytree(small_export, out)
    assert json.loads((out / "manifest.json").read_text())["status"] == "verified"
    (out / "reference" / "model.keras").unlink()
    result = cli("verify", str(out))
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    for entry in manifest["artifacts"]:
        assert entry["status"] == "failed"
        assert entry["failure_reason"] == "not checked: the reference model reference/model.keras is missing"
    report = (out / "report.html").read_text()
    assert "status verified" not in report and "not checked: the reference model" in report
