"""A bare model's spec: read from the .keras config alone (for the data checks before TensorFlow loads), it is
the spec the loaded model gives, or nothing where the config does not say it plainly."""

from __future__ import annotations

import json
import zipfile

import pytest


def _models():
    import keras

    seq = keras.Sequential([keras.Input((30,), name="f"), keras.layers.Dense(8), keras.layers.Dense(3, name="o")])
    i = keras.Input((5,), name="a")
    binary = keras.Model(i, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(4)(i)))
    j = keras.Input((4, 2))
    regression = keras.Model(j, keras.layers.Dense(1)(keras.layers.Flatten()(j)))
    return {"sequential": seq, "binary": binary, "regression": regression}


@pytest.mark.parametrize("name", ["sequential", "binary", "regression"])
def test_the_config_gives_the_spec_the_model_gives(tmp_path, name):
    from dnnkit.sources.keras_file import check_archive
    from dnnkit.sources.target import spec_for_model, spec_from_config

    model = _models()[name]
    model.save(tmp_path / "m.keras")
    from_config = spec_from_config(check_archive(tmp_path / "m.keras"), None, "d.npz")
    assert from_config is not None and from_config.model == spec_for_model(model, None, "d.npz").model


def test_a_config_that_does_not_say_plainly_gives_nothing(tmp_path):
    import keras

    from dnnkit.sources.keras_file import check_archive
    from dnnkit.sources.target import spec_from_config

    softmax_last = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Softmax()])
    tokens = keras.Sequential([keras.Input((6,), dtype="int32"), keras.layers.Embedding(10, 4),
                               keras.layers.Flatten(), keras.layers.Dense(2)])
    for i, model in enumerate((softmax_last, tokens)):
        model.save(tmp_path / f"{i}.keras")
        assert spec_from_config(check_archive(tmp_path / f"{i}.keras"), None, "d.npz") is None
    with zipfile.ZipFile(tmp_path / "odd.keras", "w") as z:
        z.writestr("config.json", json.dumps({"class_name": "MyModel", "config": {}}))
    assert spec_from_config(check_archive(tmp_path / "odd.keras"), None, "d.npz") is None
