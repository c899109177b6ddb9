"""The quantization ladder (issue 26): an int8 artifact that fails its value checks is quantized again in better
ways (graph preparation, percentile ranges, int16 activations) before any layer is left float; the first rung that
verifies at no more than 1.25x the all-int8 size replaces it, and every rung tried is recorded."""

import json

import numpy as np
import pytest

from dnnkit.config.recipe import ArtifactConfig, Recipe, RecipeError, recipe_from_dict
from dnnkit.jobs.ladder import MAX_SIZE_GROWTH, RUNGS, quantization_ladder, rungs_for

INT8_BOTH = {"name": "int8", "artifacts": [
    {"name": "tflite_int8", "format": "tflite", "precision": "int8", "io": "int8", "selective_fallback": True},
    {"name": "onnx_int8", "format": "onnx", "precision": "int8", "selective_fallback": True},
]}


def wide_channel_model(n=3000, train=1000, seed=0, activation=None):
    """A conv layer with one output channel 250x wider than its 15 others, read by a 1x1 conv that all but
    ignores that channel: per-tensor int8 activations spend their 256 steps on the wide channel and round the
    others to a step or two (agreement ~0.26 of 4 classes), int16 ones keep them. With no activation between the
    two convs, cross-layer equalization moves the width into the 1x1 conv's weights; with swish it cannot.
    Labels are the model's own classes on inputs it decides clearly (top-2 margin over a tenth of the logits'
    spread)."""
    import keras

    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(2 * n, 6, 6, 2)).astype("float32")
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6, 6, 2), name="image")
    wide = keras.layers.Conv2D(16, 3, padding="same", activation=activation, name="wide")
    mix = keras.layers.Conv2D(8, 1, name="mix")
    model = keras.Model(inp, keras.layers.Dense(4, name="logits")(keras.layers.Flatten()(mix(wide(inp)))))
    kernel = wide.get_weights()[0]
    kernel[..., 0] *= 250.0
    wide.set_weights([kernel, np.zeros(16, "float32")])
    kernel = mix.get_weights()[0]
    kernel[0, 0, 0, :] = 1e-4
    mix.set_weights([kernel, np.zeros(8, "float32")])
    out = model.predict(x, verbose=0)
    top2 = np.sort(out, -1)[:, -2:]
    clear = (top2[:, 1] - top2[:, 0]) > 0.1 * out.std()
    x, y = x[clear][:n], out[clear][:n].argmax(-1).astype("int32")
    return model, {"x_train": x[:train], "y_train": y[:train], "x_test": x[train:], "y_test": y[train:]}


def test_rungs_are_per_format_in_order_and_skip_what_the_artifact_already_does():
    onnx = ArtifactConfig(name="o", format="onnx", precision="int8", selective_fallback=True)
    assert [r for r, _ in rungs_for(onnx)] == ["graph_prep", "percentile", "equalized", "int16_activations",
                                               "int16_bias_corrected"]
    assert [(v.graph_prep, v.calibration, v.activations, v.bias_correction, v.equalization)
            for _, v in rungs_for(onnx)] == [
        (True, "minmax", "int8", False, False), (True, "percentile", "int8", False, False),
        (True, "minmax", "int8", False, True), (True, "minmax", "int16", False, False),
        (True, "minmax", "int16", True, False)]
    assert all(not v.selective_fallback for _, v in rungs_for(onnx))
    tfl = ArtifactConfig(name="t", format="tflite", precision="int8", io="int8", selective_fallback=True)
    (rung0, variant0), (rung, variant), (rung2, variant2) = rungs_for(tfl)
    assert rung0 == "equalized" and variant0.equalization and (variant0.io, variant0.activations) == ("int8", "int8")
    assert rung == "int16_activations" and variant.activations == "int16" and variant.io == "float"
    assert rung2 == "int16_bias_corrected" and variant2.bias_correction and not variant.bias_correction
    assert variant.float_fallback  # ops without a 16x8 kernel stay float
    assert [r for r, _ in rungs_for(ArtifactConfig(name="t", format="tflite", precision="int8", activations="int16",
                                                   float_fallback=True))] == ["equalized", "int16_bias_corrected"]
    assert [r for r, _ in rungs_for(ArtifactConfig(name="o", format="onnx", precision="int8", graph_prep=True))] \
        == ["percentile", "equalized", "int16_activations", "int16_bias_corrected"]
    assert set(RUNGS) == {"onnx", "tflite"}


