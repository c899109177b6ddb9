"""Export recipes: which artifacts to write, their options, and the verification tolerances.

A recipe (``export/*.toml``) is validated like a spec: one-line errors naming the file, the
field, the value and what was expected; unknown keys are errors. Example::

    name = "edge-int8"
    [verify]
    min_agreement = 0.98
    [[artifacts]]
    name = "tflite_int8"
    format = "tflite"
    precision = "int8"
    samples = 1000
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnnkit.core.generation import DEFAULT_STEP_ARTIFACTS, STEP_ARTIFACTS
from dnnkit.errors import SpecError
from dnnkit.core.heads import is_value
from dnnkit.config.goals import Goals, read_goals
from dnnkit.config.device import Device, read_device
from dnnkit.config.package import read_package
from dnnkit.config.passes import PassConfig, read_pass
from dnnkit.config.shipped import RECIPES, locate, missing_hint
from dnnkit.config.tables import TableReader
from dnnkit.config.toml import read_toml

FORMATS = ("saved_model", "tflite", "onnx")


PRECISIONS = {"saved_model": ("fp32",), "tflite": ("fp32", "fp16", "dynamic_int8", "int8", "int16x8"),
              "onnx": ("fp32", "int8")}


ACTIVATIONS = ("int8", "int16")  # an int8 artifact's activation type (its weights stay int8)
CALIBRATIONS = ("minmax", "percentile", "entropy")  # onnxruntime's CalibrationMethod, by name


_LADDER_DEFAULTS = {"activations": "int8", "graph_prep": False, "calibration": "minmax", "bias_correction": False,
                    "equalization": False}


class RecipeError(SpecError):
    """A recipe is missing, malformed or inconsistent."""


MAX_LATENCY_RUNS = 10_000  # timed runs per artifact: a million would take hours on a large model


@dataclass(frozen=True)
class VerifyConfig:
    """Tolerances and measurement settings shared by every artifact of a recipe.

    Float artifacts pass when ``|a - r| <= atol + max(rtol * max|r|, C)`` for every output
    element; for fp16 artifacts ``C = fp16_factor x`` the output error of the model's weights
    rounded to fp16 (fp32 compute), 0 otherwise (``benchmarks/tolerance_study.py`` measures the
    figures behind the defaults). ``max_inputs`` caps how many inputs (labelled test split
    first, then train and validation) each artifact is run on; ``accept_inconclusive`` lets
    a verdict the data cannot decide count as passed. ``min_sqnr_db`` judges quantized
    artifacts' unlabelled feature outputs (hidden states of a backbone): 20 dB is a noise RMS of
    one tenth of the signal's.
    """

    atol_fp32: float = 1e-4
    rtol_fp32: float = 1e-4
    atol_fp16: float = 1e-3
    rtol_fp16: float = 2e-3
    fp16_factor: float = 8.0
    min_agreement: float = 0.98
    max_degradation: float = 0.01
    min_sqnr_db: float = 20.0
    accept_inconclusive: bool = False
    max_inputs: int = 10000
    second_batch: int = 7
    latency_runs: int = 100
    warmup_runs: int = 10
    timeout_s: float = 300.0


@dataclass(frozen=True)
class ArtifactConfig:
    """One artifact to produce and verify.

    Tolerance fields left as ``None`` take the recipe's ``[verify]`` value. For int8 artifacts,
    ``float_layers`` names the layers kept in float (TFLite: output tensor names, the
    converter's ``denylisted_nodes``; ONNX: node names, onnxruntime's ``nodes_to_exclude``);
    ``selective_fallback`` lets dnnkit search when the all-int8 artifact fails its value checks:
    first the quantization ladder (:mod:`dnnkit.jobs.ladder`: ``graph_prep``, ``calibration``,
    ``activations``), then layers kept float (:mod:`dnnkit.jobs.fallback`). ``activations``
    ``int16`` keeps int8 weights with int16 activations (TFLite's 16x8 kernels, float I/O; ONNX
    int16 QDQ with 8-bit weights); ``graph_prep`` runs onnxruntime's ``quant_pre_process``
    first; ``calibration`` is onnxruntime's range method (``minmax``, ``percentile``, ``entropy``);
    ``bias_correction`` converts a copy of the model whose biases absorb the mean error of its rounded
    weights (:mod:`dnnkit.passes.bias_correction`); ``equalization`` converts a copy whose channel ranges
    are equalized across layers joined by ReLU or identity (:mod:`dnnkit.passes.equalization`).
    ``candidates`` is how many artifacts this one was chosen
    from (set by the fallback, not read from recipes): its verdicts are then taken at confidence
    ``1 - 0.05 / candidates`` (:func:`dnnkit.verification.criteria.z_for`).
    """

    name: str
    format: str
    precision: str = "fp32"
    io: str = "float"
    samples: int | None = None  # calibration inputs; None: with_samples() sets the default for the heads
    static_batch: int | None = None
    allow_flex: bool = False
    float_fallback: bool = False
    unroll_recurrent: bool = False
    opset: int = 17
    external_data: str = "auto"
    selective_fallback: bool = False
    float_layers: tuple[str, ...] = ()
    activations: str = "int8"
    graph_prep: bool = False
    calibration: str = "minmax"
    bias_correction: bool = False
    equalization: bool = False
    candidates: int = 1
    atol: float | None = None
    rtol: float | None = None
    min_agreement: float | None = None
    max_degradation: float | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "float_layers", tuple(self.float_layers))  # a list when read from JSON

    @property
    def quantized(self) -> bool:
        return self.precision in ("dynamic_int8", "int8", "int16x8")

    @property
    def full_integer(self) -> bool:
        """Calibrated full-integer quantization (TFLite int8 or 16x8, ONNX int8)."""
        return self.precision in ("int8", "int16x8")

    @property
    def filename(self) -> str:
        return {"saved_model": self.name, "tflite": f"{self.name}.tflite",
                "onnx": f"{self.name}.onnx"}[self.format]

    def to_dict(self) -> dict[str, Any]:
        """The fields as the manifest's ``options`` record them: ``None`` left out, and the ladder's levers
        (``activations``, ``graph_prep``, ``calibration``, ``bias_correction``, ``equalization``) only where
        they differ from the default."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
                if v is not None and not (k in _LADDER_DEFAULTS and v == _LADDER_DEFAULTS[k])}


