"""The protocol both sides speak: one line per event on the worker's stdout, ``@@dnnkit {json}``;
and the tests' fault injection, read by the worker."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

PREFIX = "@@dnnkit "


def plain(value: object) -> object:
    """NumPy scalars and arrays as JSON values (anything else as its string)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def emit(event: str, **fields: Any) -> None:
    """Write one protocol line (worker side)."""
    sys.stdout.write(PREFIX + json.dumps({"event": event, **fields}, default=plain) + "\n")
    sys.stdout.flush()


def parse(line: str) -> dict[str, Any] | None:
    if not line.startswith(PREFIX):
        return None
    try:
        event = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("event"), str) else None


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
