"""The manifest's shape: a fresh check replaces every field an earlier check wrote."""

from dnnkit.manifest.record import apply_check
from dnnkit.verification.artifact import VERIFICATION_FIELDS


def test_a_fresh_check_leaves_nothing_of_the_earlier_one():
    entry = {"name": "a", "path": "artifacts/a.tflite", "status": "verified", "parity": {"max_abs_diff": 0.0},
             "latency_ms": {"p50": 1.0}, "metadata": {"task": "multiclass"}, "device_fit": {"flash_bytes": 9}}
    apply_check(entry, {"status": "failed", "failure_reason": "sha256 mismatch", "failures": [{"check": "sha256"}]})
    assert entry["status"] == "failed" and entry["failure_reason"] == "sha256 mismatch"
    assert not set(VERIFICATION_FIELDS) & set(entry)  # no parity, latency or metadata from the earlier check
    assert entry["name"] == "a" and entry["path"] == "artifacts/a.tflite"
