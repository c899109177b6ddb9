"""Native Keras 3 QAT: batch-norm folding, save/load, and QAT -> full-int8 TFLite agreeing
with the QAT model (>= 0.99 top-1) for the MLP and CNN specs."""

import numpy as np
import pytest

from conftest import RECIPES


def test_fold_batch_norm_preserves_outputs():
    import dnnkit
    from dnnkit.compress.qat import fold_batch_norm

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
    from dnnkit.compress.qat import quantize_model
    from dnnkit.modelio import load_model

    model = dnnkit.build({"name": "q", "model": {"family": "mlp", "input_shape": [64], "units": [16]}})
    qat, report = quantize_model(model)
    assert report["quantized_layers"] == ["dense_0", "dense_0_act", "logits"]
    x = np.random.default_rng(0).random((32, 64), dtype=np.float32)
    qat(x, training=True)  # sets the activation ranges
    qat.save(tmp_path / "q.keras")
    again = load_model(tmp_path / "q.keras")
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(qat(x)), atol=1e-6)
    assert float(again.get_layer("logits").out_max.numpy()) == pytest.approx(
        float(qat.get_layer("logits").out_max.numpy()))


@pytest.mark.parametrize("name", ["digits_mlp", "digits_cnn"])
def test_qat_int8_tflite_matches_qat_model(trained_runs, tmp_path, name):
    from dnnkit.pipeline import compress

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
