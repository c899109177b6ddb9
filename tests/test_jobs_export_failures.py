"""Failures: a crashing or hanging converter is contained, tampering and parity misses fail
verification with exit 1, and bad recipes/models/paths are one-line exit-2 errors."""

import json
import shutil

import pytest

import numpy as np

from conftest import MODELS, RECIPES, ROOT, cli, error_lines
from dnnkit.cli import main

RECIPE = """
name = "faults"
[[artifacts]]
name = "saved_model"
format = "saved_model"
[[artifacts]]
name = "tflite_fp32"
format = "tflite"
[[artifacts]]
name = "tflite_crash"
format = "tflite"
precision = "fp16"
[[artifacts]]
name = "onnx_hang"
format = "onnx"
timeout_s = 3
[[artifacts]]
name = "tflite_dynamic_int8"
format = "tflite"
precision = "dynamic_int8"
"""


@pytest.fixture(scope="module")
def mlp_model(trained_runs):
    return trained_runs["digits_mlp"].model_path


@pytest.mark.slow
def test_crash_and_hang_are_contained(mlp_model, tmp_path):
    recipe = tmp_path / "faults.toml"
    recipe.write_text(RECIPE)
    out = tmp_path / "out"
    result = cli("export", str(mlp_model), "--recipe", str(recipe), "--data", "digits", "--out", str(out),
                 env={"DNNKIT_INJECT_FAULT": "tflite_crash:crash,onnx_hang:hang"})
    assert result.returncode == 1, result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    status = {e["name"]: e for e in manifest["artifacts"]}
    assert status["tflite_crash"]["status"] == "failed"
    assert "crashed (killed by signal SIGSEGV)" in status["tflite_crash"]["failure_reason"]
    assert status["onnx_hang"]["status"] == "failed"
    assert "timed out after 3 s" in status["onnx_hang"]["failure_reason"]
    for name in ("saved_model", "tflite_fp32", "tflite_dynamic_int8"):
        assert status[name]["status"] == "verified", status[name]
    assert not (out / "artifacts" / "tflite_crash.tflite").exists(), "no half-written file"
    assert not (out / "artifacts" / "onnx_hang.onnx").exists()
    assert "FAILED tflite_crash: conversion failed: converter process crashed" in result.stdout
    assert "3 of 5 artifacts verified" in result.stdout


def test_converter_error_is_reported_and_rest_go_on(mlp_model, tmp_path, monkeypatch):
    from dnnkit.jobs.export import export

    monkeypatch.setenv("DNNKIT_INJECT_FAULT", "tflite_fp32:error")
    manifest = export(mlp_model, RECIPES / "mobile.toml", tmp_path / "o", data="digits")
    assert manifest["status"] == "verified"  # mobile.toml has no tflite_fp32: nothing injected
    recipe = tmp_path / "r.toml"
    recipe.write_text(RECIPE.split("[[artifacts]]\nname = \"tflite_crash\"")[0])
    manifest = export(mlp_model, recipe, tmp_path / "o2", data="digits")
    status = {e["name"]: e["status"] for e in manifest["artifacts"]}
    assert status == {"saved_model": "verified", "tflite_fp32": "failed"}
    assert "injected conversion error" in manifest["artifacts"][1]["failure_reason"]


@pytest.fixture()
def export_copy(exported, tmp_path):
    src, _ = exported["digits_cnn"]
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_tampered_artifact_fails_verify(export_copy):
    path = export_copy / "artifacts" / "tflite_fp32.tflite"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))
    result = cli("verify", str(export_copy))
    assert result.returncode == 1
    assert "FAILED tflite_fp32: sha256 mismatch: the file changed after export" in result.stdout
    assert "6 of 7 artifacts verified" in result.stdout


def test_swapped_artifact_fails_on_sha_and_parity(export_copy):
    # A valid model of the wrong precision in place of fp32: loads, runs, but does not match.
    shutil.copyfile(export_copy / "artifacts" / "tflite_dynamic_int8.tflite",
                    export_copy / "artifacts" / "tflite_fp32.tflite")
    result = cli("verify", str(export_copy))
    assert result.returncode == 1
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("FAILED tflite_fp32"))
    assert "sha256 mismatch" in line and "max abs diff" in line
    entry = next(e for e in json.loads((export_copy / "manifest.json").read_text())["artifacts"]
                 if e["name"] == "tflite_fp32")
    by_check = {f["check"]: f for f in entry["failures"]}
    assert {"sha256", "float_parity"} <= set(by_check)  # (and second_batch: it is wrong at any batch)
    assert by_check["float_parity"]["observed"] > by_check["float_parity"]["limit"]


