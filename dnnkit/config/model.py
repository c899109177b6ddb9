"""Model specs: TOML files validated once, at load time, into typed config objects.

A spec has four tables besides ``name``/``description``: ``[data]``, ``[model]`` (with the
family's own keys) and ``[train]``. Every error names the file, the dotted field, the value
and what was expected, e.g.::

    models/x.toml: model.filters: expected a list of positive integers, got -3

Unknown keys are errors. :func:`spec_to_dict` gives the resolved spec (defaults filled in),
which :func:`dump_toml` writes back and :func:`load_spec` reads again unchanged.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dnnkit.errors import SpecError
from dnnkit.config.families import (CNNConfig, FamilyConfig, MLPConfig, NORMS, RNNConfig,  # noqa: F401
                                     TransformerConfig, read_family)
from dnnkit.core.heads import (GENERATIVE_HEADS, HEADS, LOGIT_HEADS, LOSSES_OF, METRICS_OF,  # noqa: F401
                                NUM_CLASSES_HEADS, OUTPUT_UNITS_HEADS, STEP_HEADS)
from dnnkit.core.heads import default_metrics as _default_metrics
from dnnkit.config.shipped import MODELS, locate, missing_hint
from dnnkit.config.tables import TableReader
from dnnkit.config.toml import read_toml

FAMILIES = ("mlp", "cnn", "rnn", "transformer")


# data sources built in (no file, no network): scikit-learn's digits, and seeded generators of sequence tasks
BUILTIN_SOURCES = ("digits", "brackets", "series", "reverse", "addition")


ACTIVATIONS = (
    "linear", "sigmoid", "tanh", "relu", "relu6", "leaky_relu", "elu", "selu",
    "gelu", "gelu_exact", "swish", "silu", "softplus", "mish",
)


OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")


SCHEDULES = ("constant", "cosine", "step")


LOSSES = ("auto", "mse", "sparse_categorical_crossentropy", "categorical_crossentropy",
          "binary_crossentropy")


METRICS = ("accuracy", "precision", "recall", "f1", "mse", "rmse", "mae")


STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


PRECISIONS = ("none", "float16", "bfloat16")


LAYOUTS = ("flat", "image", "sequence", "tokens")


@dataclass(frozen=True)
class DataConfig:
    """Where the data comes from and how it is split.

    ``source`` is ``"digits"`` (built in), a path to a ``.npz``/``.csv`` file, or an image folder
    with one sub-folder per class, resolved relative to the spec file.
    """

    source: str = "digits"
    layout: str | None = None
    label_column: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    samples: int | None = None  # how many sequences a seeded task generates (default TASK_SAMPLES)


@dataclass(frozen=True)
class ModelConfig:
    """The network: family, input shape, head and the family's own options. ``output_shape`` (per sample) is
    set only for a model brought without a spec whose output has a class or value per element (a pixel, a step)."""

    family: str
    input_shape: tuple[int, ...]
    head: str = "multiclass"
    num_classes: int | None = None
    output_units: int = 1
    activation: str = "relu"
    dropout: float = 0.0
    options: FamilyConfig = field(default_factory=MLPConfig)
    output_shape: tuple[int, ...] | None = None
    source_steps: int | None = None  # seq2seq: the input's first steps are the source, the rest the decoder's

    @property
    def output_steps(self) -> int:
        """The steps a per-step head answers: every input step, or a seq2seq model's target steps."""
        return self.input_shape[0] - (self.source_steps or 0)


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained. ``batch_size`` is per replica."""

    epochs: int = 20
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    step_epochs: int = 10
    step_gamma: float = 0.1
    loss: str = "auto"
    metrics: tuple[str, ...] = ("accuracy",)
    seed: int = 0
    mixed_precision: str = "none"
    early_stopping_patience: int = 0
    strategy: str = "auto"
    tensorboard: bool = True


@dataclass(frozen=True)
class Spec:
    """A whole, validated model spec."""

    name: str
    model: ModelConfig
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    description: str = ""
    path: str | None = None

    @property
    def base_dir(self) -> Path:
        """Folder that relative data paths are resolved against."""
        return Path(self.path).parent if self.path else Path.cwd()


def _read_model(t: TableReader) -> ModelConfig:
    family = t.choice("family", FAMILIES)
    input_shape = t.int_list("input_shape", allow_empty=False)
    head = t.choice("head", HEADS, "multiclass")
    num_classes = None
    if head in NUM_CLASSES_HEADS:
        num_classes = t.integer("num_classes", 10, minimum=2)
    output_units = t.integer("output_units", 1) if head in OUTPUT_UNITS_HEADS else 1
    if head in STEP_HEADS and family not in ("rnn", "transformer"):
        t.fail("head", head, "a per-sample head (multiclass, binary, regression) for a " + family +
               "; a per-step head needs family \"rnn\" or \"transformer\"")
    activation = t.choice("activation", ACTIVATIONS, "relu")
    dropout = t.number("dropout", 0.0, low=0.0, high=1.0, high_open=True)
    options = read_family(t, family, input_shape)
    source_steps = None
    if head in GENERATIVE_HEADS:
        if getattr(options, "input", None) != "tokens":
            t.fail("input", getattr(options, "input", None), f"\"tokens\" for a {head} head (it predicts the next token)")
        if getattr(options, "bidirectional", False):
            t.fail("bidirectional", True, f"false for a {head} head (a step must not see later tokens)")
        num_classes = options.vocab_size  # one logit per token id
    if head == "seq2seq":
        source_steps = t.integer("source_steps", minimum=1, maximum=input_shape[0] - 1)
    if getattr(options, "attention", False) and head != "seq2seq":
        t.fail("attention", True, "false: attention over an encoder's states needs head \"seq2seq\"")
    if head in STEP_HEADS and getattr(options, "pooling", "mean") == "cls":
        t.fail("pooling", "cls", "\"mean\" for a per-step head (a class token has no step of its own)")
    t.done()
    return ModelConfig(family=family, input_shape=input_shape, head=head,
                       num_classes=num_classes, output_units=output_units,
                       activation=activation, dropout=dropout, options=options, source_steps=source_steps)


def _read_data(t: TableReader) -> DataConfig:
    source = t.string("source", "digits")
    cfg = DataConfig(
        source=source,
        layout=t.choice("layout", LAYOUTS, None),
        label_column=t.string("label_column", None),
        val_fraction=t.number("val_fraction", 0.1, low=0.0, high=0.5, high_open=True),
        test_fraction=t.number("test_fraction", 0.2, low=0.0, high=0.5, high_open=True,
                               low_open=True),
        seed=t.integer("seed", 0, minimum=0),
        samples=t.integer("samples", None, minimum=100, maximum=200_000))
    if cfg.samples is not None and source not in BUILTIN_SOURCES[1:]:
        t.fail("samples", cfg.samples, "no value: only a seeded task (" + ", ".join(BUILTIN_SOURCES[1:]) +
               ") generates a number of samples")
    if source.lower().endswith(".csv") and cfg.label_column is None:
        raise SpecError(f"{t.origin}: data.label_column: required field is missing "
                        f"(a CSV source needs the name of its label column)")
    if source not in BUILTIN_SOURCES and Path(source.rstrip("/")).suffix.lower() not in (".npz", ".csv", ""):
        t.fail("source", source, ", ".join(f'"{b}"' for b in BUILTIN_SOURCES) +
               ", a path ending in .npz or .csv, or an image folder (one sub-folder per class)")
    t.done()
    return cfg


def _read_train(t: TableReader, head: str) -> TrainConfig:
    d = TrainConfig()
    allowed_metrics = METRICS_OF[head]
    default_metrics = _default_metrics(head)
    cfg = TrainConfig(
        epochs=t.integer("epochs", d.epochs),
        batch_size=t.integer("batch_size", d.batch_size),
        optimizer=t.choice("optimizer", OPTIMIZERS, d.optimizer),
        learning_rate=t.number("learning_rate", d.learning_rate, low=0.0, low_open=True),
        momentum=t.number("momentum", d.momentum, low=0.0, high=1.0, high_open=True),
        nesterov=t.boolean("nesterov", d.nesterov),
        weight_decay=t.number("weight_decay", d.weight_decay, low=0.0),
        schedule=t.choice("schedule", SCHEDULES, d.schedule),
        step_epochs=t.integer("step_epochs", d.step_epochs),
        step_gamma=t.number("step_gamma", d.step_gamma, low=0.0, high=1.0, low_open=True),
        loss=t.choice("loss", LOSSES, d.loss),
        metrics=t.str_list("metrics", allowed_metrics, default_metrics),
        seed=t.integer("seed", d.seed, minimum=0),
        mixed_precision=t.choice("mixed_precision", PRECISIONS, d.mixed_precision),
        early_stopping_patience=t.integer("early_stopping_patience", 0, minimum=0),
        strategy=t.choice("strategy", STRATEGIES, d.strategy),
        tensorboard=t.boolean("tensorboard", d.tensorboard))
    compatible = LOSSES_OF[head]
    if cfg.loss not in compatible:
        t.fail("loss", cfg.loss, f"a loss for a {head} head: " + ", ".join(repr(c) for c in compatible))
    if cfg.nesterov and cfg.optimizer != "sgd":
        t.fail("nesterov", True, "false unless optimizer is \"sgd\"")
    t.done()
    return cfg


def spec_from_dict(raw: dict[str, Any], origin: str = "<spec>", path: str | None = None) -> Spec:
    """Validate a spec given as a dict (the parsed TOML).

    Args:
        raw: the spec's tables.
        origin: how errors name the spec (usually its path).
        path: the spec file, if any; relative data paths resolve against its folder.

    Returns:
        The validated :class:`Spec`.

    Raises:
        SpecError: on any missing, unknown or invalid field.
    """
    top = TableReader(raw, "", origin)
    name = top.string("name")
    if not all(c.isalnum() or c in "_-." for c in name):
        top.fail("name", name, "letters, digits, '_', '-' or '.' only")
    description = top.raw("description", "")
    if not isinstance(description, str):
        top.fail("description", description, "a string")
    model = _read_model(top.sub("model"))
    data = _read_data(top.sub("data"))
    train = _read_train(top.sub("train"), model.head)
    top.done()
    return Spec(name=name, description=description, model=model, data=data, train=train,
                path=path)


def load_spec(path: str | os.PathLike[str]) -> Spec:
    """Load and validate a spec file.

    Args:
        path: a ``.toml`` spec, or a shipped spec's name (``"digits_mlp"``).

    Returns:
        The validated :class:`Spec`.

    Raises:
        SpecError: if the file is missing (and no spec ships by that name), not TOML, or invalid.
    """
    path = locate(path, MODELS)
    raw = read_toml(path, "spec", hint=missing_hint(MODELS))
    return spec_from_dict(raw, origin=str(path), path=str(Path(path).resolve()))


def as_spec(spec: Spec | str | os.PathLike[str] | dict[str, Any]) -> Spec:
    """Accept a :class:`Spec`, a path to a spec file, or a dict, and return a Spec."""
    if isinstance(spec, Spec):
        return spec
    if isinstance(spec, dict):
        return spec_from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return load_spec(spec)
    raise SpecError(f"spec: expected a Spec, a path to a .toml file or a dict, "
                    f"got {type(spec).__name__}")


def spec_to_dict(spec: Spec) -> dict[str, Any]:
    """The resolved spec as plain TOML-ready data, with every default filled in."""
    model = asdict(spec.model)
    options = model.pop("options")
    model.update(options)
    if spec.model.head not in OUTPUT_UNITS_HEADS:
        model.pop("output_units")
    model.pop("output_shape", None)
    if spec.model.head in GENERATIVE_HEADS:
        model.pop("num_classes")  # the vocabulary's size, not a key of its own
    if spec.model.source_steps is None:
        model.pop("source_steps")
    if spec.model.head != "seq2seq" and spec.model.family == "rnn":
        model.pop("attention", None)
    if model.get("input") != "tokens":
        model.pop("embedding_dim", None)
    data = asdict(spec.data)
    source = spec.data.source
    if source not in BUILTIN_SOURCES and not Path(source).is_absolute():
        data["source"] = str((spec.base_dir / source).resolve())
    out: dict[str, Any] = {"name": spec.name}
    if spec.description:
        out["description"] = spec.description
    out["data"] = data
    out["model"] = model
    out["train"] = asdict(spec.train)
    return _drop_none(out)


def _drop_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, tuple):
        return list(obj)
    return obj
