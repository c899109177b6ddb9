"""The ``dnnkit`` argument parser: every command, its arguments and their help."""

from __future__ import annotations

import argparse
from typing import Any

from dnnkit import __version__
from dnnkit.cli.commands import (cmd_build, cmd_evaluate, cmd_export, cmd_generate, cmd_optimize, cmd_package,
                                 cmd_recipes, cmd_run, cmd_train, cmd_verify)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _model_options(p: argparse.ArgumentParser, *, data_help: str, data_required: bool = False,
                   manifest: bool = True) -> None:
    """Options every command that loads a model or data shares."""
    p.add_argument("--data", required=data_required, help=data_help)
    p.add_argument("--label-column", metavar="NAME", help="the label column of a .csv --data")
    p.add_argument("--task", choices=("multiclass", "binary", "regression", "tagging", "sequence_regression",
                                      "causal_lm"),
                   help="head type of a bare model file (inferred from its output when omitted)")
    p.add_argument("--unsafe", action="store_true", help="allow Lambda layers (trusted files only)")
    _option(p, "--custom-objects")
    p.add_argument("--json", action="store_true",
                   help="print the manifest instead of the table" if manifest else "print metrics as JSON")
    if manifest:
        _option(p, "--verbose")


_OPTIONS: dict[str, dict[str, Any]] = {
    "--overwrite": dict(action="store_true", help="replace an output folder that holds anything but an earlier "
                                                  "export of the same source (refused otherwise)"),
    "--recipe": dict(help="recipe whose [verify] criteria judge the folder (default: dnnkit's defaults; the "
                          "criteria the folder records are never used)"),
    "--custom-objects": dict(metavar="FILE.py", help="a Python file that defines and registers the model's custom "
                                                     "layers (runs its code: trusted files only)"),
    "--device": dict(metavar="PROFILE", help="a microcontroller budget TFLite artifacts are judged by: a profile "
                                             "(cortex-m4, nano33ble, cortex-m7, esp32-s3, rp2040) or key=value pairs "
                                             "(ram_kb=192,flash_kb=768[,runtime_flash_kb=..,runtime_ram_kb=..]); "
                                             "overrides the recipe's [device]"),
    "--verbose": dict(action="store_true", help="show third-party log lines (TensorFlow, absl, XNNPACK) on the "
                                                "terminal instead of OUT/logs/dnnkit.log"),
}


def _option(p: argparse.ArgumentParser, flag: str) -> None:
    p.add_argument(flag, **_OPTIONS[flag])


def parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(prog="dnnkit", description="From a model spec to a trained Keras 3 "
                                "model and verified SavedModel, TFLite and ONNX artifacts.")
    p.add_argument("--version", action="version", version=f"dnnkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    b = sub.add_parser("build", help="build the model a spec describes; print summary and parameters",
                       description="Build the model a spec describes and print its summary.")
    b.add_argument("spec", help="model spec (TOML), e.g. models/digits_cnn.toml")
    b.set_defaults(func=cmd_build)

    t = sub.add_parser("train", help="train a spec into a run directory",
                       description="Train a spec; re-running the same command resumes a killed run.")
    t.add_argument("spec", help="model spec (TOML)")
    t.add_argument("--out", required=True, help="run directory to write")
    t.add_argument("--strategy", choices=("auto", "default", "mirrored", "multi_worker", "tpu"),
                   help="tf.distribute strategy (default: the spec's train.strategy)")
    t.add_argument("--epochs", type=_positive, help="override train.epochs")
    t.add_argument("--cpu-devices", type=_positive,
                   help="split the CPU into N logical devices (tf.distribute without GPUs)")
    t.add_argument("--data", help='override data.source ("digits", .npz, .csv or an image folder)')
    t.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="score a run directory or .keras model on data",
                       description="Score a run directory or a .keras model on a data split.")
    e.add_argument("target", help="run directory or MODEL.keras")
    e.add_argument("--split", choices=("train", "val", "test"), default="test")
    _model_options(e, data_help='"digits", .npz, .csv or an image folder (default: the run\'s own data)', manifest=False)
    e.set_defaults(func=cmd_evaluate)

    r = sub.add_parser("run", help="the main job: train, export every artifact, verify, report",
                       description="Train a spec, export every artifact of a recipe, verify each in "
                                   "its runtime and print the table. With no arguments: the digits "
                                   "CNN and export/all.toml into runs/digits_cnn-all.")
    r.add_argument("spec", nargs="?", help="model spec (default: models/digits_cnn.toml)")
    r.add_argument("--recipe", help="export recipe: a file or a shipped name (`dnnkit recipes`; default: all)")
    r.add_argument("--out", help="output folder (default: runs/<spec>-<recipe>)")
    r.add_argument("--epochs", type=_positive, help="override train.epochs")
    _option(r, "--device")
    _option(r, "--overwrite")
    r.add_argument("--json", action="store_true", help="print the manifest instead of the table")
    _option(r, "--verbose")
    r.set_defaults(func=cmd_run)

    x = sub.add_parser("export", help="export and verify a model of your own",
                       description="Convert a Keras 3 .keras model, a tf_keras .h5 model or a TensorFlow "
                                   "SavedModel folder into a recipe's artifacts and verify each against the "
                                   "model (run in its own runtime) on --data.")
    x.add_argument("model", help="MODEL.keras, a tf_keras MODEL.h5 or a SavedModel folder")
    x.add_argument("--recipe", required=True, help="export recipe: a TOML file or a shipped name (`dnnkit recipes`)")
    x.add_argument("--out", required=True, help="output folder")
    _option(x, "--device")
    _option(x, "--overwrite")
    _model_options(x, data_help='"digits", .npz, .csv or an image folder to verify on', data_required=True)
    x.set_defaults(func=cmd_export)

    c = sub.add_parser("compress", help="run a recipe's compression passes, then export and verify",
                       description="Prune / distil a trained model as the recipe's [[passes]] say, "
                                   "check its goals, then export and verify every artifact.")
    c.add_argument("model", metavar="target", help="run directory, MODEL.keras or a tf_keras MODEL.h5")
    c.add_argument("--recipe", required=True, help="recipe with [[passes]] and [[artifacts]]")
    c.add_argument("--out", required=True, help="output folder")
    _option(c, "--device")
    _option(c, "--overwrite")
    _model_options(c, data_help='"digits", .npz, .csv or an image folder (default: the run\'s own data)')
    c.set_defaults(func=cmd_export)

    o = sub.add_parser("optimize", help="the smallest (or fastest) verified artifact that meets a goal",
                       description="Convert a model into every candidate (fp32, fp16, dynamic-range int8, full "
                                   "int8 with a selective float fallback, TFLite 16x8), verify each, print the "
                                   "Pareto front of degradation, size and latency, and keep the best candidate "
                                   "that meets every goal. Exit 1 with the closest candidates when none does.")
    o.add_argument("model", metavar="target", help="run directory, MODEL.keras, a tf_keras MODEL.h5 or a "
                                                   "SavedModel folder")
    o.add_argument("--target", dest="runtime", metavar="RUNTIME",
                   help="tflite, onnx or both (default: both, or the recipe's [optimize] target)")
    o.add_argument("--max-degradation", metavar="X",
                   help="most the metric may drop: accuracy points as a fraction, RMSE ratio - 1 (default 0.01)")
    o.add_argument("--max-size-kb", metavar="N", help="largest file size in KiB")
    o.add_argument("--max-latency-ms", metavar="N", help="slowest batch-1 latency (p50, this machine) in ms")
    o.add_argument("--objective", help="smallest (default) or fastest, among candidates meeting every goal")
    o.add_argument("--max-arena-kb", metavar="N", help="largest tensor arena of a TFLite candidate in KiB (TFLite "
                                                       "Micro's measured arena where it ran, else the estimate)")
    _option(o, "--device")
    o.add_argument("--recipe", help="recipe with an [optimize] table of goals, [verify] settings and [[passes]] "
                                    "whose compressed model gives more candidates (its [[artifacts]] are not used)")
    o.add_argument("--out", required=True, help="output folder")
    _option(o, "--overwrite")
    _model_options(o, data_help='"digits", .npz, .csv or an image folder (default: the run\'s own data)')
    o.set_defaults(func=cmd_optimize)

    k = sub.add_parser("package", help="lay out a verified artifact for Triton, TF Serving or a TFLite Micro "
                                       "firmware, verified again there",
                       description="Copy a verified artifact of an export folder into a model server's layout: a "
                                   "Triton model repository (config.pbtxt, labels.txt, VERSION/model.onnx) or a TF "
                                   "Serving base folder (MODEL/VERSION/ SavedModel); or write a TFLite artifact as "
                                   "the C source a TFLite Micro firmware compiles (model_data.h/.cc with the arena "
                                   "size, I/O quantization and labels, micro_op_resolver.h), its array compiled and "
                                   "read back; run it there against the reference model again; record it in the "
                                   "manifest under 'package'.")
    k.add_argument("out_dir", help="folder written by dnnkit run/export/compress/optimize")
    k.add_argument("--layout", action="append", choices=["triton", "tf-serving", "tflm"], required=True,
                   help="triton (an ONNX artifact), tf-serving (the SavedModel) or tflm (a TFLite artifact as C "
                        "source); repeat for several")
    k.add_argument("--dest", help="repository / base folder (DEST/LAYOUT for several layouts; default "
                                  "OUT/serving/LAYOUT, OUT/firmware/tflm)")
    k.add_argument("--model-name", help="the model's folder name (default: the spec or model name)")
    k.add_argument("--version", type=_positive, default=1, help="version folder (default 1)")
    k.add_argument("--max-batch-size", type=int, default=8,
                   help="Triton max_batch_size for a dynamic-batch model (default 8; 0 turns batching off)")
    k.add_argument("--artifact", help="which ONNX artifact for triton, or TFLite artifact for tflm (default: "
                                      "optimize's choice, else the first verified one; for tflm one that ran in "
                                      "TFLite Micro first)")
    _option(k, "--recipe")
    k.add_argument("--unsafe", action="store_true", help="allow Lambda layers (trusted files only)")
    _option(k, "--custom-objects")
    k.add_argument("--json", action="store_true", help="print the manifest instead of the table")
    _option(k, "--verbose")
    k.set_defaults(func=cmd_package)

    rs = sub.add_parser("recipes", help="list the recipes that ship with dnnkit (use one as --recipe NAME)",
                        description="List the export recipes that ship inside the package, with what each makes.")
    rs.set_defaults(func=cmd_recipes)

    g = sub.add_parser("generate", help="generate tokens after a prompt with a verified step artifact",
                       description="Greedy generation from a causal_lm export folder: the prompt prefilled, then one "
                                   "token per decode call of a verified step artifact, run in its own runtime "
                                   "(LiteRT, onnxruntime, TensorFlow), until the end token or --max-new tokens.")
    g.add_argument("out_dir", help="folder written by dnnkit run/export for a causal_lm model")
    prompt = g.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="token ids, separated by spaces or commas (e.g. \"4 2 5 13\")")
    prompt.add_argument("--text", help="the prompt as text, split into the model's vocabulary (e.g. \"314=\")")
    g.add_argument("--artifact", help="which step artifact (default: decoder_tflite_fp32, else the first verified)")
    g.add_argument("--max-new", type=_positive, help="most tokens generated (default: the cache's room)")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    _option(g, "--verbose")
    g.set_defaults(func=cmd_generate)

    v = sub.add_parser("verify", help="re-verify an export folder (checksums and parity)",
                       description="Run every artifact of an export folder in its runtime again "
                                   "and check it against the reference model.")
    v.add_argument("out_dir", help="folder written by dnnkit run/export")
    _option(v, "--recipe")
    v.add_argument("--unsafe", action="store_true", help="allow Lambda layers (trusted files only)")
    _option(v, "--custom-objects")
    v.add_argument("--json", action="store_true", help="print the manifest instead of the table")
    _option(v, "--verbose")
    v.set_defaults(func=cmd_verify)
    return p
