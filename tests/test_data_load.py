"""Data: digits layouts, fixed splits, user .npz/.csv files and their checks."""

import re

import numpy as np
import pytest

from conftest import MODELS
from dnnkit.data.load import load_data
from dnnkit.errors import DataError
from dnnkit.config.model import load_spec, spec_from_dict


@pytest.mark.parametrize("name,shape", [("digits_mlp", (64,)), ("digits_cnn", (8, 8, 1)),
                                        ("digits_lstm", (8, 8)), ("digits_transformer", (8, 8))])
def test_digits_layouts(name, shape):
    ds = load_data(load_spec(MODELS / f"{name}.toml"))
    assert ds.x_train.shape[1:] == shape and ds.x_train.dtype == np.float32
    assert ds.sizes() == {"train": 1257, "val": 180, "test": 360}
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert set(np.unique(ds.y_test)) == set(range(10))


def test_digits_split_is_fixed_and_layout_independent():
    flat = load_data(load_spec(MODELS / "digits_mlp.toml"))
    image = load_data(load_spec(MODELS / "digits_cnn.toml"))
    np.testing.assert_array_equal(flat.x_test, image.x_test.reshape(-1, 64))
    np.testing.assert_array_equal(flat.y_val, image.y_val)
    assert not set(map(bytes, flat.x_test)) & set(map(bytes, flat.x_train))


def test_digits_tokens_layout():
    spec = spec_from_dict({"name": "t", "model": {"family": "transformer", "input": "tokens",
                                                  "input_shape": [64], "vocab_size": 17}})
    ds = load_data(spec)
    assert ds.x_train.dtype == np.int32 and ds.x_train.max() == 16


def _npz_spec(tmp_path, **model):
    return spec_from_dict({"name": "n", "data": {"source": "d.npz"},
                           "model": {"family": "mlp", "input_shape": [4], **model}},
                          path=str(tmp_path / "spec.toml"))


def test_npz_with_all_splits(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((50, 4)), y_train=rng.integers(0, 3, 50),
             x_val=rng.random((10, 4)), y_val=rng.integers(0, 3, 10),
             x_test=rng.random((12, 4)), y_test=rng.integers(0, 3, 12))
    ds = load_data(_npz_spec(tmp_path, num_classes=3))
    assert ds.sizes() == {"train": 50, "val": 10, "test": 12}


def test_npz_class_names_become_the_labels(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.random((50, 4)), "y_train": rng.integers(0, 3, 50)}
    np.savez(tmp_path / "d.npz", **arrays, class_names=np.array(["cat", "dog", "eel"]))
    assert load_data(_npz_spec(tmp_path, num_classes=3)).labels == ["cat", "dog", "eel"]
    np.savez(tmp_path / "d.npz", **arrays)
    assert load_data(_npz_spec(tmp_path, num_classes=3)).labels is None
    for bad, message in ((np.array(["cat", "dog"]), "class_names: 2 names, expected one per class (3)"),
                         (np.arange(3), "class_names: expected a 1-D array of strings, got dtype int64 shape [3]")):
        np.savez(tmp_path / "d.npz", **arrays, class_names=bad)
        with pytest.raises(DataError, match=re.escape(message)):
            load_data(_npz_spec(tmp_path, num_classes=3))


def test_npz_regression_split_from_train(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((100, 4)), y_train=rng.random((100, 2)))
    ds = load_data(_npz_spec(tmp_path, head="regression", output_units=2))
    assert ds.sizes() == {"train": 70, "val": 10, "test": 20}
    assert ds.y_train.shape == (70, 2)


def test_csv_with_label_column(tmp_path):
    rows = ["a,b,label,c"] + [f"{i},{i * 2},{i % 2},{i / 3}" for i in range(40)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    spec = spec_from_dict({"name": "c", "data": {"source": "d.csv", "label_column": "label"},
                           "model": {"family": "mlp", "input_shape": [3], "head": "binary"}},
                          path=str(tmp_path / "spec.toml"))
    ds = load_data(spec)
    assert ds.x_train.shape[1:] == (3,) and set(np.unique(ds.y_train)) <= {0, 1}


def test_label_out_of_range(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((20, 4)), y_train=np.arange(20) % 5)
    with pytest.raises(DataError, match=r"labels range 0..4, expected 0..2 for model.num_classes = 3"):
        load_data(_npz_spec(tmp_path, num_classes=3))


def test_nan_features(tmp_path):
    x = np.zeros((20, 4))
    x[3, 1] = np.nan
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(20) % 2)
    with pytest.raises(DataError, match="NaN or infinity"):
        load_data(_npz_spec(tmp_path, num_classes=2))


def test_one_hot_labels_are_read_as_classes(tmp_path):
    """keras.utils.to_categorical's labels, standard in Keras, are the classes of their ones."""
    y = np.arange(30) % 3
    np.savez(tmp_path / "d.npz", x_train=np.random.default_rng(0).random((30, 4)), y_train=np.eye(3)[y])
    ds = load_data(_npz_spec(tmp_path, num_classes=3))
    assert ds.y_train.ndim == 1 and set(np.unique(ds.y_train)) == {0, 1, 2}


def test_soft_labels_are_refused_with_the_one_hot_rule(tmp_path):
    y = np.full((30, 3), 1 / 3)
    np.savez(tmp_path / "d.npz", x_train=np.zeros((30, 4)), y_train=y)
    with pytest.raises(DataError, match=r"got shape \(\d+, 3\); one-hot rows \(keras.utils.to_categorical\)"):
        load_data(_npz_spec(tmp_path, num_classes=3))
