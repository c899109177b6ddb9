"""Selective float fallback (issue 9 part 7, issue 10 part 3): an int8 artifact that fails its value
checks is converted again with the layers the runtime's own debugger finds worst kept in float, and
each candidate is verified like any artifact, at a confidence corrected for the number tried."""

from statistics import NormalDist

import numpy as np
import pytest

from dnnkit.jobs.fallback import needs_fallback, schedule
from dnnkit.config.recipe import ArtifactConfig
from dnnkit.verification.criteria import Z_ONE_SIDED_95, agreement_check, z_for

INT8_BOTH = {"name": "int8", "artifacts": [
    {"name": "tflite_int8", "format": "tflite", "precision": "int8", "io": "int8", "selective_fallback": True},
    {"name": "onnx_int8", "format": "onnx", "precision": "int8", "selective_fallback": True},
]}


def test_schedule_doubles_up_to_half_the_layers():
    assert schedule(0) == [] and schedule(1) == [] and schedule(2) == [1] and schedule(3) == [1]
    assert schedule(64) == [1, 2, 4, 8, 16, 32]
    assert schedule(125) == [1, 2, 4, 8, 16, 32, 62]


def test_a_pick_among_candidates_is_judged_at_a_bonferroni_confidence():
    assert z_for(1) == Z_ONE_SIDED_95
    assert z_for(7) == pytest.approx(NormalDist().inv_cdf(1 - 0.05 / 7)) and z_for(7) > 2.4
    ref = np.zeros(2000, int)
    art = ref.copy()
    art[:26] = 1  # 0.987 agreement: passes 0.98 at 95 %, not at 1 - 0.05/7
    assert agreement_check(ref, art, 0.98)["verdict"] == "pass"
    assert agreement_check(ref, art, 0.98, z_for(7))["verdict"] == "inconclusive"


def test_only_value_failures_of_int8_artifacts_get_the_fallback():
    art = ArtifactConfig(name="a", format="tflite", precision="int8", selective_fallback=True)
    value = {"converted": True, "status": "failed", "failures": [{"check": "top1_agreement"}], "inconclusive": []}
    assert needs_fallback(value, art)
    assert needs_fallback({**value, "status": "inconclusive", "failures": [],
                           "inconclusive": [{"check": "accuracy_drop"}]}, art)
    assert not needs_fallback({**value, "failures": [{"check": "top1_agreement"}, {"check": "output_shape"}]}, art)
    assert not needs_fallback({**value, "converted": False}, art)
    assert not needs_fallback(value, ArtifactConfig(name="a", format="tflite", precision="int8"))
    assert not needs_fallback(value, ArtifactConfig(name="a", format="tflite", precision="dynamic_int8",
                                                    selective_fallback=True))


def _masked_attention(vocabulary=50, n=2600, train=1600):
    """Token ids padded with 0; Embedding(mask_zero) makes MultiHeadAttention mask its softmax with
    -1e9: full int8 TFLite quantizes the masked attention logits on a scale set by -1e9, and every
    real logit becomes 0 (measured: agreement 0.91 on this model). ``n`` sequences, the first
    ``train`` for training; ``benchmarks/optimize_bench.py`` takes a larger vocabulary."""
    import keras

    rng = np.random.default_rng(0)
    ids = rng.integers(8, vocabulary, (n, 12)).astype("int32")
    y = rng.integers(0, 2, n).astype("int32")
    for i in range(n):
        size = rng.integers(4, 13)
        ids[i, size:] = 0
        if y[i]:
            ids[i, rng.integers(0, size)] = 7  # label 1: the marker token occurs
    keras.utils.set_random_seed(0)
    inp = keras.Input((12,), dtype="int32", name="tokens")
    h = keras.layers.Embedding(vocabulary, 16, mask_zero=True)(inp)
    h = h + keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(h, h)
    model = keras.Model(inp, keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling1D()(h)))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(ids[:train], y[:train], epochs=6, verbose=0)
    return model, {"x_train": ids[:train], "y_train": y[:train], "x_test": ids[train:], "y_test": y[train:]}