@dataclass(frozen=True)
class Recipe:
    """A whole, validated recipe: compression passes (in order), artifacts, tolerances, goals.

    ``goal_degradation`` (``[goals] max_degradation``) is the most the task metric may drop from the
    incoming model, checked after each pass and for every artifact at the end; ``None``
    means no goal.
    """

    name: str
    artifacts: tuple[ArtifactConfig, ...]
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    description: str = ""
    path: str | None = None
    passes: tuple[PassConfig, ...] = ()
    goal_degradation: float | None = None
    optimize: Goals | None = None  # an [optimize] table's goals (dnnkit optimize)
    package: dict[str, Any] | None = None  # a [package] table: serving layouts (dnnkit.config.package.read_package)
    generation: tuple[str, ...] = DEFAULT_STEP_ARTIFACTS  # a [generation] table's step files (a generative model's)
    device: Device | None = None  # a [device] table: the microcontroller budget TFLite artifacts are judged by

    @property
    def base_dir(self) -> Path:
        return Path(self.path).parent if self.path else Path.cwd()

    def atol(self, art: ArtifactConfig) -> float:
        if art.atol is not None:
            return art.atol
        return self.verify.atol_fp16 if art.precision == "fp16" else self.verify.atol_fp32

    def rtol(self, art: ArtifactConfig) -> float:
        if art.rtol is not None:
            return art.rtol
        return self.verify.rtol_fp16 if art.precision == "fp16" else self.verify.rtol_fp32

    def min_agreement(self, art: ArtifactConfig) -> float:
        return self.verify.min_agreement if art.min_agreement is None else art.min_agreement

    def max_degradation(self, art: ArtifactConfig) -> float:
        return self.verify.max_degradation if art.max_degradation is None else art.max_degradation

    def timeout(self, art: ArtifactConfig) -> float:
        return self.verify.timeout_s if art.timeout_s is None else art.timeout_s