def test_recipe_fields_of_the_ladder_are_checked():
    art = recipe_from_dict({"name": "r", "artifacts": [
        {"name": "o", "format": "onnx", "precision": "int8", "graph_prep": True, "calibration": "percentile",
         "activations": "int16", "bias_correction": True}]}).artifacts[0]
    assert (art.graph_prep, art.calibration, art.activations, art.bias_correction) == (True, "percentile", "int16",
                                                                                       True)
    assert {"graph_prep", "calibration", "activations", "bias_correction"} <= set(art.to_dict())
    plain = ArtifactConfig(name="o", format="onnx", precision="int8").to_dict()  # defaults stay out of manifests
    assert not {"graph_prep", "calibration", "activations", "bias_correction"} & set(plain)
    with pytest.raises(RecipeError, match=r"artifacts\[0\]\.io: expected 'float' with activations = 'int16'"):
        recipe_from_dict({"name": "r", "artifacts": [
            {"name": "t", "format": "tflite", "precision": "int8", "io": "int8", "activations": "int16"}]})
    with pytest.raises(RecipeError, match=r"calibration: expected one of 'minmax', 'percentile', 'entropy', "
                                          r'got "kl"'):
        recipe_from_dict({"name": "r", "artifacts": [
            {"name": "o", "format": "onnx", "precision": "int8", "calibration": "kl"}]})
    with pytest.raises(RecipeError, match="graph_prep"):  # an ONNX lever: unknown on a TFLite artifact
        recipe_from_dict({"name": "r", "artifacts": [
            {"name": "t", "format": "tflite", "precision": "int8", "graph_prep": True}]})


def _entry(bytes_=1000):
    return {"name": "q", "path": "artifacts/q.onnx", "converted": True, "status": "failed", "bytes": bytes_,
            "failures": [{"check": "top1_agreement"}], "inconclusive": [], "failure_reason": "agreement 0.5",
            "checks": {"top1_agreement": {"value": 0.5}}, "conversion": {}, "fallbacks": []}


def test_a_verified_rung_over_the_size_limit_is_recorded_not_adopted(tmp_path, monkeypatch):
    """Fakes for the runtimes: every rung verifies; int16 activations' file is 1.3x the all-int8 one."""
    import dnnkit.jobs.ladder as ladder

    art = ArtifactConfig(name="q", format="onnx", precision="int8", selective_fallback=True)
    sizes = {"graph_prep": 1000, "percentile": 1000, "equalized": 1000, "int16_activations": 1300,
             "int16_bias_corrected": 1300}
    seen = []

    def convert(model_path, arts, out_dir, rep, **kw):
        seen.extend(a.name for a in arts)
        return {a.name: {"status": "done", "info": {}, "seconds": 0.1} for a in arts}

    def verify(items, ref, recipe, **kw):
        return {i["name"]: {"status": "failed" if "graph_prep" in i["name"] else "verified",
                            "bytes": sizes[i["name"].split("~")[1]],
                            "checks": {"top1_agreement": {"value": 0.97 if "graph_prep" in i["name"] else 0.99}}}
                for i in items}

    monkeypatch.setattr(ladder, "convert_artifacts", convert)
    monkeypatch.setattr(ladder, "verify_artifacts", verify)
    monkeypatch.setattr(ladder, "adopt", lambda entry, *a, **k: entry.update(status="verified"))
    entries, arts = [_entry()], {"q": art}
    quantization_ladder(entries, arts, Recipe(name="r", artifacts=(art,)), None, model_path=tmp_path / "m",
                        out=tmp_path, representative=None, metadata={}, unsafe=False, fake_quant=False)
    record = entries[0]["conversion"]["quantization_ladder"]
    assert seen == ["q~graph_prep", "q~percentile", "q~equalized", "q~int16_activations", "q~int16_bias_corrected"]
    assert [(r["rung"], r["status"]) for r in record["tried"]] == [
        ("graph_prep", "failed"), ("percentile", "verified"), ("equalized", "verified"),
        ("int16_activations", "too_large"), ("int16_bias_corrected", "too_large")]
    assert record["chosen"] == "percentile" and entries[0]["status"] == "verified"
    # with the first two failing, the verified int16 file over 1.25x is not the int8 artifact
    monkeypatch.setattr(ladder, "verify_artifacts", lambda items, ref, recipe, **kw: {
        i["name"]: {**verify([i], ref, recipe)[i["name"]],
                    "status": "verified" if "int16" in i["name"] else "failed"} for i in items})
    entries = [_entry()]
    quantization_ladder(entries, arts, Recipe(name="r", artifacts=(art,)), None, model_path=tmp_path / "m",
                        out=tmp_path, representative=None, metadata={}, unsafe=False, fake_quant=False)
    record = entries[0]["conversion"]["quantization_ladder"]
    assert record["chosen"] is None and record["tried"][-1]["status"] == "too_large"
    assert f"1300 bytes > {MAX_SIZE_GROWTH:g} x the all-int8 file (1250)" in record["tried"][-1]["reason"]
    assert entries[0]["status"] == "failed" and "quantization ladder: graph_prep 0.97" in entries[0]["failure_reason"]
    assert arts["q"].candidates == 1 + 5  # the float fallback's verdicts account for the rungs tried


