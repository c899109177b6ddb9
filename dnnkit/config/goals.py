"""``[optimize]`` tables (and ``dnnkit optimize``'s flags): the goals the chosen artifact must meet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dnnkit.config.device import Device, device_from
from dnnkit.config.tables import TableReader

TARGETS = ("tflite", "onnx", "both")


OBJECTIVES = ("smallest", "fastest")


@dataclass(frozen=True)
class Goals:
    """What ``optimize`` must meet: the most the task metric may drop (accuracy points, or RMSE
    ratio - 1 for regression), optionally a file size, a batch-1 latency (p50 on this machine), and for TFLite
    candidates a tensor arena (TFLite Micro's measured one where it ran) and a microcontroller's budget."""

    target: str = "both"
    max_degradation: float = 0.01
    max_size_kb: float | None = None
    max_latency_ms: float | None = None
    objective: str = "smallest"
    max_arena_kb: float | None = None
    device: Device | None = None

    @property
    def targets(self) -> tuple[str, ...]:
        return ("tflite", "onnx") if self.target == "both" else (self.target,)

    @property
    def min_agreement(self) -> float:
        """Top-1 agreement the verification asks for: ``1 - 2 x max_degradation`` (0.98 at one
        point, the recipes' default), so the agreement check does not overrule the goal."""
        return max(0.0, 1.0 - 2.0 * self.max_degradation)


def read_goals(t: TableReader, base: Goals | None = None) -> Goals:
    """Goals from a recipe's ``[optimize]`` table (or command-line values), over ``base``.

    Raises:
        SpecError: naming the field, the value and what was expected.
    """
    d = base or Goals()
    goals = Goals(
        target=t.choice("target", TARGETS, d.target),
        max_degradation=t.fraction("max_degradation", d.max_degradation),
        max_size_kb=t.number("max_size_kb", d.max_size_kb, low=0.0, low_open=True),
        max_latency_ms=t.number("max_latency_ms", d.max_latency_ms, low=0.0, low_open=True),
        objective=t.choice("objective", OBJECTIVES, d.objective),
        max_arena_kb=t.number("max_arena_kb", d.max_arena_kb, low=0.0, low_open=True),
        device=device_from(t.raw("device", None), t.origin) if t.has("device") else d.device)
    t.done()
    if goals.target == "onnx" and (goals.device is not None or goals.max_arena_kb is not None):
        t.fail("target", "onnx", "'tflite' or 'both' with a device or max_arena_kb (they judge TFLite candidates)")
    return goals


def goals_from(values: dict[str, Any], base: Goals | None = None, origin: str = "optimize") -> Goals:
    """:func:`read_goals` over plain values (``None`` = not given); numbers may be strings."""
    def number(v: Any) -> Any:
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return v
        return v

    raw = {k: number(v) if k.startswith("max_") else v for k, v in values.items() if v is not None}
    return read_goals(TableReader(raw, "", origin), base)
