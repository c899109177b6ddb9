"""How a command ends when something outside it stops it: SIGTERM, a full or read-only disk, a crash. Each
ends in one line; what the command staged is not published."""

from __future__ import annotations

import errno
import signal
import threading
from typing import Any

from dnnkit.errors import one_line

UNPUBLISHED = "nothing of this command was published (the output folder is as it was)"
_REFUSALS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that the command ends as an interrupt does."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


def end_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in the main thread (elsewhere signals cannot be handled)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)


def filesystem_error(exc: BaseException | None) -> OSError | None:
    """The OSError behind a crash when it is the filesystem refusing a write (full, read-only, no permission)."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in _REFUSALS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def crash_line(crash: BaseException, log: Any = None) -> str:
    """The one line that reports a crash: the filesystem's refusal, else the exception (and where its log is)."""
    refused = filesystem_error(crash)
    if refused is not None:
        return f"dnnkit: error: cannot write {refused.filename or 'the output folder'}: {refused.strerror}; {UNPUBLISHED}"
    where = f"; log: {log}" if log else ""
    return (f"dnnkit: failed: {type(crash).__name__}: {one_line(crash, 400)} "
            f"(set DNNKIT_DEBUG=1 for a traceback{where})")