def test_masked_attention_int8_verifies_with_its_worst_layers_float(tmp_path):
    import dnnkit
    from dnnkit.config.recipe import recipe_from_dict

    model, data = _masked_attention()
    out = tmp_path / "out"
    manifest = dnnkit.export(model, recipe_from_dict(INT8_BOTH), out, data=data)
    tfl, onnx_entry = manifest["artifacts"]
    assert manifest["reference"]["metrics"]["accuracy"] > 0.97
    record = tfl["conversion"]["selective_fallback"]
    first = record["first_attempt"]
    assert first["status"] == "failed" and first["top1_agreement"] < 0.95, first
    assert record["ranked_by"].startswith("tf.lite.experimental.QuantizationDebugger")
    assert tfl["status"] == "verified", tfl["failure_reason"]
    assert "selective_float" in tfl["fallbacks"] and record["chosen"]
    # the first candidate that verified, with the fewest float layers; at most half of them float
    tried = record["tried"]
    chosen = [t for t in tried if t["status"] == "verified"][0]
    assert [t["float_layers"] for t in tried] == schedule(record["quantized_layers"])[:len(tried)]
    assert len(record["float_layers"]) == chosen["float_layers"] <= record["quantized_layers"] // 2
    assert all(t["status"] != "verified" for t in tried if t["float_layers"] < chosen["float_layers"])
    assert chosen["bytes"] <= 2 * first["bytes"]  # a float-heavy file is not adopted as the int8 artifact
    # the layers kept float are the worst the debugger measured, the attention path among them
    worst = record["float_layers"]
    assert worst == record["worst_layers"][:len(worst)] and worst[0]["sqnr_db"] < 20
    assert any("multi_head_attention" in w["name"] for w in worst)
    assert set(tfl["options"]["float_layers"]) >= {w["name"] for w in worst}
    # picked among the artifact, the quantization ladder's rungs (none verified) and the fallback's candidates
    ladder = tfl["conversion"]["quantization_ladder"]
    assert ladder["chosen"] is None and [r["rung"] for r in ladder["tried"]] == ["equalized", "int16_activations",
                                                                           "int16_bias_corrected"]
    m = 1 + len(ladder["tried"]) + len(schedule(record["quantized_layers"]))
    assert tfl["options"]["candidates"] == m
    assert tfl["checks"]["top1_agreement"]["confidence"] == pytest.approx(1 - 0.05 / m, abs=1e-5)
    assert tfl["checks"]["top1_agreement"]["value"] >= 0.98
    assert not (out / "artifacts" / ".fallback").exists()
    from dnnkit.manifest.table import table

    assert f"FALLBACK tflite_int8: {len(worst)} of {record['quantized_layers']} quantized layers kept float" \
        in table(manifest)
    # an independent check of the file in place: LiteRT, int8 input quantized as an app would
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(out / tfl["path"]))
    interp.allocate_tensors()
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    assert inp["dtype"] == np.int32  # token ids stay integers
    x = data["x_test"]
    got = []
    for i in range(len(x)):
        interp.set_tensor(inp["index"], x[i:i + 1])
        interp.invoke()
        got.append(interp.get_tensor(outp["index"])[0].astype(np.float32))
    agreement = float(np.mean(np.argmax(got, 1) == np.argmax(model.predict(x, verbose=0), 1)))
    assert agreement >= 0.98, agreement
    # ONNX int8 leaves attention's Add/Softmax float (only Conv/MatMul/Gemm quantized): no fallback needed
    assert onnx_entry["status"] == "verified" and "selective_fallback" not in onnx_entry["conversion"]
    again = dnnkit.verify(out)
    assert again["status"] == "verified" and again["artifacts"][0]["checks"]["top1_agreement"]["confidence"] \
        == pytest.approx(1 - 0.05 / m, abs=1e-5)