def test_parity_miss_fails_export(mlp_model, tmp_path):
    recipe = tmp_path / "strict.toml"
    recipe.write_text('name = "strict"\n[verify]\natol_fp16 = 1e-7\nrtol_fp16 = 0.0\nfp16_factor = 0.0\n'
                      '[[artifacts]]\nname = "tflite_fp16"\nformat = "tflite"\nprecision = "fp16"\n')
    result = cli("export", str(mlp_model), "--recipe", str(recipe), "--data", "digits",
                 "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    assert "FAILED tflite_fp16: max abs diff" in result.stdout and "> atol 1e-07 + rtol 0" in result.stdout
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    failure = next(f for f in manifest["artifacts"][0]["failures"] if f["check"] == "float_parity")
    assert failure["check"] == "float_parity" and failure["limit"] == 1e-7 and failure["observed"] > 1e-7
    assert manifest["failures"][0]["check"] == "artifact" and manifest["failures"][0]["artifact"] == "tflite_fp16"
    # the failed file is kept apart: nothing under artifacts/ failed its checks
    assert manifest["artifacts"][0]["path"] == "failed/tflite_fp16.tflite"
    assert (tmp_path / "o" / "failed" / "tflite_fp16.tflite").is_file()
    assert not (tmp_path / "o" / "artifacts" / "tflite_fp16.tflite").exists()
    # ... and says so itself, to an app developer holding only the file (issue 24, B2)
    from dnnkit.artifacts.metadata import read_tflite_metadata

    stored = read_tflite_metadata(tmp_path / "o" / "failed" / "tflite_fp16.tflite")["verification"]
    assert stored["status"] == "failed" and stored["reason"].startswith("max abs diff")
    assert stored["criteria"] == "strict" and stored == manifest["artifacts"][0]["metadata"]["verification"]
    again = cli("verify", str(tmp_path / "o"), "--recipe", str(recipe))
    assert again.returncode == 1 and "FAILED tflite_fp16: max abs diff" in again.stdout, again.stdout


BAD_RECIPES = {
    "unknown_key": ('name = "r"\ncolour = 1\n[[artifacts]]\nname = "a"\nformat = "onnx"\n', "colour: unknown key"),
    "unknown_format": ('name = "r"\n[[artifacts]]\nname = "a"\nformat = "coreml"\n',
                       "artifacts[0].format: expected one of 'saved_model', 'tflite', 'onnx', got \"coreml\""),
    "precision_for_format": ('name = "r"\n[[artifacts]]\nname = "a"\nformat = "onnx"\nprecision = "fp16"\n',
                             "artifacts[0].precision: expected one of 'fp32', 'int8', got \"fp16\""),
    "no_artifacts": ('name = "r"\n', "artifacts: expected a non-empty array of [[artifacts]] tables"),
    "duplicate_names": ('name = "r"\n[[artifacts]]\nname = "a"\nformat = "onnx"\n'
                        '[[artifacts]]\nname = "a"\nformat = "tflite"\n', "artifacts[1].name: expected a name not used"),
    "io_on_float": ('name = "r"\n[[artifacts]]\nname = "a"\nformat = "tflite"\nio = "int8"\n',
                    "artifacts[0].io: unknown key"),
    "fallback_on_float": ('name = "r"\n[[artifacts]]\nname = "a"\nformat = "onnx"\nselective_fallback = true\n',
                          "artifacts[0].selective_fallback: unknown key"),
    "bad_float_layers": ('name = "r"\n[[artifacts]]\nname = "a"\nformat = "onnx"\nprecision = "int8"\n'
                         'float_layers = "conv1"\n', "artifacts[0].float_layers: expected a list of layer names"),
    "io_on_16x8": ('name = "r"\n[[artifacts]]\nname = "a"\nformat = "tflite"\nprecision = "int16x8"\nio = "int8"\n',
                   "artifacts[0].io: unknown key"),
    "negative_samples": ('name = "r"\n[[artifacts]]\nname = "a"\nformat = "tflite"\nprecision = "int8"\n'
                         'samples = -5\n', "artifacts[0].samples: expected a positive integer, got -5"),
    "old_opset": ('name = "r"\n[[artifacts]]\nname = "a"\nformat = "onnx"\nopset = 9\n',
                  "artifacts[0].opset: expected an integer >= 13, got 9"),
    "bad_agreement": ('name = "r"\n[verify]\nmin_agreement = 1.5\n[[artifacts]]\nname = "a"\nformat = "onnx"\n',
                      "verify.min_agreement: expected a number >= 0 and <= 1, got 1.5"),
    "bad_name": ('name = "r"\n[[artifacts]]\nname = "../x"\nformat = "onnx"\n', "artifacts[0].name: expected letters"),
    "not_toml": ('name = "r\n', "not valid TOML"),
    "unknown_pass": ('name = "r"\n[[passes]]\ntype = "shrink"\n[[artifacts]]\nname = "a"\nformat = "onnx"\n',
                     "passes[0].type: expected one of 'prune', 'qat', 'distill', 'cluster', got \"shrink\""),
    "bad_structure": ('name = "r"\n[[passes]]\ntype = "prune"\nstructure = "4:2"\n[[artifacts]]\nname = "a"\n'
                      'format = "onnx"\n', 'passes[0].structure: expected an "m:n" pattern with 0 < m < n'),
    "bad_sparsity": ('name = "r"\n[[passes]]\ntype = "prune"\nfinal_sparsity = 1.0\n[[artifacts]]\nname = "a"\n'
                     'format = "onnx"\n', "passes[0].final_sparsity: expected a number >= 0 and < 1, got 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipe_is_one_line_exit_2(case, tmp_path, capsys):
    text, fragment = BAD_RECIPES[case]
    recipe = tmp_path / "bad.toml"
    recipe.write_text(text)
    code = main(["run", str(MODELS / "digits_mlp.toml"), "--recipe", str(recipe), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "o").exists()


def _lambda_model(path):
    import keras

    inp = keras.Input((64,), name="inputs")
    out = keras.layers.Dense(10, name="logits")(keras.layers.Lambda(lambda t: t * 2.0)(inp))
    keras.Model(inp, out).save(path)


@pytest.mark.parametrize("case", ["missing_recipe", "missing_model", "not_keras", "bad_h5", "not_saved_model",
                                  "lambda", "missing_data", "bad_data_shape", "verify_not_export"])
def test_bad_model_or_path_is_one_line_exit_2(case, tmp_path, mlp_model, capsys):
    recipe, model, data = str(RECIPES / "server-onnx.toml"), str(mlp_model), "digits"
    fragment = {"missing_recipe": "recipe file not found", "missing_model": "model: file not found",
                "not_keras": "expected a Keras 3 .keras archive", "lambda": "contains a Lambda layer",
                "bad_h5": "cannot load", "not_saved_model": "is a folder but not a SavedModel",
                "missing_data": "data.source: file not found", "bad_data_shape": "does not match model.input_shape [64]",
                "verify_not_export": "has no manifest.json"}[case]
    if case == "missing_recipe":
        recipe = str(tmp_path / "nope.toml")
    elif case == "missing_model":
        model = str(tmp_path / "nope.keras")
    elif case == "not_keras":
        model = str(tmp_path / "m.bin")
        (tmp_path / "m.bin").write_bytes(b"\x89HDF")
    elif case == "bad_h5":
        model = str(tmp_path / "m.h5")
        (tmp_path / "m.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    elif case == "not_saved_model":
        model = str(tmp_path / "folder")
        (tmp_path / "folder").mkdir()
    elif case == "lambda":
        model = str(tmp_path / "lambda.keras")
        _lambda_model(model)
    elif case == "missing_data":
        data = str(tmp_path / "nope.npz")
    elif case == "bad_data_shape":
        import numpy as np

        data = str(tmp_path / "d.npz")
        np.savez(data, x_train=np.zeros((30, 8, 8), np.float32), y_train=np.arange(30) % 10)
    out = tmp_path / "o"
    if case == "verify_not_export":
        code = main(["verify", str(tmp_path)])
    else:
        code = main(["export", model, "--recipe", recipe, "--data", data, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert not out.exists(), "nothing may be written for bad input"


def test_lambda_model_exports_with_unsafe(tmp_path):
    from dnnkit.jobs.export import export

    model = tmp_path / "lambda.keras"
    _lambda_model(model)
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\n[[artifacts]]\nname = "onnx_fp32"\nformat = "onnx"\n')
    manifest = export(model, recipe, tmp_path / "o", data="digits", unsafe=True)
    assert manifest["artifacts"][0]["status"] == "verified"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    from dnnkit.core.fileio import atomic_path

    target = tmp_path / "a.tflite"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_errors_in_a_real_process_have_no_traceback(tmp_path):
    result = cli("export", str(tmp_path / "x.keras"), "--recipe", str(RECIPES / "all.toml"),
                 "--data", "digits", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert error_lines(result.stderr) == [f"dnnkit: error: model: file not found: {tmp_path / 'x.keras'}"]


def test_an_int8_input_too_coarse_for_its_features_is_named(tmp_path):
    """Raw features whose spreads differ 50x, normalized inside the model: one int8 input scale leaves
    the narrow ones at a few dB; the failure says so and what to do (the keras-io structured-data model)."""
    import keras
    import numpy as np

    import dnnkit
    from dnnkit.config.recipe import recipe_from_dict

    rng = np.random.default_rng(0)
    spread = np.array([1.0, 50.0, 2.0, 1.0, 40.0, 1.5])
    x = (rng.normal(size=(3000, 6)) * spread + rng.uniform(-100, 100, 6)).astype("float32")
    x = np.concatenate([x, np.zeros((3000, 1), "float32")], axis=1)  # a constant feature: not "worst"
    y = ((x[:, 0] - x[:, 0].mean()) / spread[0] + (x[:, 3] - x[:, 3].mean()) / spread[3] > 0).astype("int32")
    keras.utils.set_random_seed(0)
    norm = keras.layers.Normalization()
    norm.adapt(x[:2000])
    inp = keras.Input((7,), name="features")
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(16, activation="relu")(norm(inp))))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:2000], y[:2000], epochs=10, verbose=0)
    recipe = recipe_from_dict({"name": "int8io", "artifacts": [
        {"name": "tflite_int8", "format": "tflite", "precision": "int8", "io": "int8"}]})
    manifest = dnnkit.export(model, recipe, tmp_path / "out", data={"x_train": x[:2000], "y_train": y[:2000],
                                                                    "x_test": x[2000:], "y_test": y[2000:]})
    (entry,) = manifest["artifacts"]
    q = entry["input_quantization"]["features"]
    # one scale for offsets up to +-100 (measured 1.25) on features of spread 1: rounding noise s^2/12 = 0.13
    # against variance 1, 8.8 dB (the artifact agrees with Keras on 0.886 of inputs)
    assert q["worst_feature"] in (0, 3) and q["worst_feature_sqnr_db"] < 12 and q["scale"] > 0.5
    assert entry["status"] != "verified"
    assert "int8 input features: one scale" in entry["failure_reason"] and 'io = "float"' in entry["failure_reason"]


@pytest.mark.parametrize("arrays, fragment", [
    ({"x_train": (300, 20), "y_train": 2}, "x_train: per-sample shape [20] does not match model.input_shape [30]"),
    ({"x_train": (300, 30), "y_train": 7}, "y_train: labels range 0..6, expected 0..1 for model.num_classes = 2"),
    ({"features": (300, 30), "labels": 2}, "array 'x_train' is missing"),
])
def test_data_errors_come_before_tensorflow_loads(tmp_path, arrays, fragment):
    """Issue 24 (B8): wrong-shape data, labels out of range and wrong npz keys were reported well but 20-27 s
    late, after TensorFlow loaded. Read from the .keras file's config, they come first: here TensorFlow cannot
    even be imported (a stand-in package that raises), and the same one line comes out, exit 2."""
    import zipfile

    (tmp_path / "fake" / "tensorflow").mkdir(parents=True)
    (tmp_path / "fake" / "tensorflow" / "__init__.py").write_text("raise ImportError('tensorflow was imported')\n")
    config = {"class_name": "Sequential", "config": {"name": "c", "layers": [
        {"class_name": "InputLayer", "config": {"name": "features", "batch_shape": [None, 30], "dtype": "float32"}},
        {"class_name": "Dense", "config": {"name": "logits", "units": 2, "activation": "linear"}}]}}
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as z:  # read only as far as its config
        z.writestr("config.json", json.dumps(config))
        z.writestr("metadata.json", "{}")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", **{k: rng.normal(size=v).astype("float32") if isinstance(v, tuple)
                                    else rng.integers(0, v, 300) for k, v in arrays.items()})
    result = cli("export", str(tmp_path / "m.keras"), "--recipe", "mobile", "--data", str(tmp_path / "d.npz"),
                 "--out", str(tmp_path / "out"), env={"PYTHONPATH": f"{tmp_path / 'fake'}:{ROOT}",
                                                      "DNNKIT_PRESTART": "0"})
    assert result.returncode == 2, result.stderr
    assert error_lines(result.stderr) == [next(ln for ln in error_lines(result.stderr) if fragment in ln)]
    assert not (tmp_path / "out").exists()