def test_an_artifact_that_passes_plain_int8_pays_nothing(tmp_path, monkeypatch):
    import dnnkit.jobs.ladder as ladder

    def never(*a, **k):
        raise AssertionError("no candidate for a verified artifact")

    monkeypatch.setattr(ladder, "convert_artifacts", never)
    art = ArtifactConfig(name="q", format="onnx", precision="int8", selective_fallback=True)
    entry = {**_entry(), "status": "verified", "failures": []}
    quantization_ladder([entry], {"q": art}, Recipe(name="r", artifacts=(art,)), None, model_path=tmp_path,
                        out=tmp_path, representative=None, metadata={}, unsafe=False, fake_quant=False)
    assert "quantization_ladder" not in entry["conversion"]


def test_int16_activations_rescue_a_layer_whose_channels_are_250x_apart(tmp_path):
    import onnx
    from ai_edge_litert.interpreter import Interpreter
    from onnx import numpy_helper

    import dnnkit
    from dnnkit.manifest.table import table

    model, data = wide_channel_model(activation="swish")
    out = tmp_path / "out"
    manifest = dnnkit.export(model, recipe_from_dict(INT8_BOTH), out, data=data)
    assert manifest["status"] == "verified", table(manifest)
    ref = model.predict(data["x_test"], verbose=0).argmax(-1)
    for entry in manifest["artifacts"]:
        record = entry["conversion"]["quantization_ladder"]
        first = record["first_attempt"]
        assert first["status"] == "failed" and first["top1_agreement"] < 0.5, first
        rungs = [r for r, _ in RUNGS[entry["format"]]]
        assert [r["rung"] for r in record["tried"]] == rungs
        # graph preparation and percentile ranges cannot separate one tensor's channels: tried, not applied;
        # equalization cannot cross swish: refused before any conversion
        equalized = record["tried"][rungs.index("equalized")]
        assert "cross-layer equalization: no two Conv/Dense layers joined" in equalized["reason"]
        chosen = record["tried"][rungs.index("int16_activations")]
        assert all(r["status"] == "failed" for r in record["tried"][:rungs.index("int16_activations")])
        assert record["chosen"] == "int16_activations" == chosen["rung"] and chosen["status"] == "verified"
        assert chosen["top1_agreement"] >= 0.99 and chosen["bytes"] <= MAX_SIZE_GROWTH * first["bytes"]
        assert entry["status"] == "verified" and entry["options"]["activations"] == "int16"
        assert "int16_activations" in entry["fallbacks"] and "selective_fallback" not in entry["conversion"]
        m = 1 + len(rungs)
        assert entry["checks"]["top1_agreement"]["confidence"] == pytest.approx(1 - 0.05 / m, abs=1e-5)
        assert f"LADDER {entry['name']}: took int16_activations" in table(manifest)
    tfl, onx = manifest["artifacts"]
    # the TFLite file, read independently: int8 weights, int16 activations, float I/O (16x8 kernels)
    interp = Interpreter(model_path=str(out / tfl["path"]))
    interp.allocate_tensors()
    tensors = {t["name"]: t for t in interp.get_tensor_details()}
    assert tfl["options"]["io"] == "float" and interp.get_input_details()[0]["dtype"] == np.float32
    convs = [t for name, t in tensors.items() if "wide" in name.lower() and t["dtype"] != np.float32]
    assert {t["dtype"] for t in convs} >= {np.int8, np.int16}, [(t["name"], t["dtype"]) for t in convs]
    inp, outp = interp.get_input_details()[0], interp.get_output_details()[0]
    got = []
    for i in range(len(data["x_test"])):
        interp.set_tensor(inp["index"], data["x_test"][i:i + 1])
        interp.invoke()
        got.append(interp.get_tensor(outp["index"])[0])
    assert float(np.mean(np.argmax(got, 1) == ref)) >= 0.99
    # the ONNX file: weights int8, activation zero points int16 (com.microsoft QDQ)
    proto = onnx.load(str(out / onx["path"]))
    zero_points = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer if i.name.endswith("zero_point")}
    assert {z.dtype for n, z in zero_points.items() if "ReadVariableOp" in n} == {np.dtype(np.int8)}
    assert {z.dtype for n, z in zero_points.items() if "ReadVariableOp" not in n} == {np.dtype(np.int16)}
    assert onx["options"]["graph_prep"] is True and onx["conversion"]["weight_bits"] == 8
    # the conversion record describes the adopted file (converted afresh), not the all-int8 one it replaced
    assert "quantized_from" not in onx["conversion"] and onx["conversion"]["activations"] == "int16"
    assert not (out / "artifacts" / ".ladder").exists()
    html = (out / "report.html").read_text()
    assert "LADDER onnx_int8: took int16_activations" in html
    again = dnnkit.verify(out)
    assert again["status"] == "verified"
    assert json.loads((out / "manifest.json").read_text())["artifacts"][1]["options"]["activations"] == "int16"


