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

import contextlib
import functools
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterable, Iterator

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
    """Tests' fault injection (worker side): ``VARIABLE=NAME:crash|hang|error|sleepS,...`` in the
    environment makes the item NAME die by SIGSEGV, sleep an hour, raise, or take S seconds longer;
    ``NAME@2`` targets its retry with fallbacks."""
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
        elif mode.startswith("sleep"):
            time.sleep(float(mode[len("sleep"):]))


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
            emit("error", name=name, reason=" ".join(str(exc).split())[:500] or type(exc).__name__)
            continue
        emit("start", name=name, rss_mb=rss_mb())
        reset_peak_rss()
        began = time.perf_counter()
        try:
            attempt = item.get("attempt", 1)
            inject_fault(name if attempt == 1 else f"{name}@{attempt}", fault_variable, what)
            info = work(item)
        except Exception as exc:  # noqa: BLE001 - reported per item, the rest go on
            emit("error", name=name, reason=" ".join(str(exc).split())[:500] or type(exc).__name__,
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


def give_back_memory() -> None:
    """Return the heap an item freed to the system (glibc ``malloc_trim``): a conversion of a large model
    frees gigabytes that would otherwise stay resident and add to the next item's peak."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


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


def reset_peak_rss() -> None:
    """Start a new peak-RSS window for this process (Linux: ``5`` to ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass  # elsewhere the peak is the process's since it started


def _status_mb(field: str) -> float | None:
    """A memory figure of this process from ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in MiB."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """This process's resident memory now (MiB; Linux)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """This process's peak resident memory (MiB) since :func:`reset_peak_rss` or its start."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
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
    current = text.find("Current thread", at)  # faulthandler dumps every thread; the crashing one is "Current"
    frame = re.search(r'File "([^"]+)", line (\d+) in (\S+)', text[current if current >= 0 else at:])
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


def _reader(stream: Any, out: "queue.Queue[str | None]",
            on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    for line in stream:
        line = line.rstrip("\n")
        if on_ready is not None and line.startswith(PREFIX):
            event = _parse(line)
            if event is not None and event["event"] == "ready":
                on_ready(event)
                on_ready = None
        out.put(line)
    out.put(None)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    proc.wait()


_SERIALS = itertools.count()
_SPAWNER: dict[int, Any] = {}  # by process id (a forked copy needs its own): the executor whose thread
# starts every worker process
_SPAWNER_LOCK = threading.Lock()


def _spawn(start: Callable[[], subprocess.Popen]) -> subprocess.Popen:
    """Run ``start`` (a ``Popen``) in one thread kept for the life of this process.

    PR_SET_PDEATHSIG (see :func:`_die_with_parent`) fires when the *thread* that started the worker
    ends, not the process: a worker started by a job's own thread (the conversions run in one; a
    replacement after a crash or a recycle is started there) died with that thread and could not be
    kept for the next job, which then imported TensorFlow again (a 224x224 ResNet50 export started
    four converter processes instead of two).
    """
    from concurrent.futures import ThreadPoolExecutor

    with _SPAWNER_LOCK:
        executor = _SPAWNER.get(os.getpid())
        if executor is None:
            executor = _SPAWNER.setdefault(os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="dnnkit-spawner"))
    return executor.submit(start).result()


def _die_with_parent(nice: int = 0) -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the worker gets SIGKILL when dnnkit dies, so a killed run leaves no orphan writing files;
    ``nice`` lowers its priority (a prestarted worker imports on the cores training leaves idle)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if nice:
        try:
            os.nice(nice)
        except OSError:
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


class Worker:
    """A worker process: started with ``argv``, fed items on stdin (one JSON line each), read on stdout;
    its stderr is discarded until an item names a ``log`` file.

    Attributes:
        settled: items this process has settled (done or failed by its own report).
        spawned: when it was started (``time.monotonic()``); ``ready_after``: seconds until its
            ``ready`` line (``None`` until then).
    """

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, key: Any = None,
                 nice: int = 0) -> None:
        self.key = key
        self.role = key[0] if isinstance(key, tuple) and key else os.path.basename(argv[-1])
        self.serial = next(_SERIALS)
        self.log_name: str | None = None  # the log of the item at hand and its size when it was sent
        self.log_start = 0
        self.spawned = time.monotonic()
        self.ready_after: float | None = None
        self.warm_seconds: float | None = None
        self.prestarted = False
        self.cold = False  # prestarted, not yet asked to warm up
        self.settled = 0
        self.proc = _spawn(functools.partial(
            subprocess.Popen, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, errors="replace", env=env if env is not None else dict(os.environ), start_new_session=True,
            preexec_fn=functools.partial(_die_with_parent, nice) if sys.platform.startswith("linux") else None))
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        threading.Thread(target=_reader, args=(self.proc.stdout, self.lines, self._ready), daemon=True).start()

    def _ready(self, event: dict[str, Any]) -> None:
        """(reader thread) The worker has warmed up: when, and how long its imports took."""
        self.ready_after = round(time.monotonic() - self.spawned, 3)
        seconds = event.get("seconds")
        self.warm_seconds = seconds if isinstance(seconds, (int, float)) else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, item: dict[str, Any]) -> None:
        """Hand the worker one item (a worker that has died is noticed when its output ends); its
        stderr goes to the item's ``log`` (where a crash's Python stack is looked for)."""
        if item.get("log"):
            self.log_name = str(item["log"])
            self.log_start = os.path.getsize(self.log_name) if os.path.isfile(self.log_name) else 0
        try:
            self.proc.stdin.write(json.dumps(item, default=_plain) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def event(self, deadline: float) -> dict[str, Any] | str:
        """The next protocol event, ``"timeout"`` past ``deadline`` or ``"ended"`` when its output ends."""
        while True:
            try:
                line = self.lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                return "timeout"
            if line is None:
                self.proc.wait()
                return "ended"
            event = _parse(line)
            if event is None:
                continue
            if event["event"] == "ready":
                continue
            return event

    def close(self, grace: float = 5.0) -> None:
        """End its input so that it cleans up and exits; kill it if it has not within ``grace`` s."""
        try:
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.stop()

    def stop(self) -> None:
        """Kill it (and anything it started)."""
        _stop(self.proc)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass

    def exit_description(self) -> str:
        return describe_exit(self.proc.wait())

    def crash_site(self) -> str | None:
        return crash_site(self.log_name, self.log_start) if self.log_name else None


class _Pool:
    """Workers started ahead of their jobs (importing TensorFlow and the converters takes seconds) and kept
    between jobs, while :func:`warm_workers` is active; outside it every job starts and ends its own."""

    def __init__(self) -> None:
        self.active = 0
        self.idle: dict[str, Worker] = {}
        self.tmp: str | None = None  # the workers' TMPDIR while the pool is active
        self.lock = threading.Lock()

    @staticmethod
    def key(module: str) -> tuple[str, ...]:
        """What a kept worker must share with the job that takes it: the module and the environment
        that changes what it does (dnnkit's own variables: tests inject faults through them)."""
        keep = ("DNNKIT_", "KERAS_BACKEND", "PYTHONPATH", "CUDA_VISIBLE_DEVICES")
        return (module, *sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(keep)))

    def prestart(self, modules: tuple[str, ...]) -> None:
        """Start the modules' workers now: the first imports at once, the others once the first is
        taken (on two cores, the imports take the core the parent leaves free: while it imports and
        trains, the converter's; while the converter works, the verifier's)."""
        if os.environ.get("DNNKIT_PRESTART", "1") == "0":  # benchmarks compare with and without
            return
        with self.lock:
            for i, module in enumerate(modules):
                if not self.active or (module in self.idle and self.idle[module].alive()):
                    continue
                worker = Worker([sys.executable, "-m", module], env=worker_env(), key=self.key(module),
                                nice=PRESTART_NICE)
                worker.prestarted = True
                if i == 0:
                    worker.send({"warm": True})
                else:
                    worker.cold = True
                self.idle[module] = worker

    def take(self, module: str) -> Worker:
        """A prestarted worker for ``module``, else a new one."""
        key = self.key(module)
        with self.lock:
            worker = self.idle.pop(module, None)
        if worker is not None and worker.key == key and worker.alive():
            self.warm_rest()
            return worker
        if worker is not None:
            worker.stop()  # started for another environment (tests inject faults through it)
        return Worker([sys.executable, "-m", module], env=worker_env(), key=key)

    def warm_rest(self) -> None:
        """Have the prestarted workers that wait for the first one to be taken warm up now."""
        with self.lock:
            for other in self.idle.values():
                if other.cold:
                    other.send({"warm": True})
                    other.cold = False

    def give_back(self, module: str, worker: Worker) -> None:
        with self.lock:
            if self.active and worker.alive() and module not in self.idle:
                self.idle[module] = worker
                return
        worker.close()

    def close(self) -> None:
        with self.lock:
            workers, self.idle = list(self.idle.values()), {}
        for worker in workers:
            worker.close()
        if self.tmp is not None:  # what killed workers left behind
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


