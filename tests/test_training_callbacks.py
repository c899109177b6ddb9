"""The callbacks of a training run: the best checkpoint and the backup, each saved at most every SAVE_INTERVAL_S."""


import numpy as np
import pytest


@pytest.mark.parametrize("interval", [0.0, 1e9])
def test_best_checkpoint_holds_the_best_epochs_weights(tmp_path, monkeypatch, interval):
    # written at once (interval 0) or only at the end (a long interval): either way the file holds the
    # weights of the epoch with the lowest val_loss, and the model keeps its own weights
    import keras

    from dnnkit.training import callbacks as training

    monkeypatch.setattr(training, "SAVE_INTERVAL_S", interval)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    callback = training.best_checkpoint(tmp_path / "best.keras")
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

    from dnnkit.training import callbacks as training

    monkeypatch.setattr(training, "SAVE_INTERVAL_S", interval)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.zeros((8, 3), "float32"), np.zeros((8, 2), "float32")
    seen = []

    class Look(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((tmp_path / "backup" / "training_metadata.json").is_file())

    # the backup is removed when training ends (delete_checkpoint), so look after each epoch
    model.fit(x, y, epochs=2, verbose=0, callbacks=[training.backup(tmp_path / "backup"), Look()])
    assert seen == [saved, saved]
    assert not (tmp_path / "backup").exists()
