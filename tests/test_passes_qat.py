"""Native Keras 3 QAT: batch-norm folding, save/load, and QAT -> full-int8 TFLite agreeing
with the QAT model (>= 0.99 top-1) for the MLP and CNN specs."""

import numpy as np
import pytest

from conftest import RECIPES


def test_fold_batch_norm_preserves_outputs():
    import dnnkit
    from dnnkit.passes.qat import fold_batch_norm

    spec = {"name": "bn", "model": {"family": "cnn", "input_shape": [8, 8, 1], "filters": [8, 16],
                                    "batch_norm": True, "dense_units": [16]}}
    model = dnnkit.build(spec)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # non-trivial statistics
        if type(layer).__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(size=n), rng.normal(size=n),
                               rng.uniform(0.5, 2, n)])
    folded, names = fold_batch_norm(model)
    assert names == ["conv_0_bn", "conv_1_bn"]
    assert {type(layer).__name__ for layer in folded.layers}.isdisjoint({"BatchNormalization"})
    x = rng.random((16, 8, 8, 1), dtype=np.float32)
    np.testing.assert_allclose(np.asarray(folded(x)), np.asarray(model(x)), atol=1e-4)


def test_qat_model_saves_and_loads(tmp_path):
    import dnnkit
    from dnnkit.passes.qat import quantize_model
    from dnnkit.sources.keras_file import load_model

    model = dnnkit.build({"name": "q", "model": {"family": "mlp", "input_shape": [64], "units": [16]}})
    qat, report = quantize_model(model)
    assert report["quantized_layers"] == ["dense_0", "dense_0_act", "logits"]
    # dense_0 feeds a ReLU: one output range, after the ReLU (the integer model fuses the two)
    assert report["output_quantized_after_relu"] == ["dense_0"]
    assert [qat.get_layer(n).quantize_output for n in ("dense_0", "logits")] == [False, True]
    x = np.random.default_rng(0).random((32, 64), dtype=np.float32)
    qat(x, training=True)  # sets the activation ranges
    qat.save(tmp_path / "q.keras")
    again = load_model(tmp_path / "q.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(qat(x)), atol=1e-6)
    assert again.get_layer("dense_0").quantize_output is False
    assert float(again.get_layer("logits").out_max.numpy()) == pytest.approx(
        float(qat.get_layer("logits").out_max.numpy()))


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_qat_int8_tflite_matches_qat_model(trained_runs, tmp_path, name):
    from dnnkit.jobs.compress import compress

    manifest = compress(trained_runs[name].out_dir, RECIPES / "qat-int8.toml", tmp_path)
    assert manifest["reference"]["fake_quant"] is True
    p = manifest["passes"][0]
    assert p["type"] == "qat" and p["engine"] == "native" and p["goal_met"]
    tfl = next(e for e in manifest["artifacts"] if e["name"] == "tflite_int8")
    assert tfl["status"] == "verified", tfl.get("failure_reason")
    assert tfl["parity"]["top1_agreement"] >= 0.99
    onnx = next(e for e in manifest["artifacts"] if e["name"] == "onnx_fp32")
    assert onnx["status"] == "verified" and onnx["checked_as"] == "quantized"
    assert manifest["status"] == "verified"


def test_native_qat_preserves_pruned_zeros(trained_runs, tmp_path):
    from dnnkit.jobs.compress import compress
    from dnnkit.config.recipe import recipe_from_dict

    recipe = recipe_from_dict({
        "name": "prune-qat", "verify": {"min_agreement": 0.99},
        "passes": [{"type": "prune", "final_sparsity": 0.8, "epochs": 5, "skip_first": True},
                   {"type": "qat", "preserve_sparsity": True, "epochs": 2}],
        "artifacts": [{"name": "tflite_int8", "format": "tflite", "precision": "int8", "io": "int8"}]})
    manifest = compress(trained_runs["digits_mlp"].out_dir, recipe, tmp_path)
    prune, qat = manifest["passes"]
    assert prune["engine"] == qat["engine"] == "native"  # engine "auto" on a Keras 3 model
    assert {r["layer"]: round(r["sparsity"], 2) for r in qat["layers"]} == {"dense_0": 0.0, "dense_1": 0.8,
                                                                          "logits": 0.8}
    tfl = manifest["artifacts"][0]
    assert tfl["status"] == "verified" and tfl["parity"]["top1_agreement"] >= 0.99
    assert min(v for k, v in tfl["sparsity"]["tensors"].items() if "dense_1" in k or "logits" in k) >= 0.79
