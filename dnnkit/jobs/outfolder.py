"""Which output folder a command may write, and how: one writer at a time, results published together
(:mod:`dnnkit.core.staging`), and a folder written fresh.

A command that makes artifacts (``run``, ``export``, ``compress``, ``optimize``) writes into an empty folder,
a folder that does not exist yet, or an earlier dnnkit export of the same source (the model file, spec or
model object named in its manifest's ``origin``); anything else is refused unless the caller passes
``overwrite``. Nothing of the earlier export survives beside the new one. A command that updates a folder
(``verify``, ``package``) works on a copy and publishes it whole.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from dnnkit.core.staging import FolderError, owner_meta, staged
from dnnkit.manifest.record import MANIFEST

# entries a folder may hold and still count as empty: the CLI's own log of a command that wrote nothing else
_OURS_WHEN_ALONE = {"logs"}


def source_of(model: Any) -> str:
    """How a command's source is named in ``origin.source``: a file or folder by its absolute path, a
    ``keras.Model`` object by its name."""
    if isinstance(model, (str, os.PathLike)):
        return os.path.abspath(model)
    return f"keras.Model {getattr(model, 'name', type(model).__name__)!r}"


def _hint(field: str) -> str:
    return "overwrite=True" if field == "out_dir" else "--overwrite"


def _may_replace(final: Path, source: str, overwrite: bool, field: str) -> None:
    """Refuse a non-empty folder that is not an earlier export of ``source`` (unless ``overwrite``)."""
    if overwrite or not final.is_dir():
        return
    names = sorted(p.name for p in final.iterdir())
    if not names or set(names) <= _OURS_WHEN_ALONE:
        return
    manifest = final / MANIFEST
    if manifest.is_file():
        try:
            origin = json.loads(manifest.read_text(encoding="utf-8")).get("origin")
        except (OSError, ValueError, AttributeError):
            origin = None
        earlier = origin.get("source") if isinstance(origin, dict) else None
        if earlier == source:
            return
        what = f"a dnnkit export of {earlier}" if earlier else "a dnnkit export that records no source"
        raise FolderError(f"{field}: {final} holds {what}; expected an empty folder or an earlier export of "
                          f"{source} (pass {_hint(field)} to replace it)")
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    raise FolderError(f"{field}: {final} is not empty and not a dnnkit export (it holds {shown}); expected an "
                      f"empty or new folder (pass {_hint(field)} to replace it)")


@contextlib.contextmanager
def new_output(out: str | os.PathLike[str], *, command: str, source: str, overwrite: bool = False,
               field: str = "--out", carry: tuple[str, ...] = ()) -> Iterator[Path]:
    """Own ``out`` for a command that writes it anew; yields the staged folder to write.

    Args:
        out: the output folder.
        command: the command (``export``, ``run``, ...), recorded in the manifest's ``origin``.
        source: the source's name (:func:`source_of`), recorded there too and compared on the next command.
        overwrite: replace whatever the folder holds.
        field: how the folder was given, for errors (``--out``; ``out_dir`` from Python).
        carry: what a killed command's staging keeps for the next (``run``: the training backup).

    Raises:
        FolderError: the folder is busy, not writable, or holds something else (exit 2, nothing written).
    """
    with staged(Path(out), field, keep=False, carry=carry,
                check=lambda final: _may_replace(final, source, overwrite, field),
                meta={"command": command, "source": source}) as work:
        yield work


@contextlib.contextmanager
def updated_output(out: str | os.PathLike[str], *, field: str = "out_dir") -> Iterator[Path]:
    """Own an existing export folder for a command that updates it (``verify``, ``package``); yields a copy
    to change (its files hard links: unchanged ones cost nothing), published whole at the end.

    Raises:
        FolderError: the folder is busy, or not a folder.
    """
    path = Path(out)
    if not path.is_dir():
        raise FolderError(f"{field}: {out} is not a folder; expected a folder written by dnnkit run/export")
    with staged(path, field, keep=True) as work:
        yield work


def origin_record(out: Path) -> dict[str, Any] | None:
    """The manifest's ``origin`` for a folder being written (``None`` outside :func:`new_output`)."""
    meta = owner_meta(out)
    return dict(meta) if meta else None
