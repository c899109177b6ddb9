"""The recipes and model specs that ship inside the package (``dnnkit/recipes/*.toml``,
``dnnkit/models/*.toml``; the repository's ``export/`` and ``models/`` point at them): named by file name
without ``.toml`` (``--recipe mobile``), from any folder."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
RECIPES = PACKAGE / "recipes"
MODELS = PACKAGE / "models"


def names(folder: Path) -> list[str]:
    """The shipped names in ``folder`` (sorted)."""
    return sorted(p.stem for p in folder.glob("*.toml"))


def locate(value: str | os.PathLike[str], folder: Path) -> Path:
    """A file the user named: the path itself where it exists, else the shipped file of that name (a bare
    name, without folder or suffix), else the path as given (its reader then reports it missing)."""
    path = Path(value)
    if path.exists():
        return path
    text = os.fspath(value)
    if os.sep not in text and "/" not in text and not path.suffix and (folder / f"{text}.toml").is_file():
        return folder / f"{text}.toml"
    return path


def missing_hint(folder: Path) -> str:
    """What to say of a name that is neither a file nor shipped: the shipped names."""
    return f"; expected a file or one of the shipped names: {', '.join(names(folder))}"


def describe(folder: Path) -> list[tuple[str, str]]:
    """(name, description) of every shipped file in ``folder`` (its top-level ``description``)."""
    rows = []
    for name in names(folder):
        try:
            raw = tomllib.loads((folder / f"{name}.toml").read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            raw = {}
        rows.append((name, str(raw.get("description", "")).strip()))
    return rows
