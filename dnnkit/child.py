"""Work that may crash or hang, done in a child process with a time limit per item.

Converters (the TFLite converter has died with SIGSEGV) and runtimes loading a damaged or
crafted file can take the whole process down, or never return. Both therefore run in a
worker process that reports on stdout, one protocol line per event (``@@dnnkit {json}``):
``ready``, then per item ``start``, and ``done`` (with ``info``) or ``error`` (with
``reason``). :func:`run_items` enforces the time limits, settles the item at hand as failed
when the worker crashes, hangs or ends early, and starts a fresh worker for the rest.
Lines that are not protocol lines (or not valid JSON) are ignored.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

PREFIX = "@@dnnkit "


def _plain(value: object) -> object:
    """NumPy scalars and arrays as JSON values (anything else as its string)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def emit(event: str, **fields: Any) -> None:
    """Write one protocol line (worker side)."""
    sys.stdout.write(PREFIX + json.dumps({"event": event, **fields}, default=_plain) + "\n")
    sys.stdout.flush()


def inject_fault(name: str, variable: str, what: str) -> None:
    """Tests' fault injection (worker side): ``VARIABLE=NAME:crash|hang|error,...`` in the environment
    makes the item NAME die by SIGSEGV, sleep an hour, or raise; ``NAME@2`` targets its retry with fallbacks."""
    for item in filter(None, os.environ.get(variable, "").split(",")):
        target, _, mode = item.partition(":")
        if target != name:
            continue
        if mode == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif mode == "hang":
            time.sleep(3600)
        elif mode == "error":
            raise RuntimeError(f"injected {what} error")


def serve_items(items: list[dict[str, Any]], work: Callable[[dict[str, Any]], dict[str, Any]], *,
                fault_variable: str, what: str) -> int:
    """The worker's side of the protocol: ``ready``, then per item ``start`` and ``done`` or ``error``.

    Args:
        items: the job's items, each with a ``name``.
        work: does one item in this process and returns its ``info`` (JSON-serialisable).
        fault_variable, what: tests' fault injection (see :func:`inject_fault`).

    Returns:
        The worker's exit code (0).
    """
    import faulthandler

    faulthandler.enable()  # a native crash leaves its Python stack in the log (see crash_site)
    emit("ready")
    for item in items:
        name = item["name"]
        emit("start", name=name)
        reset_peak_rss()
        try:
            attempt = item.get("attempt", 1)
            inject_fault(name if attempt == 1 else f"{name}@{attempt}", fault_variable, what)
            info = work(item)
        except Exception as exc:  # noqa: BLE001 - reported per item, the rest go on
            emit("error", name=name, reason=" ".join(str(exc).split())[:500] or type(exc).__name__)
            continue
        emit("done", name=name, info=info, peak_rss_mb=peak_rss_mb())
    return 0


def reset_peak_rss() -> None:
    """Start a new peak-RSS window for this process (Linux: ``5`` to ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass  # elsewhere the peak is the process's since it started


def peak_rss_mb() -> float:
    """This process's peak resident memory (MiB) since :func:`reset_peak_rss` or its start."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def crash_site(log_path: str, offset: int) -> str | None:
    """Where a worker died, from the traceback Python's faulthandler wrote to its log after ``offset``:
    the innermost frame, as ``calibrator.py:152 _feed_tensors (tensorflow/lite/python/optimize)``."""
    import re

    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            text = f.read()
    except OSError:
        return None
    at = text.rfind("Fatal Python error")
    if at < 0:
        return None
    frame = re.search(r'File "([^"]+)", line (\d+) in (\S+)', text[at:])
    if frame is None:
        return None
    path, line, func = frame.groups()
    parts = path.replace("\\", "/").split("/")
    if "site-packages" in parts:
        package = "/".join(parts[parts.index("site-packages") + 1:-1])
    else:
        package = parts[-2] if len(parts) > 1 else ""
    return f"{parts[-1]}:{line} {func} ({package})"


def describe_exit(code: int) -> str:
    """``killed by signal SIGSEGV`` or ``exit code 3``."""
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


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the worker gets SIGKILL when dnnkit dies, so a killed run leaves no orphan writing files."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _parse(line: str) -> dict[str, Any] | None:
    if not line.startswith(PREFIX):
        return None
    try:
        event = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


# Called once per settled item as (action, name, "done"|"failed", seconds, reason); the CLI sets it to
# print a progress line per conversion, calibration and verification.
PROGRESS: Callable[[str, str, str, float, str | None], None] | None = None


def print_progress(action: str, name: str, status: str, seconds: float, reason: str | None) -> None:
    """One terminal line per settled item: ``  conversion tflite_int8: done in 3.1 s``."""
    print(f"  {action} {name}: {status} in {seconds:.1f} s" + (f" ({reason[:160]})" if reason else ""), flush=True)


