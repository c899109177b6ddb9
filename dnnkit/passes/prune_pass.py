"""The native ``prune`` pass: magnitude pruning during fine-tuning, then strip (the tfmot engine's is
:func:`dnnkit.passes.tfmot_engine.prune_with_tfmot`; :data:`dnnkit.passes.registry.PASSES` picks one)."""

from __future__ import annotations

import time
from typing import Any

from dnnkit.core.tensors import set_weights
from dnnkit.passes.context import PassContext
from dnnkit.passes.pruning import PruneConfig, prune_low_magnitude, strip_pruning
from dnnkit.passes.registry import PassResult
from dnnkit.passes.schedules import schedule_for, serialize
from dnnkit.config.passes import PruneOptions


def run_prune(model: Any, opts: PruneOptions, ctx: PassContext) -> PassResult:
    """Prune ``model`` while fine-tuning it; return the stripped, plain Keras model.

    Args:
        model: the incoming Keras 3 model (left unchanged; a copy is pruned).
        opts: the pass options.
        ctx: spec, data and paths.

    Returns:
        The pruned model and a report: per-weight sparsity, schedule, time.
    """
    import keras

    work = keras.models.clone_model(model)
    set_weights(work, model.get_weights())
    total = ctx.steps_per_epoch(opts.batch_size) * opts.epochs
    structure = tuple(int(p) for p in opts.structure.split(":")) if opts.structure else None
    schedule = schedule_for(opts, total)
    state = prune_low_magnitude(work, PruneConfig(
        schedule=schedule, layers=opts.layers, types=opts.types, skip_first=opts.skip_first,
        skip_last=opts.skip_last, scope=opts.scope, structure=structure))
    start = time.perf_counter()
    ctx.fine_tune(work, epochs=opts.epochs, learning_rate=opts.learning_rate, batch_size=opts.batch_size,
                  callbacks=[state.callback()])
    seconds = time.perf_counter() - start
    report = {"engine": "native", "schedule": serialize(schedule), "structure": opts.structure,
              "fine_tune_seconds": round(seconds, 3), "layers": state.report(), "skipped": state.skipped}
    return PassResult(model=strip_pruning(work, state), report=report)