# min/max calibration: each tensor's range is what the calibration inputs reached, and a new input
# falls outside it with probability ~2/(n+1) and is clipped. A clipped class score keeps its rank;
# a clipped value (regression, features) is simply wrong: the byo GRU regressor's RMSE ratio was
# 1.0147 with 100 inputs, 1.0013 with 1000. More inputs widen the ranges and coarsen the steps
# instead: MobileNetV2's TFLite int8 agreement 0.9800 with 1000, ConvNeXtTiny's ONNX int8 fallback
# no longer verified. So by default classifiers calibrate on 100 inputs, models with a value output
# on 1000 (``samples`` in a recipe overrides both).
CALIBRATION_SAMPLES = {"classes": 100, "values": 1000}


def with_samples(recipe: "Recipe", heads: list[str]) -> "Recipe":
    """``recipe`` with every quantized artifact's ``samples`` set: as the recipe says, or the default
    for the model's outputs (:data:`CALIBRATION_SAMPLES`; the manifest records the count used)."""
    values = any(is_value(h) or h == "features" for h in heads)
    auto = CALIBRATION_SAMPLES["values" if values else "classes"]
    return dataclasses.replace(recipe, artifacts=tuple(
        dataclasses.replace(a, samples=auto) if a.samples is None and a.quantized else a for a in recipe.artifacts))


def _read_artifact(t: TableReader) -> ArtifactConfig:
    name = t.string("name")
    if not all(c.isalnum() or c in "_-" for c in name):
        t.fail("name", name, "letters, digits, '_' or '-' only (it becomes a file name)")
    fmt = t.choice("format", FORMATS)
    precision = t.choice("precision", PRECISIONS[fmt], "fp32")
    tflite, int8, full = fmt == "tflite", precision == "int8", precision in ("int8", "int16x8")
    art = ArtifactConfig(
        name=name, format=fmt, precision=precision,
        io=t.choice("io", ("float", "int8"), "float") if tflite and int8 else "float",
        samples=t.integer("samples", None) if full else None,
        static_batch=t.integer("static_batch", None) if tflite else None,
        allow_flex=t.boolean("allow_flex", False) if tflite else False,
        float_fallback=t.boolean("float_fallback", False) if tflite and full else False,
        unroll_recurrent=t.boolean("unroll_recurrent", False) if tflite and full else False,
        opset=t.integer("opset", 17, minimum=13) if fmt == "onnx" else 17,
        external_data=t.choice("external_data", ("auto", "always", "never"), "auto") if fmt == "onnx" else "auto",
        selective_fallback=t.boolean("selective_fallback", False) if int8 else False,
        float_layers=_names(t, "float_layers") if int8 else (),
        activations=t.choice("activations", ACTIVATIONS, "int8") if int8 else "int8",
        graph_prep=t.boolean("graph_prep", False) if int8 and fmt == "onnx" else False,
        calibration=t.choice("calibration", CALIBRATIONS, "minmax") if int8 and fmt == "onnx" else "minmax",
        bias_correction=t.boolean("bias_correction", False) if int8 else False,
        equalization=t.boolean("equalization", False) if int8 else False,
        atol=t.number("atol", None, low=0.0, low_open=True),
        rtol=t.number("rtol", None, low=0.0),
        min_agreement=t.number("min_agreement", None, low=0.0, high=1.0),
        max_degradation=t.fraction("max_degradation", None),
        timeout_s=t.number("timeout_s", None, low=0.0, low_open=True))
    t.done()
    if art.activations == "int16" and art.io == "int8":
        t.fail("io", art.io, "'float' with activations = 'int16' (TFLite's 16x8 kernels take float or int16 I/O)")
    return art


