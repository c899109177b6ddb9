"""Artifact conversion, each run in a child process with a time limit.

:func:`convert_artifacts` hands the job to ``python -m dnnkit.formats.worker``. A converter
that crashes the process (the TFLite converter has died with SIGSEGV), hangs past its time
limit or raises marks only that artifact failed; a fresh child converts the rest.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.recipe import ArtifactConfig

STARTUP_TIMEOUT_S = 240.0  # importing TensorFlow and loading the model in the child


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _reader(stream: Any, out: "queue.Queue[str | None]") -> None:
    for line in stream:
        out.put(line.rstrip("\n"))
    out.put(None)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait()


def convert_artifacts(model_path: str | os.PathLike[str], artifacts: list[ArtifactConfig],
                      out_dir: str | os.PathLike[str], representative: np.ndarray, *,
                      timeouts: dict[str, float], metadata: dict[str, Any] | None = None,
                      unsafe: bool = False, log_path: str | os.PathLike[str] | None = None
                      ) -> dict[str, dict[str, Any]]:
    """Convert ``artifacts`` of the model at ``model_path`` into ``out_dir``.

    Args:
        model_path: the ``.keras`` model to convert.
        artifacts: what to produce, in order.
        out_dir: folder for the artifact files.
        representative: calibration samples (training split) for int8 artifacts.
        timeouts: seconds allowed per artifact, by name.
        metadata: stored in ONNX metadata_props.
        unsafe: load the model without Keras safe mode.
        log_path: where the children's stderr goes (default: discarded).

    Returns:
        Per artifact name: ``{"status": "done"|"failed", "reason": str|None,
        "info": dict, "seconds": float}``.
    """
    from dnnkit.formats.worker import PREFIX

    results: dict[str, dict[str, Any]] = {}
    pending = list(artifacts)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    log = open(log_path, "a", encoding="utf-8") if log_path else subprocess.DEVNULL
    try:
        with tempfile.TemporaryDirectory(prefix="dnnkit-job-") as tmp:
            rep_path = os.path.join(tmp, "representative.npz")
            np.savez(rep_path, x=representative)
            while pending:
                job = {"model": str(Path(model_path).resolve()), "representative": rep_path,
                       "out_dir": str(Path(out_dir).resolve()), "metadata": metadata or {},
                       "unsafe": unsafe,
                       "artifacts": [{**a.to_dict(), "filename": a.filename} for a in pending]}
                job_path = os.path.join(tmp, "job.json")
                Path(job_path).write_text(json.dumps(job), encoding="utf-8")
                progressed = _run_child(job_path, pending, results, timeouts, log, PREFIX)
                if not progressed:
                    break
    finally:
        if log is not subprocess.DEVNULL:
            log.close()
    return results


def _run_child(job_path: str, pending: list[ArtifactConfig], results: dict[str, dict[str, Any]],
               timeouts: dict[str, float], log: Any, prefix: str) -> bool:
    """Run one worker over ``pending``; record results; return whether anything was settled."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    proc = subprocess.Popen([sys.executable, "-m", "dnnkit.formats.worker", job_path],
                            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                            text=True, env=env, start_new_session=True)
    lines: "queue.Queue[str | None]" = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    by_name = {a.name: a for a in pending}
    settled = 0
    current: str | None = None
    started = time.monotonic()
    deadline = started + STARTUP_TIMEOUT_S

    def settle(name: str, status: str, reason: str | None, info: dict | None = None) -> None:
        nonlocal settled
        results[name] = {"status": status, "reason": reason, "info": info or {},
                         "seconds": round(time.monotonic() - started, 3)}
        pending.remove(by_name[name])
        settled += 1

    try:
        while True:
            try:
                line = lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                _stop(proc)
                if current is not None:
                    settle(current, "failed", f"conversion timed out after {timeouts[current]:g} s")
                else:
                    for art in list(pending):
                        settle(art.name, "failed", "converter process did not respond within "
                                                   f"{STARTUP_TIMEOUT_S:g} s")
                return True
            if line is None:
                code = proc.wait()
                if current is not None:
                    settle(current, "failed", f"converter process crashed ({_describe_exit(code)})")
                elif pending and settled == 0:
                    for art in list(pending):
                        settle(art.name, "failed", f"converter process ended early ({_describe_exit(code)})")
                return settled > 0
            if not line.startswith(prefix):
                continue
            event = json.loads(line[len(prefix):])
            kind = event["event"]
            if kind == "start":
                current = event["name"]
                started = time.monotonic()
                deadline = started + timeouts[current]
            elif kind in ("done", "error"):
                name = event["name"]
                settle(name, "done" if kind == "done" else "failed", event.get("reason"),
                       event.get("info"))
                current = None
                deadline = time.monotonic() + STARTUP_TIMEOUT_S
    finally:
        _stop(proc)
