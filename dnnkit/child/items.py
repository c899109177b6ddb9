"""Items run on workers until each is settled: time limits, a crashed or hung worker replaced, a worker
that keeps too much memory recycled, and each worker's CPU seconds."""

from __future__ import annotations

import os
import time
from typing import Any, Callable, Iterable

from dnnkit.child.pool import POOL
from dnnkit.child.process import Worker


# Called once per settled item as (action, name, "done"|"failed", seconds, reason); the CLI sets it to
# print a progress line per conversion, calibration and verification.
PROGRESS: Callable[[str, str, str, float, str | None], None] | None = None


def print_progress(action: str, name: str, status: str, seconds: float, reason: str | None) -> None:
    """One terminal line per settled item: ``  conversion tflite_int8: done in 3.1 s``. A timing that went as
    expected gets none (the table shows its figures), and a reason is left to the lines under the table,
    which give each one once."""
    if action == "latency" and status == "done":
        return
    print(f"  {action} {name}: {status} in {seconds:.1f} s", flush=True)


# CPU seconds (user + system, all threads) each worker process had used at its last settled item, by
# worker (its serial number in this process): ``(role, seconds)``, the role being its module; a job sums
# what they used while it ran (pipeline timings)
WORKER_CPU: dict[int, tuple[str, float]] = {}


# A worker is replaced (with ``recycle``) when it keeps this much more memory than at its first item,
# and RECYCLE_RATIO times as much: the digits models' converter grows by ~150 MB over a recipe and stays;
# a 224x224 ResNet50's grew from 1.0 to over 2 GB, which its ONNX conversions' peaks then stood on.
RECYCLE_GROWTH_MB = 768


RECYCLE_RATIO = 1.5


