"""The Python API with objects (issue 9, part 5): a keras.Model and arrays in, a manifest out."""

import json

import numpy as np
import pytest

from conftest import RECIPES, digits_dense


@pytest.fixture(scope="module")
def model_and_data():
    return digits_dense(epochs=8)


def test_export_a_model_object_with_arrays(model_and_data, tmp_path, capsys):
    import dnnkit

    model, x, y = model_and_data
    out = tmp_path / "out"
    manifest = dnnkit.export(model, RECIPES / "server-onnx.toml", out, data=(x, y), verbose=0)
    assert capsys.readouterr().out == ""  # verbose=0, as for model.fit
    assert manifest["status"] == "verified"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    ref = manifest["reference"]
    assert ref["data"] == "reference/data.npz"  # inside the folder, so that it may move
    assert ref["test_samples"] == 360 and ref["inputs_checked"] == 1797  # 20 % held out as the test split
    with np.load(out / "reference" / "data.npz") as saved:
        np.testing.assert_array_equal(saved["x_train"], x)
    # the report says how to use each file: its inputs and outputs, where it is, a load snippet; per class
    onnx_entry = next(e for e in manifest["artifacts"] if e["name"] == "onnx_fp32")
    assert onnx_entry["signature"][0] == {"io": "input", "name": "inputs", "shape": ["batch", 64], "dtype": "float"}
    assert set(manifest["reference"]["per_class"]) == {str(d) for d in range(10)}
    page = (out / "report.html").read_text()
    assert "id='signature'" in page and "id='per-class'" in page
    assert "ort.InferenceSession(&quot;artifacts/onnx_fp32.onnx&quot;)" in page
    moved = out.rename(tmp_path / "moved")
    again = dnnkit.verify(moved)  # the folder stands on its own: model and arrays are inside it
    assert again["status"] == "verified"


def test_export_with_explicit_splits_and_a_recipe_object(model_and_data, tmp_path, capsys):
    import dnnkit
    from dnnkit.config.recipe import recipe_from_dict

    model, x, y = model_and_data
    recipe = recipe_from_dict({"name": "r", "artifacts": [{"name": "tflite_fp32", "format": "tflite"}]})
    data = {"x_train": x[:1200], "y_train": y[:1200], "x_test": x[1200:], "y_test": y[1200:]}
    manifest = dnnkit.export(model, recipe, tmp_path / "out", data=data)
    assert manifest["status"] == "verified" and manifest["reference"]["test_samples"] == len(x) - 1200
    # the default (verbose="auto", as for model.fit) prints what the command line prints: a line per stage and
    # per conversion and check, then the table and where the folder is
    printed = capsys.readouterr().out
    assert "converting 1 artifacts" in printed and "tflite_fp32: done in" in printed
    assert "VERIFIED" in printed and f"output: {tmp_path / 'out'}" in printed and "status: verified" in printed


def test_optimize_takes_exports_argument_order_and_warns_on_the_old_one(model_and_data, tmp_path):
    import dnnkit
    from dnnkit.errors import DataError, DnnkitError

    model, x, y = model_and_data
    with pytest.raises(DnnkitError, match="target: expected one of"):  # the goals are read before anything is written
        dnnkit.optimize(model, None, tmp_path / "new", data=(x, y), target="gpu")
    with pytest.warns(DeprecationWarning, match=r"optimize\(model, recipe, out_dir"):
        with pytest.raises(DnnkitError, match="target: expected one of"):
            dnnkit.optimize(model, tmp_path / "old", data=(x, y), target="gpu")
    with pytest.raises(DataError, match="verbose: expected"):
        dnnkit.export(model, "mobile", tmp_path / "v", data=(x, y), verbose=3)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("data, fragment", [
    ([1, 2, 3], "data: expected \"digits\", a .npz/.csv path, (x, y) arrays or a dict of splits, got list"),
    ({"x": 1, "y": 2}, "data: expected a dict with x_train and y_train"),
    (np.zeros((8, 64), "float32"), "got ndarray; for inputs without labels pass (x, None)"),
])
def test_bad_data_objects_are_clear_errors_with_nothing_written(model_and_data, tmp_path, data, fragment):
    import dnnkit
    from dnnkit.errors import DataError

    model, _, _ = model_and_data
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        dnnkit.export(model, RECIPES / "server-onnx.toml", tmp_path / "out", data=data)
    assert not (tmp_path / "out").exists()


def test_mismatched_arrays_leave_nothing(model_and_data, tmp_path):
    import dnnkit
    from dnnkit.errors import DataError

    model, x, y = model_and_data
    with pytest.raises(DataError):
        dnnkit.export(model, RECIPES / "server-onnx.toml", tmp_path / "out", data=(x[:, :32], y))
    assert not (tmp_path / "out").exists()


def test_compress_a_model_object(model_and_data, tmp_path):
    import dnnkit
    from dnnkit.config.recipe import recipe_from_dict

    model, x, y = model_and_data
    recipe = recipe_from_dict({"name": "p", "passes": [{"type": "prune", "final_sparsity": 0.5, "epochs": 1}],
                               "artifacts": [{"name": "tflite_fp32", "format": "tflite"}]})
    manifest = dnnkit.compress(model, recipe, tmp_path / "out", data=(x, y))
    assert manifest["passes"][0]["type"] == "prune"
    assert manifest["artifacts"][0]["status"] == "verified"


def test_a_near_constant_model_is_warned_about(model_and_data, tmp_path, capsys):
    """Issue 24 (B9): a model that predicts one class for every input exported with every check VERIFIED at
    agreement 1.000 and no word."""
    import keras

    import dnnkit
    from dnnkit.config.recipe import recipe_from_dict

    _, x, y = model_and_data
    bias = np.eye(10, dtype="float32")[1]  # class 1, whatever the input
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(10, kernel_initializer="zeros",
                                                                     bias_initializer=keras.initializers.Constant(bias))])
    recipe = recipe_from_dict({"name": "r", "artifacts": [{"name": "tflite_fp32", "format": "tflite"}]})
    manifest = dnnkit.export(model, recipe, tmp_path / "out", data=(x, y))
    assert manifest["status"] == "verified"  # the file does give the model's answers
    warning = manifest["reference"]["warnings"][0]
    assert warning.startswith(f"the reference predicts class 1 for {len(x)} of {len(x)} inputs;")
    assert f"WARNING reference: {warning}" in capsys.readouterr().out
