"""One writer per output folder, and a command's results appearing all at once.

A command that writes an output folder ``OUT`` holds an advisory lock beside it (``.OUT.dnnkit-lock``, the
``filelock`` library: the operating system releases it when the holder dies, SIGKILL included) and writes
into a staging copy ``.OUT.dnnkit-staging/OUT`` on the same filesystem. Only when the command finishes is
the staged folder exchanged with ``OUT`` in one ``renameat2(RENAME_EXCHANGE)`` (two renames where the
filesystem lacks it), so a killed or failed command leaves the previous complete folder, or none.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from dnnkit.errors import DnnkitError, one_line


class FolderError(DnnkitError):
    """An output folder cannot be written: busy (another command holds it), not a folder, not writable."""


LOCK_SUFFIX = ".dnnkit-lock"
STAGING_SUFFIX = ".dnnkit-staging"
_OWNED: list[tuple[Path, Path, dict]] = []  # (final, staged, meta) of the folders this process owns, outermost first


def side_path(out: Path, suffix: str) -> Path:
    """``.NAME<suffix>`` beside the folder ``out`` (its lock, its staging area)."""
    return out.parent / f".{out.name}{suffix}"


def owned_staging(out: Path) -> Path | None:
    """The staged path of ``out`` when this process already owns it or a folder above it, else ``None``."""
    target = Path(os.path.abspath(out))
    for final, staged, _ in reversed(_OWNED):
        if target == final or final in target.parents:
            return staged / target.relative_to(final)
        if target == staged or staged in target.parents:
            return target
    return None


def owner_meta(out: Path) -> dict:
    """What the outermost owner of ``out`` (or of a folder above it) said about it (``staged(meta=...)``)."""
    target = Path(os.path.abspath(out))
    for final, staged, meta in _OWNED:
        if target in (final, staged) or final in target.parents or staged in target.parents:
            return meta
    return {}


def writable_parent(out: Path, field: str) -> None:
    """Refuse an ``out`` that is a file, or whose parent cannot hold new folders.

    Raises:
        FolderError: naming ``field`` and the path.
    """
    if out.exists() and not out.is_dir():
        raise FolderError(f"{field}: {out} is a file; expected a folder to write (or a path that does not exist)")
    parent = Path(os.path.abspath(out)).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FolderError(f"{field}: cannot create {parent} ({exc.strerror or one_line(exc)}); expected a "
                          "writable folder") from None
    probe = parent / f".{out.name}.dnnkit-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise FolderError(f"{field}: cannot write {out}: its folder {parent} refuses new entries "
                          f"({exc.strerror or one_line(exc)}); expected a path in a writable folder") from None


@dataclass
class Holder:
    """Who holds a folder's lock: written into the lock file by the holder."""

    pid: int
    host: str
    command: str
    since: float

    def describe(self) -> str:
        when = time.strftime("%H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on {self.host} since {when}: {self.command}"


def _read_holder(path: Path) -> Holder | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8") or "{}")
        return Holder(int(raw["pid"]), str(raw["host"]), str(raw["command"]), float(raw["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def folder_lock(out: Path, field: str, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the advisory lock of ``out`` for the block.

    Args:
        out: the output folder.
        field: how the folder was given (``--out``, ``out_dir``), for the error.
        wait: seconds to wait for another holder before refusing.

    Raises:
        FolderError: another process holds it (the line names the holder).
    """
    from filelock import FileLock, Timeout

    path = side_path(Path(os.path.abspath(out)), LOCK_SUFFIX)
    lock = FileLock(str(path), timeout=wait)
    try:
        lock.acquire()
    except Timeout:
        holder = _read_holder(path.with_name(path.name + ".holder"))
        who = holder.describe() if holder else "another process"
        raise FolderError(f"{field}: {out} is being written by {who}; expected one writer at a time (wait for "
                          "it to finish or choose another folder)") from None
    except OSError as exc:
        raise FolderError(f"{field}: cannot lock {out} ({exc.strerror or one_line(exc)}); expected a writable "
                          "folder") from None
    info = path.with_name(path.name + ".holder")
    try:
        try:
            info.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                        "command": " ".join(sys.argv)[:300], "since": time.time()}),
                            encoding="utf-8")
        except OSError:
            pass  # who holds it is advice only
        yield
    finally:
        with contextlib.suppress(OSError):
            info.unlink()
        lock.release()
        with contextlib.suppress(OSError):
            path.unlink()


def _renameat2_exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a))


def _refuses_links(path: Path) -> bool:
    """An ONNX model's external data (``NAME.onnx.data`` beside ``NAME.onnx``): onnxruntime refuses a data file
    with more than one hard link (a guard against link attacks), so it is copied."""
    return path.suffix == ".data" and path.with_suffix("").suffix == ".onnx"


def _link_tree(src: Path, dst: Path) -> None:
    """A copy of ``src`` at ``dst`` whose files are hard links (copies where links are refused): writes into
    the copy replace files (they are atomic renames) and so never touch the original's."""
    def link(s: str, d: str) -> None:
        if _refuses_links(Path(s)):
            shutil.copy2(s, d)
            return
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dst, copy_function=link, symlinks=True)


@contextlib.contextmanager
def staged(out: Path, field: str, *, keep: bool, carry: tuple[str, ...] = (),
           check: Callable[[Path], None] | None = None, meta: dict | None = None) -> Iterator[Path]:
    """Own ``out`` for a command: its lock held, its writes staged, published together at the end.

    Nested calls for ``out`` (or a folder inside it) yield the staged path the outer call owns.

    Args:
        out: the output folder.
        field: how it was given, for errors.
        keep: start the staged folder as a copy of ``out`` (a command that updates a folder: ``verify``,
            ``package``) instead of empty (a command that writes it anew).
        carry: names inside a staging area a killed command left that the new one keeps (``run``: the
            training's backup, so that the re-run resumes).
        check: called with ``out`` once the lock is held, before anything is staged (it may refuse).
        meta: what nested calls and :func:`owner_meta` see about this folder (where the command came from).

    Yields:
        The folder to write: published as ``out`` when the block ends without an exception, thrown away
        when it raises.

    Raises:
        FolderError: ``out`` is busy, a file, or not writable.
        DnnkitError: whatever ``check`` raises.
    """
    inner = owned_staging(out)
    if inner is not None:
        yield inner
        return
    final = Path(os.path.abspath(out))
    writable_parent(final, field)
    with folder_lock(final, field):
        if check is not None:
            check(final)
        area = side_path(final, STAGING_SUFFIX)
        work = area / final.name
        try:
            _prepare(area, work, final, keep=keep, carry=carry)
        except OSError as exc:
            shutil.rmtree(area, ignore_errors=True)
            raise FolderError(f"{field}: cannot stage {out} ({exc.strerror or one_line(exc)}); expected a "
                              "writable folder with free space") from None
        _OWNED.append((final, work, dict(meta or {})))
        try:
            yield work
        except BaseException:
            _OWNED.pop()
            shutil.rmtree(area, ignore_errors=True)
            raise
        _OWNED.pop()
        publish(work, final)
        shutil.rmtree(area, ignore_errors=True)


def _prepare(area: Path, work: Path, final: Path, *, keep: bool, carry: tuple[str, ...]) -> None:
    """An empty (or copied) staged folder; what a killed command left is cleared, ``carry`` excepted."""
    kept = []
    if area.exists():
        for name in carry:
            carried = area / f".carry-{name}"
            if (work / name).exists():
                if carried.exists():
                    shutil.rmtree(carried)
                os.replace(work / name, carried)
            if carried.exists():
                kept.append(name)
        for child in area.iterdir():
            if child.name.startswith(".carry-") and child.name[len(".carry-"):] in kept:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    area.mkdir(exist_ok=True)
    if keep and final.is_dir():
        _link_tree(final, work)
    else:
        work.mkdir()
    for name in kept:
        target = work / name
        if target.exists():
            shutil.rmtree(target)
        os.replace(area / f".carry-{name}", target)


def publish(work: Path, final: Path) -> None:
    """Put the staged folder in place of ``final`` (swapped in one step where the filesystem can)."""
    if not final.exists():
        os.replace(work, final)
        return
    if _renameat2_exchange(work, final):
        return
    old = work.with_name(work.name + ".previous")
    os.replace(final, old)  # killed between these two renames: no OUT, the previous one beside it
    os.replace(work, final)