def test_a_goal_no_candidate_meets_keeps_the_artifact_failed_with_what_was_tried(trained_runs, tmp_path):
    import dnnkit
    from dnnkit.config.recipe import recipe_from_dict

    strict = {**INT8_BOTH, "verify": {"min_agreement": 0.9999}}  # beyond what 1797 inputs can show
    manifest = dnnkit.export(trained_runs["digits_mlp"].model_path, recipe_from_dict(strict), tmp_path / "out",
                             data="digits")
    assert manifest["status"] == "failed"
    for entry, ranked_by, op in zip(manifest["artifacts"], ("tf.lite", "onnxruntime"), ("FULLY_CONNECTED", "MatMul")):
        record = entry["conversion"]["selective_fallback"]
        assert entry["status"] == "failed" and record["ranked_by"].startswith(ranked_by)
        assert record["quantized_layers"] == 3 and [t["float_layers"] for t in record["tried"]] == [1]
        assert record["worst_layers"][0]["op"] == op
        assert [w["sqnr_db"] for w in record["worst_layers"]] == sorted(w["sqnr_db"] for w in record["worst_layers"])
        assert "selective float fallback: not verified with up to 1 of 3 layers float" in entry["failure_reason"]
        assert not record.get("chosen") and not entry["options"]["float_layers"]
        assert "selective_float" not in entry["fallbacks"]
    assert not (tmp_path / "out" / "artifacts" / ".fallback").exists()


def test_a_model_with_one_quantized_layer_gets_no_all_float_candidate(tmp_path):
    """Half at most may stay float: with one quantized node, the fallback has no candidate (an all-float
    file would pass as int8)."""
    import keras
    from sklearn.datasets import load_digits

    import dnnkit
    from dnnkit.config.recipe import recipe_from_dict

    x, y = load_digits(return_X_y=True)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,), name="pixels"), keras.layers.Dense(10, name="logits")])
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x.astype("float32") / 16, y, epochs=5, verbose=0)
    recipe = recipe_from_dict({"name": "r", "verify": {"min_agreement": 0.9999}, "artifacts": [
        {"name": "onnx_int8", "format": "onnx", "precision": "int8", "selective_fallback": True}]})
    manifest = dnnkit.export(model, recipe, tmp_path / "out", data=(x.astype("float32") / 16, y.astype("int32")))
    entry = manifest["artifacts"][0]
    record = entry["conversion"]["selective_fallback"]
    assert entry["status"] != "verified" and record["quantized_layers"] == 1 and "tried" not in record
    assert "1 quantized layer: keeping it float leaves no int8 layer" in entry["failure_reason"]


def test_a_candidate_more_than_twice_the_int8_file_is_recorded_not_adopted(tmp_path, monkeypatch):
    """Float layers that more than double the file leave no int8 artifact worth the name (the runtimes
    are replaced by fakes: every candidate verifies, each float layer adds 1500 bytes to 1000)."""
    import dnnkit.jobs.fallback as fallback
    from dnnkit.jobs.fallback import selective_fallback
    from dnnkit.config.recipe import Recipe

    art = ArtifactConfig(name="q", format="tflite", precision="int8", selective_fallback=True)
    entry = {"name": "q", "path": "artifacts/q.tflite", "converted": True, "status": "failed", "bytes": 1000,
             "failures": [{"check": "top1_agreement"}], "inconclusive": [], "failure_reason": "agreement 0.9",
             "conversion": {}, "fallbacks": []}
    ranking = [{"name": f"t{i}", "op": "CONV_2D", "sqnr_db": float(i), "nodes": [f"t{i}"]} for i in range(8)]

    def convert(model_path, arts, out_dir, rep, **kw):
        if kw.get("attempt") == "rank":
            return {"q": {"status": "done", "info": {"ranking": ranking}, "seconds": 0.1}}
        return {a.name: {"status": "done", "info": {}, "seconds": 0.1} for a in arts}

    def verify(items, ref, recipe, **kw):
        return {i["name"]: {"status": "verified", "bytes": 1000 + 1500 * len(i["options"]["float_layers"]),
                            "checks": {"top1_agreement": {"value": 0.99}}} for i in items}

    monkeypatch.setattr(fallback, "convert_artifacts", convert)
    monkeypatch.setattr(fallback, "verify_artifacts", verify)
    selective_fallback([entry], {"q": art}, Recipe(name="r", artifacts=(art,)), None, model_path=tmp_path / "m",
                       out=tmp_path, representative=None, metadata={}, unsafe=False, fake_quant=False)
    record = entry["conversion"]["selective_fallback"]
    assert [(t["float_layers"], t["status"]) for t in record["tried"]] == [(1, "too_large"), (2, "too_large"),
                                                                         (4, "too_large")]
    assert "2500 bytes > 2 x the all-int8 file (2000)" in record["tried"][0]["reason"]
    assert entry["status"] == "failed" and not record.get("chosen") and entry["fallbacks"] == []