def run_items(start: Callable[[], Worker], names: Iterable[str], timeouts: dict[str, float],
              item_for: Callable[[str], dict[str, Any]], *, startup_timeout: float = 240.0,
              action: str = "conversion", process: str = "converter process",
              on_settled: Callable[[str, dict[str, Any]], None] | None = None,
              stats: list[dict[str, Any]] | None = None,
              recycle: bool = False) -> tuple[dict[str, dict[str, Any]], Worker | None]:
    """Run items on workers until each is settled, replacing a worker that crashes or hangs.

    Args:
        start: returns a worker (a fresh process, or a prestarted one).
        names: the items, in order; may be a generator that blocks until the next one exists
            (verification takes artifacts as their conversions finish).
        timeouts: seconds allowed per item, by name (looked up when the item is sent).
        item_for: the JSON item sent for a name.
        startup_timeout: seconds a worker may take to start and between items.
        action, process: words for the failure reasons ("conversion timed out after 20 s",
            "converter process crashed (killed by signal SIGSEGV)").
        on_settled: called with each name and its result as soon as it is settled.
        stats: gets one record per worker process used: ``prestarted``, ``import_s`` (its warm-up),
            ``ready_after_s`` (from its start to the end of its warm-up), ``waited_s`` (from its first
            item's hand-over to the item's start: what the job waited for it), ``recycled`` (ended
            for the memory it kept).
        recycle: replace a worker whose resident memory after an item stays far above what it held
            when its first item started (see :data:`RECYCLE_GROWTH_MB`): what a large model's
            conversions leave behind would otherwise add to every later one's peak.

    Returns:
        Per name: ``{"status": "done"|"failed", "reason": str|None, "info": dict, "seconds": float,
        "peak_rss_mb": float|None, "prepare_seconds": float|None}``, and the worker still alive at
        the end (or ``None``).
    """
    results: dict[str, dict[str, Any]] = {}
    worker: Worker | None = None
    give_up: str | None = None  # a fresh worker settled nothing before it died: the rest fail the same way
    records = stats if stats is not None else []

    def settle(name: str, status: str, reason: str | None, seconds: float, event: dict[str, Any] | None = None) -> None:
        info = (event or {}).get("info")
        peak = (event or {}).get("peak_rss_mb")
        results[name] = {"status": status, "reason": reason, "info": info if isinstance(info, dict) else {},
                         "seconds": round(seconds, 3), "peak_rss_mb": peak if isinstance(peak, (int, float)) else None,
                         "prepare_seconds": (event or {}).get("prepare_seconds")}
        if PROGRESS is not None:
            PROGRESS(action, name, status, results[name]["seconds"], reason)
        if on_settled is not None:
            on_settled(name, results[name])

    for name in names:
        while name not in results:
            if give_up is not None:
                settle(name, "failed", give_up, 0.0)
                break
            if worker is None:
                worker = start()
                records.append({"prestarted": worker.prestarted, "waited_s": None, "ready_after_s": None,
                                "import_s": None})
                baseline: float | None = None
                record = records[-1]
            worker.send(item_for(name))
            sent = time.monotonic()
            deadline = sent + startup_timeout
            current: str | None = None
            started = sent
            while name not in results:
                event = worker.event(deadline)
                if event == "timeout":
                    worker.stop()
                    if current is not None:
                        worker.settled += 1
                        settle(name, "failed", f"{action} timed out after {timeouts[name]:g} s",
                               time.monotonic() - started)
                    elif worker.settled == 0:
                        give_up = f"{process} did not respond within {startup_timeout:g} s"
                    worker = None
                    break
                if event == "ended":
                    if current is not None:
                        site = worker.crash_site()
                        worker.settled += 1
                        settle(name, "failed", f"{process} crashed ({worker.exit_description()})"
                               + (f" in {site}" if site else ""), time.monotonic() - started)
                    elif worker.settled == 0:
                        give_up = f"{process} ended early ({worker.exit_description()})"
                    worker.stop()
                    worker = None
                    break
                assert isinstance(event, dict)
                kind = event["event"]
                if kind == "start" and event.get("name") == name and current is None:
                    current = name
                    if baseline is None and isinstance(event.get("rss_mb"), (int, float)):
                        baseline = event["rss_mb"]
                    started = time.monotonic()
                    deadline = started + timeouts[name]
                    if record["waited_s"] is None:
                        record.update(waited_s=round(started - sent, 3), ready_after_s=worker.ready_after,
                                      import_s=worker.warm_seconds)
                elif kind in ("done", "error") and event.get("name") == name and current == name:
                    worker.settled += 1
                    if isinstance(event.get("cpu_s"), (int, float)):
                        WORKER_CPU[worker.serial] = (worker.role, float(event["cpu_s"]))
                    if kind == "done":
                        # the worker's own figure: the parent may read "start" and "done" together when busy
                        took = event.get("seconds")
                        settle(name, "done", None,
                               took if isinstance(took, (int, float)) else time.monotonic() - started, event)
                    else:
                        settle(name, "failed", str(event.get("reason") or f"{action} failed"),
                               time.monotonic() - started, event)
                    kept = event.get("rss_mb")
                    if (recycle and baseline is not None and isinstance(kept, (int, float))
                            and kept > baseline + RECYCLE_GROWTH_MB and kept > RECYCLE_RATIO * baseline):
                        record["recycled"] = {"after": name, "rss_mb": kept, "at_first_item_mb": baseline}
                        worker.close()
                        worker = None
    return results, worker


def run_job(module: str, names: Iterable[str], timeouts: dict[str, float],
            item_for: Callable[[str], dict[str, Any]], *, log_path: str | os.PathLike[str] | None = None,
            startup_timeout: float = 240.0, action: str = "conversion", process: str = "converter process",
            on_settled: Callable[[str, dict[str, Any]], None] | None = None,
            stats: list[dict[str, Any]] | None = None, recycle: bool = False) -> dict[str, dict[str, Any]]:
    """:func:`run_items` on workers run as ``python -m MODULE`` (prestarted ones when there are).

    Args:
        module: the worker module (its ``main`` serves items with :func:`serve`).
        log_path: where the workers' stderr is appended (default: discarded).
        the rest: as for :func:`run_items`.
    """
    results, worker = run_items(lambda: POOL.take(module), names, timeouts,
                                lambda n: {**item_for(n), "log": str(log_path) if log_path else None},
                                startup_timeout=startup_timeout, action=action, process=process,
                                on_settled=on_settled, stats=stats, recycle=recycle)
    if worker is not None:
        POOL.give_back(module, worker)
    return results
