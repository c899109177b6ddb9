"""An answer per step or per pixel, end to end: the shipped sequence specs trained on their built-in tasks and
exported, and a brought segmentation model and autoencoder, every artifact checked element by element."""

import json

import numpy as np
import pytest

from conftest import MODELS, cli
from dnnkit.config.model import load_spec
from dnnkit.data.load import load_data

pytestmark = pytest.mark.slow


def artifact_checks(manifest):
    return {a["name"]: a for a in manifest["artifacts"]}


def test_brackets_lstm_tags_every_token_and_every_artifact_agrees_step_by_step(tmp_path):
    out = tmp_path / "brackets"
    result = cli("run", str(MODELS / "brackets_lstm.toml"), "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    ref = manifest["reference"]
    assert ref["head"] == "tagging"
    assert ref["metrics"]["accuracy"] >= 0.98 and ref["metrics"]["mean_iou"] >= 0.95  # the spec's stated floor
    ds = load_data(load_spec(MODELS / "brackets_lstm.toml"))
    labelled = int(np.sum(ds.y_test >= 0))
    arts = artifact_checks(manifest)
    assert {"saved_model", "tflite_fp32", "tflite_fp16", "tflite_dynamic_int8", "tflite_int8", "onnx_fp32",
            "onnx_int8"} <= set(arts)
    for name, entry in arts.items():
        assert entry["status"] == "verified", (name, entry.get("failures"))
        agreement = entry["checks"]["top1_agreement"]
        assert agreement["n"] % 32 == 0 and agreement["n"] >= 32 * len(ds.y_test)  # every step of every input
        if entry["checked_as"] == "quantized":
            assert entry["checks"]["accuracy_drop"]["n"] == labelled  # padding steps are not scored
        if entry["format"] == "tflite":
            assert not entry["flex_ops"]
    assert "tagging" in result.stdout or "accuracy" in result.stdout


def test_series_gru_forecasts_each_step_far_better_than_persistence(tmp_path):
    recipe = tmp_path / "forecast.toml"
    recipe.write_text("""name = "forecast"
[[artifacts]]
name = "tflite_fp32"
format = "tflite"
precision = "fp32"
[[artifacts]]
name = "tflite_dynamic_int8"
format = "tflite"
precision = "dynamic_int8"
[[artifacts]]
name = "onnx_fp32"
format = "onnx"
precision = "fp32"
[[artifacts]]
name = "onnx_int8"
format = "onnx"
precision = "int8"
""")
    out = tmp_path / "series"
    result = cli("run", str(MODELS / "series_gru.toml"), "--recipe", str(recipe), "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    ds = load_data(load_spec(MODELS / "series_gru.toml"))
    persistence = float(np.sqrt(np.mean((ds.x_test - ds.y_test) ** 2)))
    ref = manifest["reference"]
    assert ref["head"] == "sequence_regression" and ref["metrics"]["rmse"] <= 0.5 * persistence
    for name, entry in artifact_checks(manifest).items():
        assert entry["status"] == "verified", (name, entry.get("failures"))
        if entry["checked_as"] == "quantized":
            assert entry["checks"]["rmse_ratio"]["value"] <= 1.1


SEGMENT = r"""
import sys, json, numpy as np, keras, dnnkit
rng = np.random.default_rng(0)
n, s = 600, 16
x = rng.normal(0, 0.3, (n, s, s, 1)).astype("float32")
y = np.zeros((n, s, s), "int32")
for i in range(n):
    for cls in (1, 2):
        r, c = rng.integers(0, s - 5, 2); h, w = rng.integers(3, 6, 2)
        y[i, r:r + h, c:c + w] = cls
        x[i, r:r + h, c:c + w, 0] += 1.0 if cls == 1 else -1.0
keras.utils.set_random_seed(0)
inp = keras.Input((s, s, 1))
a = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inp)
b = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(keras.layers.MaxPooling2D()(a))
m = keras.layers.Concatenate()([keras.layers.UpSampling2D()(b), a])
out = keras.layers.Conv2D(3, 1, name="mask")(keras.layers.Conv2D(16, 3, padding="same", activation="relu")(m))
unet = keras.Model(inp, out, name="unet_tiny")
unet.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
unet.fit(x[:480], y[:480], epochs=8, verbose=0)
h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
ae = keras.Model(inp, keras.layers.Conv2D(1, 3, padding="same", name="recon")(h), name="ae_tiny")
ae.compile("adam", "mse")
ae.fit(x[:480], x[:480], epochs=5, verbose=0)
for model, target, folder in ((unet, y, "unet"), (ae, x, "ae")):
    dnnkit.export(model, "server-onnx", f"{sys.argv[1]}/{folder}", data=(x, target), verbose=0)
"""


def test_a_brought_segmentation_model_and_autoencoder_are_judged_per_pixel(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "segment.py"
    script.write_text(SEGMENT)
    run = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    unet = json.loads((tmp_path / "unet" / "manifest.json").read_text())
    assert unet["status"] == "verified" and unet["reference"]["head"] == "tagging"
    assert unet["reference"]["metrics"]["accuracy"] >= 0.9 and "mean_iou" in unet["reference"]["metrics"]
    for entry in unet["artifacts"]:
        assert entry["checks"]["top1_agreement"]["n"] % (16 * 16) == 0  # every pixel counts
    ae = json.loads((tmp_path / "ae" / "manifest.json").read_text())
    assert ae["status"] == "verified" and ae["reference"]["head"] == "sequence_regression"
    assert ae["reference"]["metrics"]["psnr_db"] > 10
    int8 = artifact_checks(ae)["onnx_int8"]
    assert int8["checks"]["rmse_ratio"]["value"] <= 1.1


SMALL = """name = "small"
[[artifacts]]
name = "tflite_fp32"
format = "tflite"
precision = "fp32"
[[artifacts]]
name = "onnx_fp32"
format = "onnx"
precision = "fp32"
"""


def test_reverse_lm_generates_through_every_step_artifact_exactly_as_keras(tmp_path):
    import subprocess
    import sys

    from conftest import ROOT
    from dnnkit.core.generation import DEFAULT_STEP_ARTIFACTS

    recipe = tmp_path / "small.toml"
    recipe.write_text(SMALL)
    out = tmp_path / "reverse"
    result = cli("run", str(MODELS / "reverse_lm.toml"), "--recipe", str(recipe), "--out", str(out), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reference"]["metrics"]["exact_match"] >= 0.95  # the spec's stated floor (teacher-forced)
    gen = manifest["generation"]
    assert gen["prompts"] >= 200 and gen["capacity"] == 16 and gen["keras_exact_match"] >= 0.95
    assert set(gen["artifacts"]) == set(DEFAULT_STEP_ARTIFACTS)
    for name, entry in gen["artifacts"].items():
        assert entry["status"] == "verified", (name, entry.get("failures"))
        assert (out / entry["path"]).exists() and entry["path"].startswith("artifacts/generation/")
        if entry["precision"] == "fp32":
            assert entry["same_as_keras"] == 1.0  # every token of every held-out prompt
        if entry["format"] == "tflite":
            assert entry["ops"] and not entry["flex_ops"] and "WHILE" not in entry["ops"]
    assert "decoder_tflite_fp32: 1.0000 of sequences as Keras's" in result.stdout
    # the loops a phone app and a server write, with nothing but their runtime
    for example in ("generate_tflite.py", "generate_onnx.py"):
        run = subprocess.run([sys.executable, str(ROOT / "examples" / example), str(out), "--text", "31415="],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip().splitlines()[-1].startswith("31415= -> 51413")
    # a generation process that crashes is contained: the other artifacts stand, the verdict fails
    again = tmp_path / "again"
    crashed = cli("compress", str(out / "run"), "--recipe", str(recipe), "--out", str(again), timeout=900,
                  env={"DNNKIT_INJECT_GENERATION_FAULT": "generation:crash"})
    assert crashed.returncode == 1, crashed.stdout[-2000:] + crashed.stderr[-2000:]
    manifest = json.loads((again / "manifest.json").read_text())
    assert all(e["status"] == "verified" for e in manifest["artifacts"]) and manifest["status"] == "failed"
    reasons = [f for e in manifest["generation"]["artifacts"].values() for f in e["failures"]]
    assert reasons and all("generation process crashed" in r for r in reasons)
    assert not (again / "artifacts" / "generation").exists()
