"""The ``dnnkit`` commands, one function each: arguments in, one library function called, a table or a line
printed, an exit code returned (0 ok, 1 a check or run failed).

Each command imports what it runs when it runs (the stages import NumPy, the jobs start TensorFlow workers):
``dnnkit --help`` imports argparse only.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from dnnkit.core.quiet import quiet_tensorflow as _quiet_tensorflow


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
    recipe = _with_device(load_recipe(args.recipe or default_path(DEFAULT_RECIPE)), args.device)
    args.out_folder = Path(args.out) if args.out else Path("runs") / f"{spec.name}-{recipe.name}"
    _quiet_tensorflow()
    manifest = run(spec, recipe, args.out_folder, verbose=True, epochs=args.epochs, overwrite=args.overwrite)
    return _print_result(manifest, args, args.out_folder)


def cmd_export(args: argparse.Namespace) -> int:
    """``export`` and ``compress``: a model (and the recipe's passes, if any) into verified artifacts."""
    from dnnkit.jobs.compress import compress
    from dnnkit.jobs.export import export
    from dnnkit.config.recipe import load_recipe

    recipe = _with_device(load_recipe(args.recipe), args.device)
    args.out_folder = args.out
    _quiet_tensorflow()
    convert = compress if args.command == "compress" else export
    manifest = convert(args.model, recipe, args.out, data=args.data, task=args.task, unsafe=args.unsafe,
                       verbose=True, overwrite=args.overwrite, label_column=args.label_column)
    return _print_result(manifest, args, args.out)


def _with_device(recipe: Any, device: str | None) -> Any:
    """The recipe with ``--device``'s budget in place of its ``[device]`` table (as it is without the flag)."""
    if device is None:
        return recipe
    from dataclasses import replace

    from dnnkit.config.device import device_from

    return replace(recipe, device=device_from(device))


def cmd_optimize(args: argparse.Namespace) -> int:
    """``optimize``: goals from the recipe's [optimize] table, overridden by the flags."""
    from dnnkit.jobs.optimize import optimize
    from dnnkit.config.goals import goals_from
    from dnnkit.config.recipe import load_recipe

    recipe = load_recipe(args.recipe) if args.recipe else None
    goals = goals_from({"target": args.runtime, "max_degradation": args.max_degradation,
                        "max_size_kb": args.max_size_kb, "max_latency_ms": args.max_latency_ms,
                        "objective": args.objective, "max_arena_kb": args.max_arena_kb, "device": args.device},
                       base=recipe.optimize if recipe else None,
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


def cmd_generate(args: argparse.Namespace) -> int:
    """``generate``: greedy tokens after a prompt, from a verified step artifact in its runtime."""
    from dnnkit.jobs.generate import generate

    result = generate(args.out_dir, args.prompt, text=args.text, artifact=args.artifact, max_new=args.max_new)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    shown = (args.text if args.text is not None else " ".join(map(str, result["prompt"])))
    answer = result["text"] if result["text"] is not None else " ".join(map(str, result["tokens"]))
    print(f"{shown} -> {answer}")
    print(f"{result['artifact']} ({result['format']} {result['precision']}): {len(result['tokens'])} tokens "
          f"{result['tokens']} in {result['seconds'] * 1000:.1f} ms")
    return 0
