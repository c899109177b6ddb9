"""Export inputs besides .keras (issue 9, part 4): tf_keras .h5 files and TensorFlow SavedModel folders,
with reference outputs from the model's own runtime (TensorFlow), not from a re-built copy."""

import json

import numpy as np
import pytest

from conftest import RECIPES, cli, error_lines

FOUR = {"name": "four", "artifacts": [
    {"name": "tflite_fp16", "format": "tflite", "precision": "fp16"},
    {"name": "tflite_int8", "format": "tflite", "precision": "int8"},
    {"name": "onnx_fp32", "format": "onnx"},
    {"name": "onnx_int8", "format": "onnx", "precision": "int8"},
]}


@pytest.fixture(scope="module")
def tf_keras_files(tmp_path_factory):
    """A tf_keras functional model with BatchNormalization (not a chain dnnkit could rebuild in Keras 3
    layer by layer: two branches), trained briefly, saved as .h5 and as a SavedModel folder."""
    import tf_keras

    base = tmp_path_factory.mktemp("tfk")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(900, 32)).astype("float32")
    y = ((x[:, 0] + x[:, 1] > 0).astype("int32") + (x[:, 2] > 1).astype("int32"))
    tf_keras.utils.set_random_seed(0)
    inp = tf_keras.Input((32,))
    a = tf_keras.layers.BatchNormalization()(tf_keras.layers.Dense(64, activation="relu")(inp))
    b = tf_keras.layers.Dense(16, activation="tanh")(inp)
    h = tf_keras.layers.Concatenate()([a, b])
    model = tf_keras.Model(inp, tf_keras.layers.Dense(3)(tf_keras.layers.Dense(32, activation="relu")(h)))
    model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=10, verbose=0)
    model.save(base / "model.h5")
    model.save(base / "saved_model", save_format="tf")
    np.savez(base / "data.npz", x_train=x, y_train=y)
    return base, model, x


def test_tf_keras_h5_exports_and_verifies_against_its_own_runtime(tf_keras_files, tmp_path):
    from dnnkit.jobs.export import export
    from dnnkit.jobs.reverify import verify_dir
    from dnnkit.config.recipe import recipe_from_dict

    base, model, x = tf_keras_files
    out = tmp_path / "out"
    manifest = export(base / "model.h5", recipe_from_dict(FOUR), out, data=str(base / "data.npz"))
    assert manifest["status"] == "verified", manifest["failures"]
    ref = manifest["reference"]
    assert ref["model"] == "reference/saved_model" and ref["source"]["source"] == "tf_keras .h5"
    # the SavedModel tf_keras wrote reproduces tf_keras's own outputs (same runtime: bit for bit here)
    assert ref["source"]["check"]["inputs"] == 256 and ref["source"]["check"]["max_abs_diff"] <= 1e-5
    assert ref["head"] == "multiclass" and ref["metrics"]["accuracy"] > 0.8
    assert ref["fp16_weight_error"] is not None and ref["fp16_weight_error"] > 0  # calibrated in TensorFlow too
    # the reference outputs are tf_keras's: predict with tf_keras and compare with what the artifacts saw
    fp32 = next(e for e in manifest["artifacts"] if e["name"] == "onnx_fp32")
    assert fp32["checks"]["float_parity"]["max_abs_diff"] < 1e-4
    from dnnkit.verification.runtimes import open_artifact

    runner = open_artifact("onnx", out / "artifacts" / "onnx_fp32.onnx")
    np.testing.assert_allclose(runner.run(x[:100])[0], model.predict(x[:100], verbose=0), atol=1e-4)
    # time and peak memory per artifact, each step in its own process (issue 9, part 8)
    for entry in manifest["artifacts"]:
        for step in ("conversion", "verification"):
            assert entry[step]["seconds"] > 0 and 100 < entry[step]["peak_rss_mb"] < 8000, (entry["name"], step)
    assert manifest["resources"]["parent_peak_rss_mb"] > 100
    again = verify_dir(out)
    assert again["status"] == "verified"


def test_saved_model_folder_exports_on_the_command_line(tf_keras_files, tmp_path):
    base, _, _ = tf_keras_files
    result = cli("export", str(base / "saved_model"), "--recipe", str(RECIPES / "server-onnx.toml"),
                 "--data", str(base / "data.npz"), "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["reference"]["source"] == {"source": "SavedModel folder"}
    assert "saved_model (reference)" in result.stdout
    assert (tmp_path / "out" / "reference" / "saved_model" / "saved_model.pb").is_file()


def test_saved_model_without_serving_signature_is_one_line(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.v = tf.Variable(1.0)
    tf.saved_model.save(module, str(tmp_path / "sm"))
    np.savez(tmp_path / "d.npz", x_train=np.zeros((10, 4), "float32"), y_train=np.zeros(10, "int32"))
    result = cli("export", str(tmp_path / "sm"), "--recipe", str(RECIPES / "server-onnx.toml"),
                 "--data", str(tmp_path / "d.npz"), "--out", str(tmp_path / "out"))
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1 and "has no serving_default signature" in lines[0], lines
    assert not (tmp_path / "out").exists()
