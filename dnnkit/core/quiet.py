"""Keep third-party log lines off the terminal: TensorFlow's C++ logging, absl, XNNPACK and
CUDA probes write to file descriptor 2 directly, between dnnkit's own lines.

:class:`ThirdPartyLog` points descriptor 2 at a temporary file for the length of a command
and hands dnnkit a stream to the real terminal for its own messages; at the end the log is
moved into ``OUT/logs/dnnkit.log`` (when the command wrote an output folder) or removed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO


class ThirdPartyLog:
    """Context manager: descriptor 2 goes to a log file; ``terminal`` still reaches the user."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.terminal: TextIO = sys.stderr
        self.path: Path | None = None
        self._saved: int | None = None

    def __enter__(self) -> "ThirdPartyLog":
        if not self.enabled:
            return self
        sys.stdout.flush()
        sys.stderr.flush()
        fd, name = tempfile.mkstemp(prefix="dnnkit-", suffix=".log")
        self.path = Path(name)
        self._saved = os.dup(2)
        os.dup2(fd, 2)
        os.close(fd)
        try:
            real = sys.stderr.fileno() == 2
        except (AttributeError, OSError, ValueError):
            real = False  # replaced by a capturing object (tests): keep writing to it
        if real:
            self.terminal = os.fdopen(os.dup(self._saved), "w", buffering=1, encoding="utf-8", errors="replace")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._saved is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._saved = None

    def keep_in(self, out_dir: str | os.PathLike[str] | None) -> Path | None:
        """Append the captured log to ``OUT/logs/dnnkit.log`` if that folder was written; else drop it.

        Returns:
            Where the log now is (``None`` if dropped or never captured).
        """
        if self.path is None or not self.path.exists():
            return None
        out = Path(out_dir) if out_dir is not None else None
        if out is not None and out.is_dir():
            (out / "logs").mkdir(exist_ok=True)
            target = out / "logs" / "dnnkit.log"
            with open(target, "ab") as dst, open(self.path, "rb") as src:
                shutil.copyfileobj(src, dst)
            self.path.unlink()
            return target
        self.path.unlink()
        return None


def quiet_tensorflow() -> None:
    """TensorFlow's C++ info lines and Keras's user warnings off (set before either is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
