"""The ONNX path on models the shipped specs do not cover (issue 9, part 1): constants computed in
the graph, layers that are identities at inference, XLA-compiled grouped convolutions and exact
GELU. Each model is briefly trained on digits, saved, and exported with export/server-onnx.toml."""

import numpy as np
import pytest

from conftest import RECIPES


def _normalization():
    import keras

    inp = keras.Input((64,), name="inputs")
    norm = keras.layers.Normalization(name="norm")
    h = norm(inp)
    h = keras.layers.Dense(64, activation="relu")(h)
    h = keras.layers.Dropout(0.3)(h)
    h = keras.layers.GaussianNoise(0.1)(h)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(h)), norm


def _augmented_grouped_gelu():
    import keras

    inp = keras.Input((8, 8, 1), name="inputs")
    h = keras.layers.RandomTranslation(0.1, 0.1)(inp)
    h = keras.layers.RandomRotation(0.03)(h)
    h = keras.layers.Rescaling(2.0, offset=-1.0)(h)
    h = keras.layers.Conv2D(16, 3, padding="same")(h)
    h = keras.layers.Conv2D(16, 3, padding="same", groups=4)(h)  # grouped: Keras compiles it with XLA
    h = keras.layers.LayerNormalization()(h)
    h = keras.layers.Activation("gelu")(h)  # exact GELU: Erfc in the TF graph
    h = keras.layers.Flatten()(h)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(h)), None


CASES = {"normalization_dropout_noise": (_normalization, ["Dropout", "GaussianNoise"], []),
         "augmentation_grouped_conv_exact_gelu": (_augmented_grouped_gelu, ["RandomRotation", "RandomTranslation"],
                                                  ["inlined", "Erfc as 1 - Erf"])}


@pytest.mark.parametrize("case", sorted(CASES))
def test_byo_model_exports_to_onnx_and_verifies(case, tmp_path):
    import keras
    import onnx

    from dnnkit.data.load import load_data
    from dnnkit.jobs.export import export
    from dnnkit.sources.target import spec_for_model

    make, identities, rewrites = CASES[case]
    keras.utils.set_random_seed(0)
    model, norm = make()
    ds = load_data(spec_for_model(model, "multiclass", "digits"))
    if norm is not None:
        norm.adapt(ds.x_train)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(ds.x_train, ds.y_train, epochs=15, batch_size=32, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    manifest = export(path, RECIPES / "server-onnx.toml", tmp_path / "out", data="digits")
    assert manifest["reference"]["metrics"]["accuracy"] >= 0.8
    for entry in manifest["artifacts"]:
        assert entry["status"] == "verified", entry["failure_reason"]
        proto = onnx.load(tmp_path / "out" / entry["path"])
        assert [i.name for i in proto.graph.input] == ["inputs"]  # no constant became an input
        ops = {n.op_type for n in proto.graph.node}
        assert not any("Random" in op or op == "StatefulPartitionedCall" for op in ops), ops
        transforms = entry["transforms"]
        text = " ".join(transforms["rewrites"])
        assert all(name in text for name in identities), text
        assert all(r in text for r in rewrites), text
        assert transforms["checked_on"] == 64 and transforms["max_abs_diff"] <= 1e-4


def test_erfc_rewrite_keeps_values():
    import tensorflow as tf

    from dnnkit.formats.frozen import _erfc_as_erf, _run_graph

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None], name="x")
        tf.math.erfc(x, name="y")
    graph_def = graph.as_graph_def()
    assert _erfc_as_erf(graph_def) == 1
    assert "Erfc" not in {n.op for n in graph_def.node}
    values = np.linspace(-3, 3, 13).astype(np.float32)
    got, = _run_graph(graph_def, ["x:0"], ["y:0"], [values])
    np.testing.assert_allclose(got, tf.math.erfc(values).numpy(), atol=1e-6)


def test_large_models_keep_their_tensors_in_external_data(trained_runs, tmp_path, monkeypatch):
    """ONNX past protobuf's 2 GiB: tensors in NAME.onnx.data (forced here with external_data = "always" on
    a small model; "auto" switches at EXTERNAL_DATA_BYTES), loaded by onnxruntime, covered by the sha256."""
    import onnx

    from dnnkit.formats import onnx as onnx_format
    from dnnkit.jobs.export import export
    from dnnkit.jobs.reverify import verify_dir
    from dnnkit.config.recipe import recipe_from_dict

    recipe = recipe_from_dict({"name": "ext", "artifacts": [
        {"name": "onnx_fp32", "format": "onnx", "external_data": "always"},
        {"name": "onnx_int8", "format": "onnx", "precision": "int8", "external_data": "always"},
        {"name": "onnx_auto", "format": "onnx"}]})
    out = tmp_path / "out"
    manifest = export(trained_runs["digits_mlp"].model_path, recipe, out, data="digits")
    assert manifest["status"] == "verified", manifest["failures"]
    arts = {e["name"]: e for e in manifest["artifacts"]}
    for name in ("onnx_fp32", "onnx_int8"):
        side = out / "artifacts" / f"{name}.onnx.data"
        assert arts[name]["conversion"]["external_data"] == side.name and side.stat().st_size > 10_000
        assert (out / "artifacts" / f"{name}.onnx").stat().st_size < side.stat().st_size
        assert arts[name]["bytes"] == side.stat().st_size + (out / "artifacts" / f"{name}.onnx").stat().st_size
    assert arts["onnx_auto"]["conversion"]["external_data"] is None  # 37 KB of weights: inside the file
    proto = onnx.load(str(out / "artifacts" / "onnx_auto.onnx"))
    monkeypatch.setattr(onnx_format, "EXTERNAL_DATA_BYTES", onnx_format.weight_bytes(proto) - 1)
    assert onnx_format.save_onnx(proto, tmp_path / "auto.onnx") == "auto.onnx.data"  # auto past the limit
    # the digest covers the external data: changing it fails verification
    side = out / "artifacts" / "onnx_fp32.onnx.data"
    data = bytearray(side.read_bytes())
    data[100] ^= 0xFF
    side.write_bytes(bytes(data))
    again = {e["name"]: e for e in verify_dir(out)["artifacts"]}
    assert again["onnx_fp32"]["status"] == "failed"
    assert any(f["check"] == "sha256" for f in again["onnx_fp32"]["failures"]), again["onnx_fp32"]["failures"]
    assert again["onnx_int8"]["status"] == "verified"
    # the failed model is set apart with its external data, and still loads there
    assert again["onnx_fp32"]["path"] == "failed/onnx_fp32.onnx"
    assert (out / "failed" / "onnx_fp32.onnx.data").is_file() and not (out / "artifacts" / "onnx_fp32.onnx.data").exists()
