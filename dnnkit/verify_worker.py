"""The verification child process: ``python -m dnnkit.verify_worker JOB.json``.

It reads the reference outputs once and verifies the job's artifacts in order with
:func:`dnnkit.verification.verify_artifact`, one protocol line per event (see :mod:`dnnkit.child`).
A runtime that crashes or hangs on a damaged or crafted file takes down only this process;
the parent fails that artifact and starts a fresh worker for the rest.

``DNNKIT_INJECT_VERIFY_FAULT=NAME:crash|hang|error`` makes verifying NAME fail that way (tests).
"""

from __future__ import annotations

import json
import os
import sys


def main(job_path: str) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    warnings.filterwarnings("ignore")
    from dnnkit.child import serve_items
    from dnnkit.recipe import ArtifactConfig, Recipe, VerifyConfig
    from dnnkit.verification import load_reference, verify_artifact

    with open(job_path, encoding="utf-8") as f:
        job = json.load(f)
    ref = load_reference(job["reference"], job["reference_meta"])
    verify_cfg = VerifyConfig(**job["verify"])

    def verify_one(item: dict) -> dict:
        art = ArtifactConfig(**item["options"])
        recipe = Recipe(name="job", artifacts=(art,), verify=verify_cfg)
        return verify_artifact(item["path"], art, recipe, ref, expected_sha256=item.get("expected_sha256"),
                               fake_quant=bool(item.get("fake_quant")))

    return serve_items(job["items"], verify_one, fault_variable="DNNKIT_INJECT_VERIFY_FAULT", what="verification")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
