"""An artifact's files as bytes: its sha256 and size (an ONNX model with its external data, a
SavedModel folder's files), and its gzip size."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def external_data(path: str | os.PathLike[str]) -> Path | None:
    """The external-data file beside an ONNX model (``NAME.onnx.data``), if there is one."""
    p = Path(path)
    side = p.with_name(p.name + ".data")
    return side if p.suffix == ".onnx" and side.is_file() else None


def file_digest(path: str | os.PathLike[str]) -> tuple[str, int]:
    """sha256 and size in bytes of a file (with its ONNX external data), or of a folder's files
    (names and contents)."""
    p = Path(path)
    h = hashlib.sha256()
    side = external_data(p)
    if side is not None:
        main_digest, main_bytes = file_digest_plain(p)
        data_digest, data_bytes = file_digest_plain(side)
        h.update(main_digest.encode())
        h.update(data_digest.encode())
        return h.hexdigest(), main_bytes + data_bytes
    if p.is_dir():
        total = 0
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(str(f.relative_to(p)).encode())
            data = f.read_bytes()
            h.update(data)
            total += len(data)
        return h.hexdigest(), total
    return file_digest_plain(p)


def file_digest_plain(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), len(data)


def gzip_size(path: str | os.PathLike[str]) -> int:
    """Bytes after gzip (level 9) of a file, or of a folder's files concatenated."""
    import gzip

    p = Path(path)
    files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p, *filter(None, [external_data(p)])]
    return len(gzip.compress(b"".join(f.read_bytes() for f in files), compresslevel=9))
