"""Shared fixtures: the repo root, a CLI runner, and trained runs reused across tests."""

from __future__ import annotations

import os
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


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict:
    """Each shipped spec trained once, for the whole session."""
    import dnnkit

    base = tmp_path_factory.mktemp("runs")
    return {name: dnnkit.train(MODELS / f"{name}.toml", base / name) for name in SPECS}


RECIPES = ROOT / "export"


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
    from dnnkit.pipeline import export

    base = tmp_path_factory.mktemp("exports")
    return {name: (base / name, export(run.model_path, RECIPES / "all.toml", base / name, spec=run.spec))
            for name, run in trained_runs.items()}
