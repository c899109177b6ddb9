"""Reading one TOML table: types checked, keys remembered, and every error one line naming the file,
the dotted field, the value and what was expected::

    models/x.toml: model.filters: expected a list of positive integers, got -3
"""

from __future__ import annotations

import math
from typing import Any, NoReturn

from dnnkit.errors import SpecError

_REQUIRED = object()


# The largest width or dimension a spec may give (a 65536-wide Dense on 65536 inputs is 17 GB of weights).
MAX_SIZE = 65536

class TableReader:
    """Reads one TOML table, checking types and remembering which keys were used."""

    def __init__(self, table: Any, where: str, origin: str) -> None:
        self.origin = origin
        self.where = where
        if not isinstance(table, dict):
            self.fail_at(where, table, "a table")
        self.table = table
        self.used: set[str] = set()

    def fail_at(self, dotted: str, value: Any, expected: str) -> NoReturn:
        raise SpecError(f"{self.origin}: {dotted}: expected {expected}, got {_show(value)}")

    def fail(self, key: str, value: Any, expected: str) -> NoReturn:
        self.fail_at(self._dotted(key), value, expected)

    def _dotted(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def raw(self, key: str, default: Any) -> Any:
        self.used.add(key)
        if key not in self.table:
            if default is _REQUIRED:
                raise SpecError(f"{self.origin}: {self._dotted(key)}: required field is missing")
            return default
        return self.table[key]

    def has(self, key: str) -> bool:
        return key in self.table

    def integer(self, key: str, default: Any = _REQUIRED, *, minimum: int | None = 1,
                maximum: int | None = None) -> Any:
        value = self.raw(key, default)
        if value is default and key not in self.table:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or (
                minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            what = {1: "a positive integer", 0: "a non-negative integer"}.get(
                minimum, "an integer" if minimum is None else f"an integer >= {minimum}")
            self.fail(key, value, what + (f" up to {maximum}" if maximum is not None else ""))
        return value

    def number(self, key: str, default: Any = _REQUIRED, *, low: float | None = None,
               high: float | None = None, low_open: bool = False, high_open: bool = False) -> Any:
        value = self.raw(key, default)
        if value is default and key not in self.table:
            return value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value < high if high_open else value <= high
        if not ok:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
            bounds = " and ".join(b for b in (lo, hi) if b)
            self.fail(key, value, f"a number {bounds}".rstrip())
        return float(value)

    def fraction(self, key: str, default: Any = _REQUIRED) -> Any:
        """A fraction ``0 <= x < 1`` (a degradation goal: 0.01 is one accuracy point; 5 % is 0.05)."""
        value = self.raw(key, default)
        if value is default and key not in self.table:
            return value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not 0 <= value < 1:
            hint = f" ({value:g} % is {value / 100:g})" if ok and 1 <= value < 100 else ""
            self.fail(key, value, f"a fraction >= 0 and < 1{hint}")
        return float(value)

    def boolean(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self.raw(key, default)
        if not isinstance(value, bool):
            self.fail(key, value, "true or false")
        return value

    def string(self, key: str, default: Any = _REQUIRED) -> Any:
        value = self.raw(key, default)
        if value is default and key not in self.table:
            return value
        if not isinstance(value, str) or not value.strip():
            self.fail(key, value, "a non-empty string")
        return value

    def choice(self, key: str, options: tuple[str, ...], default: Any = _REQUIRED) -> Any:
        value = self.raw(key, default)
        if value is default and key not in self.table:
            return value
        if value not in options:
            self.fail(key, value, "one of " + ", ".join(repr(o) for o in options))
        return value

    def int_list(self, key: str, default: Any = _REQUIRED, *, allow_empty: bool = True,
                 scalar_ok: bool = False, length: int | None = None, maximum: int = MAX_SIZE) -> tuple[int, ...]:
        """A list of positive integers, each at most ``maximum`` (a layer's width, a dimension)."""
        value = self.raw(key, default)
        if scalar_ok and isinstance(value, int) and not isinstance(value, bool) and value > 0:
            value = [value] * (length or 1)
        good = isinstance(value, (list, tuple)) and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
        if not good or (not allow_empty and not value):
            what = "a non-empty list of positive integers" if not allow_empty else \
                "a list of positive integers"
            if scalar_ok:
                what += " (or one positive integer)"
            self.fail(key, value, what)
        if length is not None and len(value) != length:
            self.fail(key, value, f"{length} values (one per block)")
        if any(v > maximum for v in value):
            self.fail(key, value, f"each at most {maximum} (sizes beyond are refused before anything is allocated)")
        return tuple(value)

    def str_list(self, key: str, options: tuple[str, ...], default: Any = _REQUIRED) -> tuple[str, ...]:
        value = self.raw(key, default)
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            self.fail(key, value, "a list of strings")
        for v in value:
            if v not in options:
                self.fail(key, v, "each one of " + ", ".join(repr(o) for o in options))
        return tuple(value)

    def sub(self, key: str) -> "TableReader":
        return TableReader(self.raw(key, {}), self._dotted(key), self.origin)

    def done(self, allowed_hint: tuple[str, ...] | None = None) -> None:
        unknown = sorted(set(self.table) - self.used)
        if unknown:
            key = unknown[0]
            known = ", ".join(sorted(allowed_hint or self.used))
            raise SpecError(f"{self.origin}: {self._dotted(key)}: unknown key "
                            f"(expected one of: {known}), got {_show(self.table[key])}")


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
