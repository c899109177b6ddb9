"""Where a job's time goes: the stage timings of the job in progress, the worker processes it starts
(prestarted, so that importing TensorFlow and the runtimes overlaps the work before their first item),
and the manifest's ``timings`` record."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

from dnnkit.child.items import WORKER_CPU
from dnnkit.child.pool import warm_workers
from dnnkit.workers.checks import VERIFIER
from dnnkit.workers.convert import CONVERTER

# Stage timings of the export in progress (the innermost run/export/compress/verify call's), written
# to the manifest's ``timings`` by dnnkit.jobs.finish.finish.
_TIMINGS: list[dict[str, Any]] = []


def current() -> dict[str, Any] | None:
    """The timings of the job in progress (``None`` outside a job)."""
    return _TIMINGS[-1] if _TIMINGS else None


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the block's wall seconds to ``timings[name]`` of the job in progress."""
    begin = time.perf_counter()
    try:
        yield
    finally:
        if _TIMINGS:
            timings = _TIMINGS[-1]
            timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - begin, 3)


@contextlib.contextmanager
def job(*, convert: bool = True) -> Iterator[dict[str, Any]]:
    """One export job: its stage timings and its worker processes, the converter (unless ``convert`` is
    false: re-verification) and the verifier started now so that importing TensorFlow and the runtimes
    overlaps the work before their first item (training, loading the model, the reference outputs);
    nested calls share the outer job's."""
    if _TIMINGS:
        yield _TIMINGS[-1]
        return
    timings: dict[str, Any] = {"started": time.perf_counter(), "cpu_started": time.process_time(),
                               "workers_cpu_before": {n: seconds for n, (_, seconds) in WORKER_CPU.items()}}
    _TIMINGS.append(timings)
    try:
        with warm_workers(*((CONVERTER, VERIFIER) if convert else (VERIFIER,))):
            yield timings
    finally:
        _TIMINGS.pop()


def timings_record(timings: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``timings``: wall seconds so far and per stage, the worker processes' start-up, and
    ``cpu_s``: the CPU seconds (user + system) of this process and of each worker role since the job
    began (a worker's up to its last item; its imports count where it was started for the job)."""
    record = {k: v for k, v in timings.items() if k not in ("started", "cpu_started", "workers_cpu_before")}
    cpu: dict[str, float] = {"parent": round(time.process_time() - timings["cpu_started"], 1)}
    before = timings["workers_cpu_before"]
    for serial, (role, seconds) in sorted(WORKER_CPU.items()):
        if seconds > before.get(serial, -1.0):  # a worker that settled an item of this job
            role = {CONVERTER: "converter", VERIFIER: "verifier"}.get(role, role)
            cpu[role] = round(cpu.get(role, 0.0) + seconds - before.get(serial, 0.0), 1)
    return {"wall_s": round(time.perf_counter() - timings["started"], 3), **record, "cpu_s": cpu}
