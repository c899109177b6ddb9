"""Training: each shipped spec reaches its accuracy and fills a complete run directory."""

import json

import numpy as np
import pytest

from conftest import SPECS
from dnnkit.config.model import load_spec

# The floors: MLP and CNN >= 0.95, the sequence families >= 0.93.
FLOORS = {"digits_mlp": 0.95, "digits_cnn": 0.95, "digits_lstm": 0.93, "digits_gru": 0.93,
          "digits_transformer": 0.93}


@pytest.mark.parametrize("name", SPECS)
def test_spec_trains_to_its_floor(trained_runs, name):
    run = trained_runs[name]
    assert run.metrics["accuracy"] >= FLOORS[name], run.metrics
    assert set(run.metrics) == {"accuracy", "precision", "recall", "f1"}
    assert run.metrics["f1"] >= FLOORS[name] - 0.02


@pytest.mark.parametrize("name", SPECS)
def test_run_directory_contents(trained_runs, name):
    run = trained_runs[name]
    out = run.out_dir
    for f in ("model.keras", "spec.toml", "history.json", "metrics.json", "run.json",
              "checkpoints/best.keras"):
        assert (out / f).is_file(), f
    assert not (out / "backup").exists(), "a finished run removes its BackupAndRestore state"
    assert any((out / "logs").rglob("*tfevents*")), "TensorBoard logs"
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == list(range(run.spec.train.epochs))
    assert len(history["val_loss"]) == run.spec.train.epochs
    assert history["loss"][-1] < history["loss"][0]
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(run.metrics)
    info = json.loads((out / "run.json").read_text())
    assert info["strategy"] == "default" and info["replicas"] == 1 and info["resumed_from_epoch"] == 0
    assert load_spec(out / "spec.toml").model == run.spec.model


def test_same_seed_same_result(tmp_path):
    import dnnkit

    spec = {"name": "tiny", "model": {"family": "mlp", "input_shape": [64], "units": [16]},
            "train": {"epochs": 2, "tensorboard": False}}
    a = dnnkit.train(spec, tmp_path / "a")
    b = dnnkit.train(spec, tmp_path / "b")
    assert a.metrics == b.metrics
    np.testing.assert_array_equal(a.model.get_weights()[0], b.model.get_weights()[0])


@pytest.mark.parametrize("train_cfg", [
    {"optimizer": "sgd", "momentum": 0.9, "nesterov": True, "schedule": "cosine", "learning_rate": 0.05},
    {"optimizer": "adamw", "weight_decay": 0.01, "schedule": "step", "step_epochs": 2,
     "step_gamma": 0.5, "learning_rate": 0.005},
    {"optimizer": "rmsprop", "loss": "categorical_crossentropy", "metrics": ["accuracy", "precision",
                                                                           "recall", "f1"]},
])
def test_optimizers_schedules_and_losses_learn(tmp_path, train_cfg):
    import dnnkit

    spec = {"name": "opt", "model": {"family": "mlp", "input_shape": [64], "units": [32]},
            "train": {"epochs": 4, "tensorboard": False, **train_cfg}}
    run = dnnkit.train(spec, tmp_path / "r")
    assert run.metrics["accuracy"] >= 0.85, run.metrics
    for m in train_cfg.get("metrics", []):
        assert f"val_{m}" in run.history


def test_binary_and_regression_heads(tmp_path):
    import dnnkit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    np.savez(tmp_path / "bin.npz", x_train=x, y_train=(x[:, 0] + x[:, 1] > 0).astype(np.int32))
    np.savez(tmp_path / "reg.npz", x_train=x, y_train=x[:, :2] * 2.0 - x[:, 2:4])
    binary = dnnkit.train({"name": "b", "data": {"source": str(tmp_path / "bin.npz")},
                           "model": {"family": "mlp", "input_shape": [6], "head": "binary", "units": [16]},
                           "train": {"epochs": 20, "learning_rate": 0.01,
                                     "metrics": ["accuracy", "precision", "recall", "f1"],
                                     "tensorboard": False}}, tmp_path / "rb")
    assert binary.metrics["accuracy"] >= 0.9
    reg = dnnkit.train({"name": "r", "data": {"source": str(tmp_path / "reg.npz")},
                        "model": {"family": "mlp", "input_shape": [6], "head": "regression",
                                  "output_units": 2, "units": [32]},
                        "train": {"epochs": 30, "learning_rate": 0.01, "metrics": ["rmse", "mae"],
                                  "tensorboard": False}},
                       tmp_path / "rr")
    assert set(reg.metrics) == {"mse", "rmse", "mae"}
    assert reg.metrics["rmse"] < 0.5 * float(np.std(x[:, :2] * 2.0 - x[:, 2:4]))