def _names(t: TableReader, key: str) -> tuple[str, ...]:
    value = t.raw(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        t.fail(key, value, "a list of layer names (non-empty strings)")
    return tuple(value)


def recipe_from_dict(raw: dict[str, Any], origin: str = "<recipe>", path: str | None = None) -> Recipe:
    """Validate a recipe given as a dict (parsed TOML).

    Raises:
        RecipeError: on any missing, unknown or invalid field.
    """
    try:
        top = TableReader(raw, "", origin)
        name = top.string("name")
        description = top.raw("description", "")
        if not isinstance(description, str):
            top.fail("description", description, "a string")
        v = top.sub("verify")
        d = VerifyConfig()
        verify = VerifyConfig(
            atol_fp32=v.number("atol_fp32", d.atol_fp32, low=0.0, low_open=True),
            rtol_fp32=v.number("rtol_fp32", d.rtol_fp32, low=0.0),
            atol_fp16=v.number("atol_fp16", d.atol_fp16, low=0.0, low_open=True),
            rtol_fp16=v.number("rtol_fp16", d.rtol_fp16, low=0.0),
            fp16_factor=v.number("fp16_factor", d.fp16_factor, low=0.0),
            min_agreement=v.number("min_agreement", d.min_agreement, low=0.0, high=1.0),
            max_degradation=v.fraction("max_degradation", d.max_degradation),
            min_sqnr_db=v.number("min_sqnr_db", d.min_sqnr_db, low=0.0),
            accept_inconclusive=v.boolean("accept_inconclusive", d.accept_inconclusive),
            max_inputs=v.integer("max_inputs", d.max_inputs),
            second_batch=v.integer("second_batch", d.second_batch, minimum=2),
            latency_runs=v.integer("latency_runs", d.latency_runs, maximum=MAX_LATENCY_RUNS),
            warmup_runs=v.integer("warmup_runs", d.warmup_runs, minimum=0),
            timeout_s=v.number("timeout_s", d.timeout_s, low=0.0, low_open=True))
        v.done()
        g = top.sub("goals")
        max_degradation = g.fraction("max_degradation", None)
        g.done()
        raw_passes = top.raw("passes", [])
        if not isinstance(raw_passes, list):
            top.fail("passes", raw_passes, "an array of [[passes]] tables")
        passes = tuple(read_pass(TableReader(p, f"passes[{i}]", origin)) for i, p in enumerate(raw_passes))
        optimize = None
        if top.has("optimize"):
            optimize = read_goals(top.sub("optimize"))
        package = None
        if top.has("package"):
            package = read_package(top.sub("package"))
        device = read_device(top.sub("device")) if top.has("device") else None
        generation = DEFAULT_STEP_ARTIFACTS
        if top.has("generation"):
            gen = top.sub("generation")
            generation = gen.str_list("artifacts", tuple(STEP_ARTIFACTS), DEFAULT_STEP_ARTIFACTS)
            if not generation:
                gen.fail("artifacts", [], "at least one step file (or no [generation] table)")
            gen.done()
        raw_arts = top.raw("artifacts", None if optimize is None else [])
        if not isinstance(raw_arts, list) or (not raw_arts and optimize is None):
            top.fail("artifacts", raw_arts if raw_arts is not None else "nothing",
                     "a non-empty array of [[artifacts]] tables (or an [optimize] table)")
        artifacts = tuple(_read_artifact(TableReader(a, f"artifacts[{i}]", origin))
                          for i, a in enumerate(raw_arts))
        seen: set[str] = set()
        for i, art in enumerate(artifacts):
            if art.name in seen:
                top.fail_at(f"artifacts[{i}].name", art.name, "a name not used by another artifact")
            seen.add(art.name)
        top.done()
    except SpecError as exc:
        if isinstance(exc, RecipeError):
            raise
        raise RecipeError(str(exc)) from None
    return Recipe(name=name, description=description, artifacts=artifacts, verify=verify, path=path,
                  passes=passes, goal_degradation=max_degradation, optimize=optimize, package=package,
                  generation=tuple(generation), device=device)


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Load and validate a recipe file, or a shipped recipe by name (``"mobile"``; ``dnnkit recipes`` lists
    them).

    Raises:
        RecipeError: if the file is missing (and no recipe ships by that name), not TOML, or invalid.
    """
    path = locate(path, RECIPES)
    raw = read_toml(path, "recipe", RecipeError, hint=missing_hint(RECIPES))
    return recipe_from_dict(raw, origin=str(path), path=str(Path(path).resolve()))


def as_recipe(recipe: Recipe | str | os.PathLike[str]) -> Recipe:
    """A :class:`Recipe`, or the recipe file at that path loaded (:func:`load_recipe`)."""
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def require_artifacts(recipe: Recipe) -> Recipe:
    """``recipe``, which must list artifacts to be exported (``optimize`` makes its own).

    Raises:
        RecipeError: for a recipe with only an ``[optimize]`` table.
    """
    if not recipe.artifacts:
        raise RecipeError(f"{recipe.path or recipe.name}: artifacts: expected a non-empty array of [[artifacts]] "
                          f"tables, got nothing (a recipe with only [optimize] is for `dnnkit optimize`)")
    return recipe
