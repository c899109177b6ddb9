"""Pruning schedules: small serialisable callables ``step -> target sparsity or None``.

``None`` means "do not update the masks at this step" (between updates, or outside
[begin_step, end_step]). Same meaning as tfmot's ``ConstantSparsity`` and ``PolynomialDecay``.
"""

from __future__ import annotations

from typing import Any


class PruningSchedule:
    """Base class: ``schedule(step)`` gives the sparsity to prune to at ``step``, or ``None``."""

    def __init__(self, begin_step: int = 0, end_step: int = -1, frequency: int = 100) -> None:
        if begin_step < 0:
            raise ValueError(f"begin_step: expected >= 0, got {begin_step}")
        if end_step != -1 and end_step < begin_step:
            raise ValueError(f"end_step: expected -1 or >= begin_step ({begin_step}), got {end_step}")
        if frequency < 1:
            raise ValueError(f"frequency: expected >= 1, got {frequency}")
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency

    def _active(self, step: int) -> bool:
        if step < self.begin_step or (self.end_step != -1 and step > self.end_step):
            return False
        at_end = self.end_step != -1 and step == self.end_step
        return at_end or (step - self.begin_step) % self.frequency == 0

    def target(self, step: int) -> float:
        raise NotImplementedError

    def __call__(self, step: int) -> float | None:
        return self.target(step) if self._active(step) else None

    def get_config(self) -> dict[str, Any]:
        return {"begin_step": self.begin_step, "end_step": self.end_step, "frequency": self.frequency}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "PruningSchedule":
        return cls(**config)

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()  # type: ignore[union-attr]


def _check_sparsity(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}: expected a sparsity in [0, 1), got {value}")


class ConstantSparsity(PruningSchedule):
    """Prune to one sparsity at every update step in [begin_step, end_step]."""

    def __init__(self, target_sparsity: float, begin_step: int = 0, end_step: int = -1,
                 frequency: int = 100) -> None:
        super().__init__(begin_step, end_step, frequency)
        _check_sparsity("target_sparsity", target_sparsity)
        self.target_sparsity = float(target_sparsity)

    def target(self, step: int) -> float:
        return self.target_sparsity

    def get_config(self) -> dict[str, Any]:
        return {"target_sparsity": self.target_sparsity, **super().get_config()}


class PolynomialDecay(PruningSchedule):
    """Sparsity rising from ``initial`` to ``final`` between begin and end step:
    ``s = final + (initial - final) * (1 - progress) ** power`` (Zhu & Gupta, 2017)."""

    def __init__(self, initial_sparsity: float, final_sparsity: float, begin_step: int, end_step: int,
                 power: float = 3.0, frequency: int = 100) -> None:
        if end_step == -1:
            raise ValueError("end_step: PolynomialDecay needs an end step, got -1")
        super().__init__(begin_step, end_step, frequency)
        _check_sparsity("initial_sparsity", initial_sparsity)
        _check_sparsity("final_sparsity", final_sparsity)
        self.initial_sparsity, self.final_sparsity = float(initial_sparsity), float(final_sparsity)
        self.power = float(power)

    def target(self, step: int) -> float:
        span = max(1, self.end_step - self.begin_step)
        progress = min(1.0, max(0.0, (step - self.begin_step) / span))
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power

    def get_config(self) -> dict[str, Any]:
        return {"initial_sparsity": self.initial_sparsity, "final_sparsity": self.final_sparsity,
                "power": self.power, **super().get_config()}


SCHEDULES = {"constant": ConstantSparsity, "polynomial": PolynomialDecay}


def serialize(schedule: PruningSchedule) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}`` for a schedule."""
    return {"class_name": type(schedule).__name__, "config": schedule.get_config()}


def deserialize(data: dict[str, Any]) -> PruningSchedule:
    """Rebuild a schedule from :func:`serialize`'s output."""
    classes = {cls.__name__: cls for cls in SCHEDULES.values()}
    if data.get("class_name") not in classes:
        raise ValueError(f"class_name: expected one of {sorted(classes)}, got {data.get('class_name')!r}")
    return classes[data["class_name"]].from_config(data["config"])


def schedule_for(opts: Any, total_steps: int) -> PruningSchedule:
    """The schedule a prune pass's options describe (``end_step`` defaults to two thirds of the
    fine-tuning steps); both engines prune on it (tfmot gets its own schedule with the same steps).

    Args:
        opts: a :class:`dnnkit.passes.PruneOptions`.
        total_steps: optimizer steps of the fine-tuning.
    """
    end = opts.end_step if opts.end_step is not None else max(opts.begin_step + 1, (2 * total_steps) // 3)
    if opts.schedule == "constant" or opts.structure:
        return ConstantSparsity(opts.final_sparsity, begin_step=opts.begin_step, end_step=end,
                                frequency=opts.frequency)
    return PolynomialDecay(opts.initial_sparsity, opts.final_sparsity, begin_step=opts.begin_step,
                           end_step=end, frequency=opts.frequency)
