"""TOML files: read with one-line errors, written back (enough for specs and recipes)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from dnnkit.errors import SpecError


def read_toml(path: str | os.PathLike[str], kind: str, error: type[SpecError] = SpecError,
              hint: str = "") -> dict[str, Any]:
    """Parse a TOML file, raising ``error`` with a one-line message (ending with ``hint``) if it is missing
    or malformed."""
    p = Path(path)
    if not p.is_file():
        raise error(f"{path}: {kind} file not found{hint}")
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None


def dump_toml(data: dict[str, Any]) -> str:
    """Write nested dicts of scalars and lists as TOML (enough for specs and recipes)."""
    lines: list[str] = []

    def emit(table: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in table.items() if isinstance(v, dict)}
        if prefix and scalars:
            lines.append(f"\n[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        for k, v in tables.items():
            emit(v, f"{prefix}.{k}" if prefix else k)

    emit(data, "")
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")
