"""The ``dnnkit`` command line: thin argument parsing over the Python API.

Exit codes: 0 ok, 1 a check or run failed, 2 bad input (one line on stderr, no traceback).
Nothing heavy is imported until a subcommand runs, so ``dnnkit --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Callable, Sequence

from dnnkit import __version__
from dnnkit.core.quiet import quiet_tensorflow as _quiet_tensorflow
from dnnkit.errors import DnnkitError


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# Each command imports what it runs when it runs (the stages import NumPy, the jobs start TensorFlow workers):
# ``dnnkit --help`` imports argparse only.
def cmd_build(args: argparse.Namespace) -> int:
    from dnnkit.config.model import load_spec

    spec = load_spec(args.spec)
    _quiet_tensorflow()
    from dnnkit.builders import build

    model = build(spec)
    model.summary(print_fn=lambda line, *a, **k: print(line))
    print(f"model: {model.name}  family: {spec.model.family}  parameters: {model.count_params()}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from dnnkit.config.model import load_spec

    spec = load_spec(args.spec)
    _quiet_tensorflow()
    from dnnkit.training.run import train

    run = train(spec, args.out, strategy=args.strategy, epochs=args.epochs,
                cpu_devices=args.cpu_devices, data=args.data, verbose=0 if args.quiet else 2)
    if run.resumed_from_epoch:
        print(f"resumed from epoch {run.resumed_from_epoch} (BackupAndRestore)")
    print(f"trained {spec.name} with strategy {run.strategy} ({run.replicas} replicas) "
          f"in {run.train_seconds:.1f} s -> {run.out_dir}")
    print("test " + "  ".join(f"{k}={v:.4f}" for k, v in run.metrics.items()))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    _quiet_tensorflow()
    from dnnkit.jobs.evaluate import evaluate

    metrics = evaluate(args.target, args.data, split=args.split, task=args.task, unsafe=args.unsafe,
                       label_column=args.label_column)
    if args.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
    else:
        print(f"{args.split} " + "  ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


def _print_result(manifest: dict, args: argparse.Namespace, out: Any) -> int:
    """The manifest (``--json``) or its table, and the exit code its status gives."""
    from pathlib import Path

    from dnnkit.manifest.table import table

    if args.json:
        print(json.dumps(manifest, indent=2))
    else:
        print(table(manifest))
        where = Path(out)
        print(f"output: {where}  manifest: {where / 'manifest.json'}  logs: {where / 'logs'}")
    return 0 if manifest["status"] == "verified" else 1


def cmd_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dnnkit.jobs.run import DEFAULT_RECIPE, DEFAULT_SPEC, default_path, run
    from dnnkit.config.model import load_spec
    from dnnkit.config.recipe import load_recipe

    spec = load_spec(args.spec or default_path(DEFAULT_SPEC))
    recipe = load_recipe(args.recipe or default_path(DEFAULT_RECIPE))
    args.out_folder = Path(args.out) if args.out else Path("runs") / f"{spec.name}-{recipe.name}"
    _quiet_tensorflow()
    manifest = run(spec, recipe, args.out_folder, verbose=True, epochs=args.epochs, overwrite=args.overwrite)
    return _print_result(manifest, args, args.out_folder)


def cmd_export(args: argparse.Namespace) -> int:
    """``export`` and ``compress``: a model (and the recipe's passes, if any) into verified artifacts."""
    from dnnkit.jobs.compress import compress
    from dnnkit.jobs.export import export
    from dnnkit.config.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    args.out_folder = args.out
    _quiet_tensorflow()
    convert = compress if args.command == "compress" else export
    manifest = convert(args.model, recipe, args.out, data=args.data, task=args.task, unsafe=args.unsafe,
                       verbose=True, overwrite=args.overwrite, label_column=args.label_column)
    return _print_result(manifest, args, args.out)


def cmd_optimize(args: argparse.Namespace) -> int:
    """``optimize``: goals from the recipe's [optimize] table, overridden by the flags."""
    from dnnkit.jobs.optimize import optimize
    from dnnkit.config.goals import goals_from
    from dnnkit.config.recipe import load_recipe

    recipe = load_recipe(args.recipe) if args.recipe else None
    goals = goals_from({"target": args.runtime, "max_degradation": args.max_degradation,
                        "max_size_kb": args.max_size_kb, "max_latency_ms": args.max_latency_ms,
                        "objective": args.objective}, base=recipe.optimize if recipe else None,
                       origin="dnnkit optimize")
    args.out_folder = args.out
    _quiet_tensorflow()
    manifest = optimize(args.model, args.out, goals=goals, recipe=recipe, data=args.data, task=args.task,
                        unsafe=args.unsafe, verbose=True, overwrite=args.overwrite, label_column=args.label_column)
    return _print_result(manifest, args, args.out)


def _criteria(args: argparse.Namespace) -> Any:
    """The recipe ``--recipe`` names (its [verify] criteria judge), or ``None`` for the defaults."""
    from dnnkit.config.recipe import load_recipe

    return load_recipe(args.recipe) if args.recipe else None


def cmd_verify(args: argparse.Namespace) -> int:
    recipe = _criteria(args)
    _quiet_tensorflow()
    from dnnkit.jobs.reverify import verify_dir

    args.out_folder = args.out_dir
    manifest = verify_dir(args.out_dir, recipe=recipe, unsafe=args.unsafe, verbose=not args.json)
    return _print_result(manifest, args, args.out_dir)


def cmd_package(args: argparse.Namespace) -> int:
    """``package``: serving layouts of a verified artifact, verified again where they lie."""
    recipe = _criteria(args)
    _quiet_tensorflow()
    from dnnkit.jobs.package import package

    args.out_folder = args.out_dir
    manifest = package(args.out_dir, args.layout, dest=args.dest, model_name=args.model_name, version=args.version,
                       max_batch_size=args.max_batch_size, artifact=args.artifact, unsafe=args.unsafe,
                       recipe=recipe)
    return _print_result(manifest, args, args.out_dir)


def cmd_recipes(args: argparse.Namespace) -> int:
    """``recipes``: the recipes that ship with dnnkit, by name."""
    from dnnkit.config.shipped import RECIPES, describe

    rows = describe(RECIPES)
    width = max(len(name) for name, _ in rows)
    for name, text in rows:
        print(f"{name:<{width}}  {text}")
    print(f"use one as --recipe NAME (files in {RECIPES}), or give a recipe file of your own")
    return 0


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
    _option(x, "--overwrite")
    _model_options(x, data_help='"digits", .npz, .csv or an image folder to verify on', data_required=True)
    x.set_defaults(func=cmd_export)

    c = sub.add_parser("compress", help="run a recipe's compression passes, then export and verify",
                       description="Prune / distil a trained model as the recipe's [[passes]] say, "
                                   "check its goals, then export and verify every artifact.")
    c.add_argument("model", metavar="target", help="run directory, MODEL.keras or a tf_keras MODEL.h5")
    c.add_argument("--recipe", required=True, help="recipe with [[passes]] and [[artifacts]]")
    c.add_argument("--out", required=True, help="output folder")
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
    o.add_argument("--recipe", help="recipe with an [optimize] table of goals, [verify] settings and [[passes]] "
                                    "whose compressed model gives more candidates (its [[artifacts]] are not used)")
    o.add_argument("--out", required=True, help="output folder")
    _option(o, "--overwrite")
    _model_options(o, data_help='"digits", .npz, .csv or an image folder (default: the run\'s own data)')
    o.set_defaults(func=cmd_optimize)

    k = sub.add_parser("package", help="lay out a verified artifact for Triton or TF Serving, verified again there",
                       description="Copy a verified artifact of an export folder into a model server's layout: a "
                                   "Triton model repository (config.pbtxt, labels.txt, VERSION/model.onnx) or a TF "
                                   "Serving base folder (MODEL/VERSION/ SavedModel); run it there against the "
                                   "reference model again; record it in the manifest under 'package'.")
    k.add_argument("out_dir", help="folder written by dnnkit run/export/compress/optimize")
    k.add_argument("--layout", action="append", choices=["triton", "tf-serving"], required=True,
                   help="triton (an ONNX artifact) or tf-serving (the SavedModel); repeat for both")
    k.add_argument("--dest", help="repository / base folder (DEST/LAYOUT for several layouts; default "
                                  "OUT/serving/LAYOUT)")
    k.add_argument("--model-name", help="the model's folder name (default: the spec or model name)")
    k.add_argument("--version", type=_positive, default=1, help="version folder (default 1)")
    k.add_argument("--max-batch-size", type=int, default=8,
                   help="Triton max_batch_size for a dynamic-batch model (default 8; 0 turns batching off)")
    k.add_argument("--artifact", help="which ONNX artifact for triton (default: optimize's choice, else the first "
                                      "verified one)")
    _option(k, "--recipe")
    k.add_argument("--unsafe", action="store_true", help="allow Lambda layers (trusted files only)")
    _option(k, "--custom-objects")
    k.add_argument("--json", action="store_true", help="print the manifest instead of the table")
    _option(k, "--verbose")
    k.set_defaults(func=cmd_package)

    rs = sub.add_parser("recipes", help="list the recipes that ship with dnnkit (use one as --recipe NAME)",
                        description="List the export recipes that ship inside the package, with what each makes.")
    rs.set_defaults(func=cmd_recipes)

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code."""
    from dnnkit.core.faults import UNPUBLISHED, Terminated, crash_line, end_on_sigterm, filesystem_error
    from dnnkit.core.quiet import ThirdPartyLog

    args = parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    capture = ThirdPartyLog(enabled=hasattr(args, "verbose") and not args.verbose)
    end_on_sigterm()
    code, crash = 1, None
    with capture:
        try:
            if hasattr(args, "verbose") and not getattr(args, "json", False):  # a line per item, with its time
                from dnnkit.child import items

                items.PROGRESS = items.print_progress
            if getattr(args, "custom_objects", None):
                from dnnkit.sources.keras_file import use_custom_objects

                use_custom_objects(args.custom_objects)
            code = func(args)
        except DnnkitError as exc:
            print(f"dnnkit: error: {exc}", file=capture.terminal, flush=True)
            code = exc.exit_code
        except KeyboardInterrupt:
            print(f"dnnkit: interrupted; {UNPUBLISHED}", file=capture.terminal, flush=True)
            code = 130
        except Terminated:
            print(f"dnnkit: terminated (SIGTERM); {UNPUBLISHED}", file=capture.terminal, flush=True)
            code = 143
        except Exception as exc:  # noqa: BLE001 - last line of defence for a one-line report
            if os.environ.get("DNNKIT_DEBUG"):
                raise
            crash = exc
    out = getattr(args, "out_folder", None)
    if crash is None:
        _keep_log(capture, out if code not in (2, 130, 143) else None)
        return code
    log = _keep_log(capture, None if filesystem_error(crash) is not None else out)
    print(crash_line(crash, log), file=capture.terminal, flush=True)
    return 1


def _keep_log(capture: Any, out: Any) -> Any:
    """The captured third-party log appended to ``OUT/logs/dnnkit.log`` (``None`` where it cannot be)."""
    try:
        return capture.keep_in(out)
    except OSError:
        return None


def entry() -> Any:
    """Console-script entry point. The process ends without Python's teardown, which after a run
    spends over a second freeing TensorFlow's modules (everything dnnkit writes is closed by then)."""
    code = main()
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
