"""Scoring a run directory or a model file on a split, from Python and from the command line."""

import json

import pytest

from conftest import cli
from dnnkit.jobs.evaluate import evaluate


def test_evaluate_reproduces_run_metrics(trained_runs):
    run = trained_runs["digits_cnn"]
    assert evaluate(run.out_dir) == pytest.approx(run.metrics, abs=1e-9)
    bare = evaluate(run.out_dir / "model.keras", "digits")
    assert bare["accuracy"] == pytest.approx(run.metrics["accuracy"])


def test_evaluate_cli_on_run_and_model(trained_runs):
    run = trained_runs["digits_gru"]
    result = cli("evaluate", str(run.out_dir), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["accuracy"] == pytest.approx(run.metrics["accuracy"])
    result = cli("evaluate", str(run.out_dir / "model.keras"), "--data", "digits", "--split", "val")
    assert result.returncode == 0 and result.stdout.startswith("val accuracy=")
