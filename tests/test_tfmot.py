"""tfmot as the engine for tf_keras models, beside Keras 3 in one process."""

import os

import numpy as np

RECIPE = """
name = "tfmot"
[goals]
max_degradation = 0.02
[[passes]]
type = "prune"
engine = "tfmot"
final_sparsity = 0.8
epochs = 8
skip_first = true
[[passes]]
type = "cluster"
number_of_clusters = 16
epochs = 2
[[artifacts]]
name = "tflite_fp32"
format = "tflite"
[[artifacts]]
name = "tflite_int8"
format = "tflite"
precision = "int8"
[[artifacts]]
name = "onnx_fp32"
format = "onnx"
"""


def _tf_keras_mlp(path):
    import tf_keras

    from dnnkit.config import spec_from_dict
    from dnnkit.data import load_data

    ds = load_data(spec_from_dict({"name": "m", "model": {"family": "mlp", "input_shape": [64]}}))
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((64,), name="inputs")
    x = tf_keras.layers.Dense(64, activation="relu", name="dense_0")(inp)
    x = tf_keras.layers.Dense(32, activation="relu", name="dense_1")(x)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(10, name="logits")(x), name="tfk_mlp")
    model.compile(tf_keras.optimizers.Adam(3e-3),
                  tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds.x_train, ds.y_train, epochs=20, batch_size=32, verbose=0)
    model.save(path)
    return model


def test_tf_keras_model_pruned_and_clustered_by_tfmot_then_keras3_in_same_process(tmp_path):
    import keras

    from dnnkit.pipeline import compress

    _tf_keras_mlp(tmp_path / "tfk.h5")
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE)
    manifest = compress(tmp_path / "tfk.h5", recipe, tmp_path / "out", data="digits")
    assert "TF_USE_LEGACY_KERAS" not in os.environ, "tfmot must not leave Keras 2 switched on"
    prune, cluster = manifest["passes"]
    assert prune["engine"] == "tfmot" and prune["input_was_tf_keras"] is True
    assert [round(r["sparsity"], 2) for r in prune["layers"]] == [0.8, 0.8]  # dense_1, logits
    assert cluster["engine"] == "tfmot" and all(r["distinct_values"] <= 16 for r in cluster["layers"])
    assert manifest["status"] == "verified", [a.get("failure_reason") for a in manifest["artifacts"]]
    assert manifest["original"]["metrics"]["accuracy"] >= 0.93

    # Keras 3 still works normally in this process after tfmot ran.
    assert keras.__version__.startswith("3.")
    import dnnkit

    run = dnnkit.train({"name": "k3", "model": {"family": "mlp", "input_shape": [64], "units": [32]},
                        "train": {"epochs": 5, "learning_rate": 0.01, "tensorboard": False}},
                       tmp_path / "k3")
    assert type(run.model).__module__.startswith("keras") and run.metrics["accuracy"] > 0.85


def test_keras3_model_pruned_with_tfmot_engine(trained_runs, tmp_path):
    from dnnkit.modelio import load_model
    from dnnkit.pipeline import compress

    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.split("[[passes]]\ntype = \"cluster\"")[0] + "[[artifacts]]\nname = \"onnx_fp32\"\n"
                      "format = \"onnx\"\n")
    manifest = compress(trained_runs["digits_cnn"].out_dir, recipe, tmp_path / "o")
    assert manifest["status"] == "verified"
    p = manifest["passes"][0]
    assert p["engine"] == "tfmot" and p["input_was_tf_keras"] is False
    model = load_model(tmp_path / "o" / "compressed" / "model.keras")
    for name in ("conv_1", "dense_0", "logits"):
        assert float(np.mean(model.get_layer(name).kernel.numpy() == 0)) >= 0.79
    assert float(np.mean(model.get_layer("conv_0").kernel.numpy() == 0)) == 0.0
