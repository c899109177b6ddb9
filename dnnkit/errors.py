"""One exception hierarchy for dnnkit.

Every error a user can cause by bad input subclasses :class:`DnnkitError` (itself a
``ValueError``) and carries ``exit_code = 2``; the CLI prints ``str(error)`` on one line
and exits with that code, without a traceback.
"""

from __future__ import annotations


def one_line(value: object, limit: int | None = 300) -> str:
    """``value`` (an exception, usually) as one line of text, runs of whitespace as one space, cut at
    ``limit`` characters: how an exception's message goes into a manifest, a log line or an error."""
    return " ".join(str(value).split())[:limit]


class DnnkitError(ValueError):
    """Base class of dnnkit's user-facing errors (exit code 2)."""

    exit_code = 2

    def __str__(self) -> str:
        # Always one line: a multi-line message would break the CLI contract.
        return one_line(super().__str__(), None)


class SpecError(DnnkitError):
    """A model spec (TOML) is missing, malformed or inconsistent."""


class DataError(DnnkitError):
    """Data is missing, malformed or does not match the spec."""


class ModelLoadError(DnnkitError):
    """A model file cannot be loaded (missing, corrupt, or refused by safe mode)."""


class StrategyError(DnnkitError):
    """The requested tf.distribute strategy cannot be created here."""


class CompressionError(DnnkitError):
    """A compression pass cannot process this model with these options (e.g. the tfmot
    engine and a layer tf_keras does not have)."""


class ConversionError(DnnkitError):
    """A converter refused the model (reported as a failed artifact, exit 1)."""

    exit_code = 1
