"""One worker process, seen from the parent: started with its death tied to dnnkit's, fed items, read
event by event; how it ended and where it crashed."""

from __future__ import annotations

import functools
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from dnnkit.child.protocol import PREFIX, parse, plain


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
            event = parse(line)
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
            self.proc.stdin.write(json.dumps(item, default=plain) + "\n")
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
            event = parse(line)
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
