"""The worker's side: items read on stdin, one protocol line per event on stdout."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable

from dnnkit.child.memory import give_back_memory, peak_rss_mb, reset_peak_rss, rss_mb
from dnnkit.child.protocol import emit, inject_fault
from dnnkit.errors import one_line


def serve(work: Callable[[dict[str, Any]], dict[str, Any]], *, fault_variable: str, what: str,
          warm: Callable[[], None] | None = None, prepare: Callable[[dict[str, Any]], float] | None = None,
          cleanup: Callable[[], None] | None = None) -> int:
    """The worker's side of the protocol: per item read from stdin (one JSON object a line, with a
    ``name``) ``start`` and ``done`` or ``error``; the end of stdin ends the worker. The first line (an
    item, or ``{"warm": true}``) makes it warm up first and say ``ready``.

    Args:
        work: does one item in this process and returns its ``info`` (JSON-serialisable).
        fault_variable, what: tests' fault injection (see :func:`inject_fault`).
        warm: imports the libraries the items need, before ``ready`` (a prestarted worker: ahead of
            any item, while the parent is still busy).
        prepare: loads what the item shares with others (the model, the reference), before ``start``:
            it runs under the parent's start-up limit, not the item's; returns the seconds it spent
            loading (0 when cached), reported as the item's ``prepare_seconds``.
        cleanup: removes what the items left behind (cached files), at the end of stdin.

    Returns:
        The worker's exit code (0).
    """
    import faulthandler

    faulthandler.enable()  # a native crash leaves its Python stack in the log (see crash_site)
    warmed = False
    log = None
    for line in sys.stdin:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        if not warmed:  # on the first line: a {"warm": true} from the pool, or the first item
            begin = time.perf_counter()
            if warm is not None:
                warm()
            emit("ready", seconds=round(time.perf_counter() - begin, 3))
            warmed = True
        name = item.get("name")
        if not isinstance(name, str):
            continue
        if item.get("log") and item["log"] != log:
            log = item["log"]
            _stderr_to(log)
        try:
            loaded = prepare(item) if prepare is not None else 0.0
        except Exception as exc:  # noqa: BLE001 - the item fails; the worker takes the next one
            emit("start", name=name)
            emit("error", name=name, reason=one_line(exc, 500) or type(exc).__name__)
            continue
        emit("start", name=name, rss_mb=rss_mb())
        reset_peak_rss()
        began = time.perf_counter()
        try:
            attempt = item.get("attempt", 1)
            inject_fault(name if attempt == 1 else f"{name}@{attempt}", fault_variable, what)
            info = work(item)
        except Exception as exc:  # noqa: BLE001 - reported per item, the rest go on
            emit("error", name=name, reason=one_line(exc, 500) or type(exc).__name__,
                 cpu_s=round(time.process_time(), 3))
            continue
        peak = peak_rss_mb()
        give_back_memory()
        emit("done", name=name, info=info, peak_rss_mb=peak, prepare_seconds=round(loaded, 3), rss_mb=rss_mb(),
             seconds=time.perf_counter() - began, cpu_s=round(time.process_time(), 3))
    if cleanup is not None:
        cleanup()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown: TensorFlow's takes a second and the parent does not wait for it


def _stderr_to(path: str) -> None:
    """Send this process's stderr (Python's, native libraries' and faulthandler's: file descriptor 2)
    to the end of ``path``: each job's items name their log."""
    sys.stderr.flush()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:
        return
    os.dup2(fd, 2)
    os.close(fd)