def test_equalization_rescues_the_same_layer_when_nothing_nonlinear_lies_between(tmp_path):
    """The wide channel read by the 1x1 conv directly: equalization keeps int8 activations and int8 kernels."""
    from ai_edge_litert.interpreter import Interpreter

    import dnnkit
    from dnnkit.manifest.table import table

    model, data = wide_channel_model()
    out = tmp_path / "out"
    manifest = dnnkit.export(model, recipe_from_dict(INT8_BOTH), out, data=data)
    assert manifest["status"] == "verified", table(manifest)
    for entry in manifest["artifacts"]:
        record = entry["conversion"]["quantization_ladder"]
        assert record["first_attempt"]["top1_agreement"] < 0.5
        assert record["chosen"] == "equalized", record["tried"]
        chosen = [r for r in record["tried"] if r["rung"] == "equalized"][0]
        assert chosen["top1_agreement"] >= 0.99 and chosen["bytes"] <= 1.05 * record["first_attempt"]["bytes"]
        assert entry["options"]["equalization"] is True and entry["options"].get("activations", "int8") == "int8"
        assert entry["conversion"]["equalization"]["pairs"] == 1
        assert entry["conversion"]["equalization"]["spread_before"] > 100 > entry["conversion"]["equalization"][
            "spread_after"]
        assert f"LADDER {entry['name']}: took equalized" in table(manifest)
    interp = Interpreter(model_path=str(out / manifest["artifacts"][0]["path"]))
    assert {t["dtype"] for t in interp.get_tensor_details() if "wide" in t["name"].lower()} <= {np.int8, np.int32}
