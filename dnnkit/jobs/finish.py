"""The end of every command: the one verdict (artifacts and goals), failed artifacts set apart in
``OUT/failed/``, ``OUT/report.html``, and the one atomic write of ``OUT/manifest.json``."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from dnnkit.core.fileio import write_json
from dnnkit.errors import one_line
from dnnkit.jobs.timing import current, timings_record
from dnnkit.manifest.html import REPORT, write_html_report
from dnnkit.manifest.record import MANIFEST
from dnnkit.manifest.verdict import decide


def finish(manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    """The one verdict (artifacts and goals), ``report.html`` (a report that cannot be drawn is recorded
    in the manifest and does not change the verdict), then the atomic write of the manifest.

    Returns:
        ``manifest``, with its verdict, report and timings.
    """
    decide(manifest)
    set_apart(manifest, out)
    manifest["report"] = {"html": REPORT}
    timings = current()
    if timings is not None:
        manifest["timings"] = timings_record(timings)
    begin = time.perf_counter()
    try:
        write_html_report(manifest, out)
    except Exception as exc:  # noqa: BLE001 - the artifacts and their verdict stand without the page
        manifest["report"] = {"html": None, "error": f"{type(exc).__name__}: {one_line(exc)}"}
        print(f"dnnkit: report.html not written: {manifest['report']['error']}", file=sys.stderr, flush=True)
    if timings is not None:
        timings["report_s"] = round(time.perf_counter() - begin, 3)
        manifest["timings"] = timings_record(timings)
    write_json(out / MANIFEST, manifest, sort_keys=False)
    return manifest


FAILED = "failed"


def set_apart(manifest: dict[str, Any], out: Path) -> None:
    """Each failed artifact's file in ``OUT/failed``, every other one in ``OUT/artifacts`` (a re-verification
    may move it either way); its entry's ``path`` follows. Nothing under ``artifacts/`` failed its checks."""
    for entry in manifest.get("artifacts") or []:
        path = entry.get("path")
        if not isinstance(path, str) or not path.startswith(("artifacts/", f"{FAILED}/")):
            continue
        home = FAILED if entry.get("status") == "failed" else "artifacts"
        source = out / path
        if path.startswith(f"{home}/") or not source.exists():
            continue
        (out / home).mkdir(exist_ok=True)
        side = source.with_name(f"{source.name}.data")  # ONNX external data goes where its model goes
        for item in (source, side) if side.is_file() else (source,):
            target = out / home / item.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            item.rename(target)
        entry["path"] = f"{home}/{source.name}"
