"""The end of every command: the one verdict (artifacts and goals), failed artifacts set apart in
``OUT/failed/``, each file's own verdict stored inside it, ``OUT/report.html``, and the one atomic write of
``OUT/manifest.json``."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from dnnkit.artifacts.files import file_digest, gzip_size
from dnnkit.artifacts.metadata import VERDICT, as_stored, stamp_verdict
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
    stamp_verdicts(manifest, out)
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


GZIP_AGAIN_MAX = 64 * 2**20  # past this the gzip figure is the one measured before the 512-byte slot changed


def stamp_verdicts(manifest: dict[str, Any], out: Path) -> None:
    """Each TFLite and ONNX file's own verdict (status, reason, criteria, inputs checked) stored inside it, so
    that a file holds its verdict wherever it travels; its entry's sha256 and size follow. A file that is not
    the one its entry describes (changed since it was checked) is left as it is, and so is one whose slot cannot
    be read (``verdict_in_file`` says why)."""
    criteria = (manifest.get("verified_with") or {}).get("criteria") or manifest["recipe"]["name"]
    inputs = manifest["reference"].get("inputs_checked")
    for entry in manifest.get("artifacts") or []:
        path = out / entry["path"] if isinstance(entry.get("path"), str) else None
        if entry.get("format") not in ("tflite", "onnx") or path is None or not path.is_file():
            continue
        verdict = {"status": entry["status"], "reason": one_line(entry.get("failure_reason") or "", 300) or None,
                   "criteria": criteria, "inputs_checked": inputs}
        try:
            if entry.get("sha256") != file_digest(path)[0]:
                entry["verdict_in_file"] = "not stored: the file changed since its entry was written"
                continue
            changed = stamp_verdict(path, entry["format"], verdict)
        except Exception as exc:  # noqa: BLE001 - a damaged file keeps its bytes; its checks already judged it
            entry["verdict_in_file"] = f"not stored: {type(exc).__name__}: {one_line(exc, 200)}"
            continue
        entry.pop("verdict_in_file", None)
        if changed:
            entry["sha256"], entry["bytes"] = file_digest(path)
            if "gzip_bytes" in entry and entry["bytes"] <= GZIP_AGAIN_MAX:
                entry["gzip_bytes"] = gzip_size(path)
        if isinstance(entry.get("metadata"), dict):
            entry["metadata"][VERDICT] = as_stored(verdict)  # what the file holds, a long reason cut as it is there

