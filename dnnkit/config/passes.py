"""``[[passes]]`` tables: each compression pass's typed options, read by one reader per type.

Passes: ``prune`` (native Keras 3 magnitude pruning, unstructured or m:n), ``qat``
(native quantization-aware training), ``distill`` (keras.distillation), and the
``tfmot`` engine for tf_keras models (``prune`` and ``qat`` with ``engine = "tfmot"``, ``cluster``). The
default ``engine = "auto"`` means tfmot when the pipeline's input is a tf_keras model and native
otherwise (:func:`dnnkit.passes.registry.resolve_engine`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dnnkit.config.tables import TableReader

# layer class -> the weights magnitude pruning applies to (attribute paths).
PRUNABLE: dict[str, tuple[str, ...]] = {
    "Dense": ("kernel",),
    "EinsumDense": ("kernel",),
    "Conv1D": ("kernel",),
    "Conv2D": ("kernel",),
    "Conv3D": ("kernel",),
    "DepthwiseConv1D": ("depthwise_kernel",),
    "DepthwiseConv2D": ("depthwise_kernel",),
    "Embedding": ("embeddings",),
    "LSTM": ("cell.kernel", "cell.recurrent_kernel"),
    "GRU": ("cell.kernel", "cell.recurrent_kernel"),
    "MultiHeadAttention": ("_query_dense.kernel", "_key_dense.kernel", "_value_dense.kernel",
                           "_output_dense.kernel"),
    "Bidirectional": ("forward_layer.cell.kernel", "forward_layer.cell.recurrent_kernel",
                      "backward_layer.cell.kernel", "backward_layer.cell.recurrent_kernel"),
}


@dataclass(frozen=True)
class FineTuneOptions:
    """What every pass that fine-tunes shares, read by one reader (:func:`_read_fine_tune`) and
    used by one fine-tuning path (:meth:`dnnkit.passes.context.PassContext.fine_tune`; the tfmot
    engine and distillation take the same three). Each pass type sets its own defaults."""

    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 32


@dataclass(frozen=True)
class PruneOptions(FineTuneOptions):
    """``[[passes]] type = "prune"``."""

    schedule: str = "polynomial"
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.8
    begin_step: int = 0
    end_step: int | None = None  # default: two thirds of the fine-tuning steps
    frequency: int = 10
    structure: str | None = None  # "2:4"
    layers: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    skip_first: bool = False
    skip_last: bool = False
    scope: str = "layer"
    engine: str = "auto"


@dataclass(frozen=True)
class DistillOptions(FineTuneOptions):
    """``[[passes]] type = "distill"``: the incoming model is the teacher."""

    student: str = ""
    temperature: float = 3.0
    student_loss_weight: float = 0.1
    epochs: int = 30
    learning_rate: float = 3e-3


@dataclass(frozen=True)
class QATOptions(FineTuneOptions):
    """``[[passes]] type = "qat"``: fake-quantize, then fine-tune.

    ``preserve_sparsity`` keeps the zeros of a pruned model through the fine-tuning
    (tfmot: collaborative pruning-preserving QAT; native: the zeros are masked).
    """

    epochs: int = 5
    learning_rate: float = 1e-4
    preserve_sparsity: bool = False
    engine: str = "auto"


@dataclass(frozen=True)
class ClusterOptions(FineTuneOptions):
    """``[[passes]] type = "cluster"``: weight clustering (tfmot engine)."""

    number_of_clusters: int = 16
    epochs: int = 5
    learning_rate: float = 1e-4
    engine: str = "tfmot"


@dataclass(frozen=True)
class PassConfig:
    """One pass of a recipe, with its typed options."""

    type: str
    options: Any = field(default=None)
    max_degradation: float | None = None


ENGINES = ("auto", "native", "tfmot")


def _read_fine_tune(t: TableReader, d: FineTuneOptions) -> dict[str, Any]:
    """``epochs``, ``learning_rate`` and ``batch_size`` of any pass, over the pass type's defaults."""
    return {"epochs": t.integer("epochs", d.epochs),
            "learning_rate": t.number("learning_rate", d.learning_rate, low=0.0, low_open=True),
            "batch_size": t.integer("batch_size", d.batch_size)}


