"""Shared fixtures: the repo root, a CLI runner, and trained runs reused across tests.

`make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup`): a test module stays on one
worker (its module fixtures are built once), the modules that share the session's exports go together, and the
shipped specs are trained once for both workers (the first trains under a lock, the other reads the runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SPECS = ["digits_mlp", "digits_cnn", "digits_lstm", "digits_gru", "digits_transformer"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
        cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m dnnkit ARGS`` in a child process and capture its output."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dnnkit", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


def error_lines(stderr: str) -> list[str]:
    """stderr lines that are dnnkit's (TensorFlow's C++ start-up chatter removed)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(
        ("I0000", "W0000", "E0000", "WARNING: All log messages", "To enable the following"))]


# Modules that use the session's exports run on one worker (each worker would build its own otherwise); every
# other module is a group of its own. (xdist reads the groups; a plain `pytest` ignores them.)
GROUPS = {"exported": ("test_jobs_export.py", "test_jobs_export_failures.py"),
          "small_export": ("test_core_quiet.py", "test_jobs_outfolder.py", "test_jobs_reverify.py",
                           "test_workers_checks.py")}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items) -> None:
    group_of = {name: group for group, names in GROUPS.items() for name in names}
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group_of.get(item.path.name, item.path.stem)))


def _load_run(out_dir: Path):
    """A :class:`dnnkit.training.run.Run` read back from its complete run directory."""
    import json

    import dnnkit
    from dnnkit.training.run import Run

    info = json.loads((out_dir / "run.json").read_text())
    return Run(out_dir=out_dir, spec=dnnkit.load_spec(out_dir / "spec.toml"),
               model=dnnkit.load_model(out_dir / "model.keras"),
               metrics=json.loads((out_dir / "metrics.json").read_text()),
               history=json.loads((out_dir / "history.json").read_text()), strategy=info["strategy"],
               replicas=info["replicas"], train_seconds=info["train_seconds"],
               resumed_from_epoch=info["resumed_from_epoch"])


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory, request) -> dict:
    """Each shipped spec trained once, for the whole session (and for every xdist worker: the first to get the
    lock trains, the others read the finished run directories)."""
    import dnnkit

    if not hasattr(request.config, "workerinput"):  # not an xdist worker
        base = tmp_path_factory.mktemp("runs")
        return {name: dnnkit.train(MODELS / f"{name}.toml", base / name) for name in SPECS}
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp().parent / "shared-runs"
    with FileLock(str(base) + ".lock"):
        if not (base / "complete").exists():
            runs = {name: dnnkit.train(MODELS / f"{name}.toml", base / name) for name in SPECS}
            (base / "complete").write_text("\n".join(SPECS))
            return runs
    return {name: _load_run(base / name) for name in SPECS}


RECIPES = ROOT / "export"


def run_spec(base: Path, spec: str, artifact: str = "tflite_fp32") -> subprocess.CompletedProcess:
    """``dnnkit run models/SPEC.toml`` into ``base/out`` with a recipe of one fp32 ``artifact`` (tflite_fp32 or
    onnx_fp32): the cheapest export, for tests about what else the run writes (a generative model's step files)."""
    recipe = base / "one.toml"
    recipe.write_text(f'name = "one"\n[[artifacts]]\nname = "{artifact}"\nformat = "{artifact.split("_")[0]}"\n')
    result = cli("run", str(MODELS / f"{spec}.toml"), "--recipe", str(recipe), "--out", str(base / "out"), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    return result


def digits_dense(epochs: int, seed: int = 0, train: int | None = None) -> tuple:
    """A 64-32-10 Dense classifier on sklearn's digits (pixels / 16), trained on the first ``train``
    rows (all by default): ``(model, x, y)``."""
    import keras
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.data / 16.0).astype("float32"), digits.target
    keras.utils.set_random_seed(seed)
    inp = keras.Input((64,), name="inputs")
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(keras.layers.Dense(32, activation="relu")(inp)))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:train], y[:train], epochs=epochs, verbose=0)
    return model, x, y


@pytest.fixture(scope="session")
def exported(trained_runs, tmp_path_factory) -> dict:
    """Each trained run exported with export/all.toml (every artifact), for the whole session."""
    from dnnkit.jobs.export import export

    base = tmp_path_factory.mktemp("exports")
    return {name: (base / name, export(run.model_path, RECIPES / "all.toml", base / name, spec=run.spec))
            for name, run in trained_runs.items()}


def open_in_chromium(page_path, screenshot) -> dict:
    """Open a local HTML file in headless Chromium (Debian's, driven by Playwright) with the network
    off; return its console errors, every request it made, and per chart (``figure.chart``) the
    drawn size of its SVG and how many paths it holds. Saves a full-page screenshot."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                    args=["--no-sandbox"])
        try:
            context = browser.new_context(offline=True, viewport={"width": 1200, "height": 900})
            page = context.new_page()
            errors, requests = [], []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(f"file://{page_path}")
            charts = {}
            for figure in page.query_selector_all("figure.chart"):
                svg = figure.query_selector("svg")
                box = svg.bounding_box() if svg else None
                charts[figure.get_attribute("id")] = {
                    "width": box["width"] if box else 0, "height": box["height"] if box else 0,
                    "paths": len(figure.query_selector_all("svg path"))}
            page.screenshot(path=str(screenshot), full_page=True)
            text = page.inner_text("body")
        finally:
            browser.close()
    return {"errors": errors, "requests": requests, "charts": charts, "text": text}


@pytest.fixture(scope="session")
def small_export(trained_runs, tmp_path_factory):
    """The MLP exported to two cheap artifacts, for the containment tests."""
    from dnnkit.jobs.export import export

    out = tmp_path_factory.mktemp("small")
    recipe = out.parent / "small.toml"
    recipe.write_text('name = "small"\n[[artifacts]]\nname = "tflite_fp32"\nformat = "tflite"\n'
                      '[[artifacts]]\nname = "onnx_fp32"\nformat = "onnx"\n')
    manifest = export(trained_runs["digits_mlp"].model_path, recipe, out / "x", spec=trained_runs["digits_mlp"].spec)
    assert manifest["status"] == "verified"
    return out / "x"
