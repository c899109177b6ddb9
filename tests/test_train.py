"""Training: each shipped spec reaches its accuracy and fills a complete run directory."""

import json

import numpy as np
import pytest

from conftest import SPECS, cli
from dnnkit.config import load_spec
from dnnkit.evaluation import evaluate

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


def test_learning_rate_schedules():
    from dnnkit.config import TrainConfig
    from dnnkit.training import make_optimizer

    step = make_optimizer(TrainConfig(schedule="step", step_epochs=2, step_gamma=0.5,
                                      learning_rate=0.1), steps_per_epoch=10)
    lr = step.learning_rate  # the schedule's value at the optimizer's current iteration
    sched = step._learning_rate
    assert float(sched(0)) == pytest.approx(0.1) and float(sched(19)) == pytest.approx(0.1)
    assert float(sched(20)) == pytest.approx(0.05) and float(sched(45)) == pytest.approx(0.025)
    assert float(lr) == pytest.approx(0.1)
    cosine = make_optimizer(TrainConfig(schedule="cosine", epochs=5, learning_rate=0.1),
                            steps_per_epoch=10)._learning_rate
    assert float(cosine(0)) == pytest.approx(0.1) and float(cosine(50)) == pytest.approx(0.0, abs=1e-7)
    assert float(cosine(25)) == pytest.approx(0.05, rel=1e-3)


@pytest.mark.parametrize("interval", [0.0, 1e9])
def test_best_checkpoint_holds_the_best_epochs_weights(tmp_path, monkeypatch, interval):
    # written at once (interval 0) or only at the end (a long interval): either way the file holds the
    # weights of the epoch with the lowest val_loss, and the model keeps its own weights
    import keras

    from dnnkit import training

    monkeypatch.setattr(training, "SAVE_INTERVAL_S", interval)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    callback = training._best_checkpoint(tmp_path / "best.keras")  # noqa: SLF001
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, loss in enumerate([1.0, 0.5, float("nan"), 0.7]):
        model.set_weights([np.full((3, 2), epoch, "float32"), np.full((2,), epoch, "float32")])
        callback.on_epoch_end(epoch, {"val_loss": loss})
    callback.on_train_end()
    best = keras.models.load_model(tmp_path / "best.keras")
    assert np.all(best.get_weights()[0] == 1.0)  # epoch 1: val_loss 0.5
    assert np.all(model.get_weights()[0] == 3.0)


@pytest.mark.parametrize("interval, saved", [(0.0, True), (1e9, False)])
def test_backup_waits_for_its_interval(tmp_path, monkeypatch, interval, saved):
    import keras

    from dnnkit import training

    monkeypatch.setattr(training, "SAVE_INTERVAL_S", interval)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.zeros((8, 3), "float32"), np.zeros((8, 2), "float32")
    seen = []

    class Look(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((tmp_path / "backup" / "training_metadata.json").is_file())

    # the backup is removed when training ends (delete_checkpoint), so look after each epoch
    model.fit(x, y, epochs=2, verbose=0, callbacks=[training._backup(tmp_path / "backup"), Look()])  # noqa: SLF001
    assert seen == [saved, saved]
    assert not (tmp_path / "backup").exists()