def _read_prune(t: TableReader) -> PruneOptions:
    d = PruneOptions()
    structure = t.string("structure", None)
    if structure is not None:
        parts = structure.split(":")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or not 0 < int(parts[0]) < int(parts[1]):
            t.fail("structure", structure, 'an "m:n" pattern with 0 < m < n, e.g. "2:4"')
    opts = PruneOptions(
        schedule=t.choice("schedule", ("constant", "polynomial"), d.schedule),
        initial_sparsity=t.number("initial_sparsity", d.initial_sparsity, low=0.0, high=1.0, high_open=True),
        final_sparsity=t.number("final_sparsity", d.final_sparsity, low=0.0, high=1.0, high_open=True),
        begin_step=t.integer("begin_step", d.begin_step, minimum=0),
        end_step=t.integer("end_step", None),
        frequency=t.integer("frequency", d.frequency),
        structure=structure,
        layers=_patterns(t, "layers"), types=_patterns(t, "types"),
        skip_first=t.boolean("skip_first", False), skip_last=t.boolean("skip_last", False),
        scope=t.choice("scope", ("layer", "global"), "layer"),
        engine=t.choice("engine", ENGINES, d.engine), **_read_fine_tune(t, d))
    if opts.engine == "tfmot" and (opts.structure or opts.scope != "layer"):
        field_name, value = ("structure", opts.structure) if opts.structure else ("scope", opts.scope)
        t.fail(field_name, value, 'unset with engine = "tfmot" (tfmot prunes unstructured, per layer here)')
    unknown = [v for v in opts.types if v not in PRUNABLE]
    if unknown:
        t.fail("types", list(opts.types), f"prunable layer classes, one of {', '.join(sorted(PRUNABLE))} "
               f"(unknown: {', '.join(repr(u) for u in unknown)})")
    if opts.end_step is not None and opts.end_step < opts.begin_step:
        t.fail("end_step", opts.end_step, f"a step >= begin_step ({opts.begin_step})")
    return opts


def _patterns(t: TableReader, key: str) -> tuple[str, ...]:
    """A list of non-empty strings; a bare string is refused (it is not one pattern per character)."""
    value = t.raw(key, [])
    example = '["conv_*", "dense_1"]' if key == "layers" else '["Conv2D", "Dense"]'
    if isinstance(value, str):
        t.fail(key, value, f"a list of {'name patterns' if key == 'layers' else 'layer class names'}, "
               f"e.g. {example} (a bare string is not a list)")
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        t.fail(key, value, f"a list of non-empty strings, e.g. {example}")
    return tuple(value)


def _read_distill(t: TableReader) -> DistillOptions:
    d = DistillOptions()
    return DistillOptions(
        student=t.string("student"),
        temperature=t.number("temperature", d.temperature, low=0.0, low_open=True),
        student_loss_weight=t.number("student_loss_weight", d.student_loss_weight, low=0.0, high=1.0),
        **_read_fine_tune(t, d))


def _read_qat(t: TableReader) -> QATOptions:
    d = QATOptions()
    return QATOptions(preserve_sparsity=t.boolean("preserve_sparsity", d.preserve_sparsity),
                      engine=t.choice("engine", ENGINES, d.engine), **_read_fine_tune(t, d))


def _read_cluster(t: TableReader) -> ClusterOptions:
    d = ClusterOptions()
    return ClusterOptions(number_of_clusters=t.integer("number_of_clusters", d.number_of_clusters, minimum=2),
                          engine=t.choice("engine", ("tfmot",), "tfmot"), **_read_fine_tune(t, d))


READERS = {"prune": _read_prune, "qat": _read_qat, "distill": _read_distill, "cluster": _read_cluster}


def read_pass(t: TableReader) -> PassConfig:
    """Validate one ``[[passes]]`` table."""
    kind = t.choice("type", tuple(READERS))
    max_deg = t.fraction("max_degradation", None)
    options = READERS[kind](t)
    t.done()
    return PassConfig(type=kind, options=options, max_degradation=max_deg)
