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

    from dnnkit.data.load import load_data
    from dnnkit.config.model import spec_from_dict

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

    from dnnkit.jobs.compress import compress

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
    from dnnkit.jobs.compress import compress
    from dnnkit.sources.keras_file import load_model

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


PQAT_RECIPE = """
name = "tfmot-pqat"
[goals]
max_degradation = 0.03
[verify]
min_agreement = 0.99
[[passes]]
type = "prune"
final_sparsity = 0.8
epochs = 8
skip_first = true
[[passes]]
type = "qat"
preserve_sparsity = true
epochs = 3
[[artifacts]]
name = "tflite_int8"
format = "tflite"
precision = "int8"
io = "int8"
[[artifacts]]
name = "onnx_fp32"
format = "onnx"
"""


def test_tf_keras_model_pruned_and_quantized_by_tfmot_exports_and_verifies(tmp_path):
    """engine "auto" on a tf_keras input: prune_low_magnitude, then the collaborative
    pruning-preserving QAT; the int8 TFLite artifact keeps the zeros and matches the QAT model."""
    import keras

    from dnnkit.jobs.compress import compress
    from dnnkit.verification.runtimes import open_artifact

    _tf_keras_mlp(tmp_path / "tfk.h5")
    recipe = tmp_path / "r.toml"
    recipe.write_text(PQAT_RECIPE)
    manifest = compress(tmp_path / "tfk.h5", recipe, tmp_path / "out", data="digits")
    assert "TF_USE_LEGACY_KERAS" not in os.environ
    prune, qat = manifest["passes"]
    assert prune["engine"] == qat["engine"] == "tfmot" and qat["options"]["engine"] == "tfmot"
    assert qat["scheme"] == "default_8bit_prune_preserve" and qat["input_was_tf_keras"] is False
    assert qat["quantized_layers"] == ["dense_0", "dense_1", "logits"]
    assert qat["keras3_copy"]["max_abs_diff"] <= 1e-4  # the Keras 3 copy computes what tfmot's model does
    assert {r["layer"]: round(r["sparsity"], 2) for r in qat["layers"]} == {"dense_0": 0.0, "dense_1": 0.8,
                                                                          "logits": 0.8}
    assert manifest["reference"]["fake_quant"] is True
    tfl = next(e for e in manifest["artifacts"] if e["name"] == "tflite_int8")
    assert tfl["status"] == "verified", tfl.get("failure_reason")
    assert tfl["parity"]["top1_agreement"] >= 0.99
    weights = open_artifact("tflite", tmp_path / "out" / tfl["path"]).weights()
    for layer in ("dense_1", "logits"):
        found = {k: w for k, w in weights.items() if f"/{layer}/" in k or f"/{layer}_1/" in k}
        assert found and all(float(np.mean(w == 0)) >= 0.79 for w in found.values()), (layer, sorted(weights))
    assert manifest["status"] == "verified", manifest["goals"]

    x = np.random.default_rng(1).random((8, 64), dtype=np.float32)
    k3 = keras.Sequential([keras.Input((64,)), keras.layers.Dense(4)])
    assert k3(x).shape == (8, 4)  # Keras 3 keeps working beside tf_keras and tfmot


def test_tfmot_qat_folds_batch_norm_fuses_relu_and_keeps_pooling_ranges(tmp_path):
    import dnnkit
    from dnnkit.data.load import load_data
    from dnnkit.passes.context import PassContext
    from dnnkit.passes.tfmot_engine import quantize_with_tfmot
    from dnnkit.config.model import spec_from_dict
    from dnnkit.config.passes import QATOptions

    spec = spec_from_dict({"name": "bn", "model": {"family": "cnn", "input_shape": [8, 8, 1], "filters": [8, 16],
                                                   "batch_norm": True, "pool": "avg", "global_pool": True,
                                                   "dense_units": [16]}})
    model = dnnkit.build(spec)
    ctx = PassContext(spec=spec, dataset=load_data(spec), base_dir=tmp_path)
    result = quantize_with_tfmot(model, QATOptions(epochs=1, learning_rate=1e-3, engine="tfmot"), ctx)
    assert result.report["folded_batch_norm"] == ["conv_0_bn", "conv_1_bn"]
    assert result.report["fused_relu"] == ["conv_0", "conv_1", "dense_0"]
    assert result.report["scheme"] == "default_8bit" and result.report["keras3_copy"]["max_abs_diff"] <= 1e-4
    # tfmot quantizes pooling outputs; an identity with tfmot's range carries each into Keras 3
    assert "global_pool_quant" in result.report["quantized_layers"]
    assert "conv_0_pool_quant" in result.report["quantized_layers"]
    kinds = {type(layer).__name__ for layer in result.model.layers}
    assert {"QuantConv2D", "QuantDense"} <= kinds and "BatchNormalization" not in kinds, kinds
    assert float(result.model.get_layer("conv_0").in_max.numpy()) > 0.5  # input range learned by tfmot


def test_tfmot_recipe_keys_are_checked(tmp_path):
    import pytest

    from dnnkit.errors import SpecError
    from dnnkit.config.recipe import load_recipe

    path = tmp_path / "r.toml"
    path.write_text('name = "x"\n[[passes]]\ntype = "prune"\nengine = "tfmot"\nstructure = "2:4"\n'
                    '[[artifacts]]\nname = "a"\nformat = "onnx"\n')
    with pytest.raises(SpecError, match=r"passes\[0\]\.structure: expected unset with engine = \"tfmot\""):
        load_recipe(path)
    path.write_text('name = "x"\n[[passes]]\ntype = "qat"\nengine = "tfmot"\npreserve_sparsity = true\n'
                    '[[artifacts]]\nname = "a"\nformat = "onnx"\n')
    qat = load_recipe(path).passes[0].options
    assert qat.engine == "tfmot" and qat.preserve_sparsity is True


def test_tf_keras_layer_without_keras3_twin_is_a_one_line_error(tmp_path):
    import tf_keras

    from conftest import cli, error_lines

    inp = tf_keras.Input((64,), name="inputs")
    x = tf_keras.layers.LayerNormalization(name="norm")(tf_keras.layers.Dense(16, name="d")(inp))
    tf_keras.Model(inp, tf_keras.layers.Dense(10, name="logits")(x)).save(tmp_path / "m.h5")
    (tmp_path / "r.toml").write_text(PQAT_RECIPE)
    result = cli("compress", str(tmp_path / "m.h5"), "--recipe", str(tmp_path / "r.toml"), "--data", "digits",
                 "--out", str(tmp_path / "out"))
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("dnnkit: error: model: layers ['LayerNormalization'] cannot be moved"), lines
    assert not (tmp_path / "out").exists()