POOL = _Pool()
# Prestarted workers run at a lower priority, below the process that started them (measured: it does
# not stop a worker importing during training from slowing the training, hence the verifier warms once
# training is over; docs/field-notes.md).
PRESTART_NICE = int(os.environ.get("DNNKIT_PRESTART_NICE", "10"))


@contextlib.contextmanager
def warm_workers(*modules: str) -> Iterator[None]:
    """Start a worker for each of ``modules`` now and keep workers between jobs until the block ends.

    Args:
        modules: worker modules to prestart (``dnnkit.formats.worker``, ``dnnkit.verify_worker``).
    """
    POOL.active += 1
    if POOL.tmp is None:
        import tempfile

        POOL.tmp = tempfile.mkdtemp(prefix="dnnkit-workers-")
    try:
        POOL.prestart(modules)
        yield
    finally:
        POOL.active -= 1
        if not POOL.active:
            POOL.close()


def worker_env() -> dict[str, str]:
    """The workers' environment: this one, TensorFlow's C++ log quieter, and inside
    :func:`warm_workers` a temporary folder of their own (removed at the end, with whatever a killed
    worker left in it)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    # blocks of 8 MB and more always mapped (glibc otherwise raises the threshold as they are freed and
    # keeps later ones on a heap it cannot give back): a worker's resident memory falls when an item's
    # arrays go. At 1 MB every mid-size tensor was a fresh mapping: a 224x224 ResNet50's ONNX export took
    # 16.8 s instead of 9.3 s (page faults), 8 MB: 10.5 s
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(8 << 20))
    if POOL.tmp is not None:
        env["TMPDIR"] = POOL.tmp
    return env


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