def run_items(command: Callable[[list[str]], list[str]], names: list[str], timeouts: dict[str, float], *,
              startup_timeout: float = 240.0, log: Any = subprocess.DEVNULL, env: dict[str, str] | None = None,
              action: str = "conversion", process: str = "converter process") -> dict[str, dict[str, Any]]:
    """Run a worker over ``names`` until each is settled, restarting it after a crash or hang.

    Args:
        command: builds the worker's argv for the items still pending (in order).
        names: the items, in order.
        timeouts: seconds allowed per item, by name.
        startup_timeout: seconds the worker may take to start and between items.
        log: where the workers' stderr goes (an open file or ``subprocess.DEVNULL``).
        env: the workers' environment (default: this one).
        action, process: words for the failure reasons ("conversion timed out after 20 s",
            "converter process crashed (killed by signal SIGSEGV)").

    Returns:
        Per name: ``{"status": "done"|"failed", "reason": str|None, "info": dict, "seconds": float,
        "peak_rss_mb": float|None}`` (the worker's peak resident memory while doing that item).
    """
    results: dict[str, dict[str, Any]] = {}
    pending = list(names)
    while pending:
        if not _run_worker(command(list(pending)), pending, results, timeouts, startup_timeout, log,
                           env, action, process):
            break
    for name in pending:  # a worker that settled nothing twice in a row: give up on the rest
        results[name] = {"status": "failed", "reason": f"{process} made no progress", "info": {}, "seconds": 0.0}
    return results


def run_job(module: str, names: list[str], timeouts: dict[str, float], job_for: Callable[[list[str]], Any], *,
            workdir: str, log_path: str | os.PathLike[str] | None = None, startup_timeout: float = 240.0,
            action: str = "conversion", process: str = "converter process") -> dict[str, dict[str, Any]]:
    """:func:`run_items` for a worker module run as ``python -m MODULE JOB.json``.

    Args:
        module: the worker module (its ``main`` serves the job with :func:`serve_items`).
        names, timeouts, startup_timeout, action, process: as for :func:`run_items`.
        job_for: the job (JSON-serialisable) for the items still pending, in order.
        workdir: where the job file is written (the caller's temporary folder).
        log_path: where the workers' stderr is appended (default: discarded).
    """
    from pathlib import Path

    job_path = os.path.join(workdir, "job.json")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}

    def command(pending: list[str]) -> list[str]:
        Path(job_path).write_text(json.dumps(job_for(pending)), encoding="utf-8")
        return [sys.executable, "-m", module, job_path]

    log = open(log_path, "a", encoding="utf-8") if log_path else subprocess.DEVNULL
    try:
        return run_items(command, names, timeouts, startup_timeout=startup_timeout, log=log, env=env,
                         action=action, process=process)
    finally:
        if log is not subprocess.DEVNULL:
            log.close()


def _run_worker(argv: list[str], pending: list[str], results: dict[str, dict[str, Any]],
                timeouts: dict[str, float], startup_timeout: float, log: Any, env: dict[str, str] | None,
                action: str, process: str) -> bool:
    """Run one worker over ``pending``; record results; return whether anything was settled."""
    log_name = getattr(log, "name", None)
    log_start = os.path.getsize(log_name) if isinstance(log_name, str) and os.path.isfile(log_name) else None
    if log_start is not None:
        log.flush()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, text=True,
                            errors="replace", env=env if env is not None else dict(os.environ),
                            start_new_session=True,
                            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    lines: "queue.Queue[str | None]" = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    settled = 0
    current: str | None = None
    started = time.monotonic()
    deadline = started + startup_timeout

    def settle(name: str, status: str, reason: str | None, info: Any = None, peak: Any = None) -> None:
        nonlocal settled
        results[name] = {"status": status, "reason": reason, "info": info if isinstance(info, dict) else {},
                         "seconds": round(time.monotonic() - started, 3),
                         "peak_rss_mb": peak if isinstance(peak, (int, float)) else None}
        pending.remove(name)
        settled += 1
        if PROGRESS is not None:
            PROGRESS(action, name, status, results[name]["seconds"], reason)

    try:
        while True:
            try:
                line = lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                _stop(proc)
                if current is not None:
                    settle(current, "failed", f"{action} timed out after {timeouts[current]:g} s")
                else:
                    for name in list(pending):
                        settle(name, "failed", f"{process} did not respond within {startup_timeout:g} s")
                return True
            if line is None:
                code = proc.wait()
                if current is not None:
                    site = crash_site(log_name, log_start) if log_start is not None else None
                    settle(current, "failed", f"{process} crashed ({describe_exit(code)})"
                           + (f" in {site}" if site else ""))
                elif pending and settled == 0:
                    for name in list(pending):
                        settle(name, "failed", f"{process} ended early ({describe_exit(code)})")
                return settled > 0
            event = _parse(line)
            if event is None:
                continue
            kind, name = event["event"], event.get("name")
            if kind == "start" and name in pending and current is None:
                current = name
                started = time.monotonic()
                deadline = started + timeouts[name]
            elif kind in ("done", "error") and name == current:
                reason = event.get("reason") if kind == "error" else None
                settle(name, "done" if kind == "done" else "failed",
                       str(reason or f"{action} failed") if kind == "error" else None, event.get("info"),
                       event.get("peak_rss_mb"))
                current = None
                deadline = time.monotonic() + startup_timeout
    finally:
        _stop(proc)
