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
