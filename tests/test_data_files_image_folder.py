"""Real data (issue 9, part 6): an image folder with one sub-folder per class, resized to the model's
input, used for evaluation, calibration and verification."""

import json

import numpy as np
import pytest

from conftest import RECIPES, cli, error_lines

COLOURS = {"blue": (40, 60, 220), "green": (40, 200, 60), "red": (220, 50, 40)}


def _write_folder(root, per_class=100, seed=0):
    """PNG and JPEG files of varied sizes: a coloured square (the class) on grey noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(20, 40, 2)
            img = rng.integers(60, 120, (h, w, 3)).astype(np.uint8)
            r, c = rng.integers(0, h // 2), rng.integers(0, w // 2)
            img[r:r + h // 2, c:c + w // 2] = np.clip(np.array(colour) + rng.integers(-20, 20, 3), 0, 255)
            Image.fromarray(img).save(root / name / f"{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture(scope="module")
def folder_and_model(tmp_path_factory):
    import keras

    from dnnkit.data.files import load_image_folder as _load_image_folder
    from dnnkit.config.model import ModelConfig

    root = _write_folder(tmp_path_factory.mktemp("images") / "train")
    arrays, classes = _load_image_folder(root, ModelConfig(family="cnn", input_shape=(16, 16, 3)))
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3), name="image")
    h = keras.layers.Rescaling(1 / 255)(inp)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(h))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(arrays["x_train"], arrays["y_train"], epochs=30, verbose=0)
    path = tmp_path_factory.mktemp("model") / "colours.keras"
    model.save(path)
    return root, path, arrays, classes


def test_image_folder_loads_resized_with_class_names(folder_and_model):
    _, _, arrays, classes = folder_and_model
    assert classes == ["blue", "green", "red"]
    assert arrays["x_train"].shape == (300, 16, 16, 3) and arrays["x_train"].dtype == np.float32
    assert 0 <= arrays["x_train"].min() and arrays["x_train"].max() <= 255 and arrays["x_train"].max() > 150
    assert np.bincount(arrays["y_train"]).tolist() == [100, 100, 100]


def test_export_verifies_on_an_image_folder(folder_and_model, tmp_path):
    import onnxruntime as ort

    root, path, _, _ = folder_and_model
    result = cli("export", str(path), "--recipe", str(RECIPES / "server-onnx.toml"), "--data", str(root),
                 "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    ref = manifest["reference"]
    # 300 images: 20 % test (stratified), all 300 checked for agreement; at 300 of 300 agreeing the one-sided
    # Wilson bounds decide both limits (agreement >= 0.991 > 0.98, disagreement <= 0.009 < 0.01)
    assert ref["data"] == str(root.resolve()) and ref["test_samples"] == 60 and ref["inputs_checked"] == 300
    assert ref["metrics"]["accuracy"] >= 0.9
    meta = ort.InferenceSession(str(tmp_path / "out" / "artifacts" / "onnx_fp32.onnx")).get_modelmeta()
    assert json.loads(meta.custom_metadata_map["labels"]) == ["blue", "green", "red"]
    int8 = next(e for e in manifest["artifacts"] if e["name"] == "onnx_int8")
    assert int8["conversion"]["calibration_samples"] == 100  # a classifier's default count, from the 210 training images
    again = cli("verify", str(tmp_path / "out"))
    assert again.returncode == 0, again.stdout + again.stderr


@pytest.mark.parametrize("case, fragment", [
    ("one_class", "expected one sub-folder per class (at least 2), got 1"),
    ("broken_image", "not a readable image"),
    ("no_images", "no images"),
])
def test_bad_image_folders_are_one_line_exit_2(folder_and_model, tmp_path, case, fragment):
    _, path, _, _ = folder_and_model
    root = tmp_path / "data"
    if case == "one_class":
        _write_folder(tmp_path / "full", per_class=2)
        root.mkdir()
        (tmp_path / "full" / "red").rename(root / "red")
    else:
        _write_folder(root, per_class=2)
        if case == "broken_image":
            (root / "red" / "0.jpg").write_bytes(b"\xff\xd8 not a jpeg")
        else:
            (root / "empty").mkdir()
    result = cli("export", str(path), "--recipe", str(RECIPES / "server-onnx.toml"), "--data", str(root),
                 "--out", str(tmp_path / "out"))
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1 and fragment in lines[0], lines
    assert not (tmp_path / "out").exists()
