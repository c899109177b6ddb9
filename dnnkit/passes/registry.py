"""The one place a pass is found: ``(type, engine)`` -> the function that runs it, and the engine
``auto`` made concrete; the layer selectors of a recipe's passes checked against a model."""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
from dataclasses import dataclass, field
from typing import Any

from dnnkit.errors import CompressionError
from dnnkit.config.passes import PassConfig


@dataclass
class PassResult:
    """What a pass hands on: the new model and what it measured."""

    model: Any
    report: dict[str, Any] = field(default_factory=dict)


def resolve_engine(config: PassConfig, tf_keras_input: bool) -> PassConfig:
    """``engine = "auto"`` made concrete: tfmot for a tf_keras input where tfmot has the
    options asked for (it has no m:n or global pruning here), native otherwise."""
    if getattr(config.options, "engine", None) != "auto":
        return config
    engine = "tfmot" if tf_keras_input else "native"
    if config.type == "prune" and (config.options.structure or config.options.scope != "layer"):
        engine = "native"
    return dataclasses.replace(config, options=dataclasses.replace(config.options, engine=engine))


# (pass type, engine) -> "module:function(model, options, ctx) -> PassResult": the one place a pass
# is found; modules import nothing of each other to dispatch
PASSES: dict[tuple[str, str], str] = {
    ("prune", "native"): "dnnkit.passes.prune_pass:run_prune",
    ("prune", "tfmot"): "dnnkit.passes.tfmot_engine:prune_with_tfmot",
    ("qat", "native"): "dnnkit.passes.qat_pass:run_qat",
    ("qat", "tfmot"): "dnnkit.passes.tfmot_engine:quantize_with_tfmot",
    ("cluster", "tfmot"): "dnnkit.passes.tfmot_engine:cluster_with_tfmot",
    ("distill", "native"): "dnnkit.passes.distill:run_distill",
}


def pass_function(config: PassConfig) -> Any:
    """The function that runs ``config`` (its type and concrete engine), from :data:`PASSES`.

    Raises:
        CompressionError: for an engine still ``auto`` (see :func:`resolve_engine`) or a pair
            not registered.
    """
    engine = getattr(config.options, "engine", "native")
    where = PASSES.get((config.type, engine))
    if where is None:
        raise CompressionError(f"passes: {config.type!r} with engine {engine!r}: expected one of "
                               + ", ".join(f"{t}/{e}" for t, e in PASSES))
    module, function = where.split(":")
    return getattr(importlib.import_module(module), function)


def run_pass(model: Any, config: PassConfig, ctx: Any) -> PassResult:
    """Run one pass on a Keras model.

    Args:
        model: the incoming Keras model.
        config: the pass and its options (a concrete engine: :func:`resolve_engine`).
        ctx: a :class:`dnnkit.passes.context.PassContext` (spec, data, recipe folder).

    Returns:
        The :class:`PassResult`.
    """
    if getattr(config.options, "engine", None) == "auto":
        config = resolve_engine(config, tf_keras_input=False)
    return pass_function(config)(model, config.options, ctx)


def check_selectors(model: Any, passes: tuple[PassConfig, ...], origin: str = "recipe") -> None:
    """Every ``layers`` pattern of the prune passes that see ``model`` must match one of its layers.

    Passes after a ``distill`` pass see the student, not ``model``; they are checked when they run.

    Raises:
        CompressionError: naming the pass, the pattern and the model's layer names.
    """
    names = [layer.name for layer in model.layers]
    for i, p in enumerate(passes):
        if p.type == "distill":
            return
        if p.type != "prune":
            continue
        for pattern in p.options.layers:
            if not any(fnmatch.fnmatchcase(n, pattern) for n in names):
                shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
                raise CompressionError(f"{origin}: passes[{i}].layers: expected patterns that match layers "
                                       f"of the model ({shown}), got {pattern!r}, which matches none")
