"""One verdict for a manifest, from its artifacts, its goals and its packages."""

import pytest

from dnnkit.manifest.verdict import decide


def _manifest(statuses, **extra):
    return {"reference": {"head": "multiclass"}, "recipe": {"verify": {"accept_inconclusive": False}},
            "artifacts": [{"name": f"a{i}", "status": s, "failure_reason": None if s == "verified" else "x",
                           "metrics": {"accuracy": 0.95}} for i, s in enumerate(statuses)], **extra}


def test_one_verdict_from_artifacts_and_goals():
    assert decide(_manifest(["verified", "verified"]))["status"] == "verified"
    m = decide(_manifest(["verified", "failed"]))
    assert m["status"] == "failed" and m["failures"][0] == {
        "check": "artifact", "observed": "failed", "limit": "verified", "message": "a1: x", "artifact": "a1"}
    m = decide(_manifest(["verified", "inconclusive"]))
    assert m["status"] == "inconclusive" and m["failures"] == [] and len(m["inconclusive"]) == 1
    accepted = _manifest(["inconclusive"])
    accepted["recipe"]["verify"]["accept_inconclusive"] = True
    assert decide(accepted)["status"] == "verified"
    # every artifact verified, but the compression goal was missed: the verdict is failed
    goal = decide(_manifest(["verified"], goals={"max_degradation": 0.01},
                            original={"metrics": {"accuracy": 0.99}}, passes=[]))
    assert goal["status"] == "failed" and goal["goals"]["met"] is False
    assert goal["failures"][0]["check"] == "goal" and goal["failures"][0]["observed"] == pytest.approx(0.04)
    missed_pass = decide(_manifest(["verified"], goals={"max_degradation": 0.01},
                                   passes=[{"type": "prune", "goal_met": False, "degradation": 0.03,
                                            "max_degradation": 0.01}]))
    assert missed_pass["status"] == "failed" and "after pass 1 (prune)" in missed_pass["goals"]["missed"][0]
