"""Model specs: the shipped ones load, defaults fill in, the resolved spec round-trips, errors are one line naming the file, field and value."""

import pytest

from conftest import MODELS, SPECS
from dnnkit.errors import SpecError
from dnnkit.config.model import (
    CNNConfig,
    RNNConfig,
    TransformerConfig,
    load_spec,
    spec_from_dict,
    spec_to_dict,
)
from dnnkit.config.toml import dump_toml


@pytest.mark.parametrize("name", SPECS)
def test_shipped_specs_load(name):
    spec = load_spec(MODELS / f"{name}.toml")
    assert spec.name == name
    assert spec.model.head == "multiclass" and spec.model.num_classes == 10
    assert spec.data.source == "digits"


def test_family_options_are_typed():
    assert isinstance(load_spec(MODELS / "digits_cnn.toml").model.options, CNNConfig)
    assert load_spec(MODELS / "digits_gru.toml").model.options == RNNConfig(cell="gru", units=(64,))
    tr = load_spec(MODELS / "digits_transformer.toml").model.options
    assert isinstance(tr, TransformerConfig) and tr.num_blocks == 2 and tr.norm == "pre"


def test_scalar_kernel_size_expands_per_block():
    opts = load_spec(MODELS / "digits_cnn.toml").model.options
    assert opts.kernel_size == (3, 3) and opts.strides == (1, 1)


@pytest.mark.parametrize("name", SPECS)
def test_resolved_spec_round_trips(name, tmp_path):
    spec = load_spec(MODELS / f"{name}.toml")
    path = tmp_path / "spec.toml"
    path.write_text(dump_toml(spec_to_dict(spec)))
    again = load_spec(path)
    assert again.model == spec.model and again.train == spec.train and again.data == spec.data


def test_defaults_fill_in():
    spec = spec_from_dict({"name": "m", "model": {"family": "mlp", "input_shape": [4],
                                                  "num_classes": 3}})
    assert spec.train.optimizer == "adam" and spec.train.epochs == 20
    assert spec.model.options.units == (128, 64)


def test_error_names_file_field_value_and_expectation():
    with pytest.raises(SpecError) as err:
        spec_from_dict({"name": "m", "model": {"family": "cnn", "input_shape": [8, 8, 1],
                                               "filters": [32, -3]}}, origin="models/x.toml")
    assert str(err.value) == ("models/x.toml: model.filters: expected a non-empty list of "
                              "positive integers, got [32, -3]")


def test_bool_is_not_an_integer():
    with pytest.raises(SpecError, match=r"train.epochs: expected a positive integer, got true"):
        spec_from_dict({"name": "m", "model": {"family": "mlp", "input_shape": [4]},
                        "train": {"epochs": True}})


def test_family_keys_are_checked_per_family():
    with pytest.raises(SpecError, match=r"model.filters: unknown key"):
        spec_from_dict({"name": "m", "model": {"family": "mlp", "input_shape": [4],
                                               "filters": [8]}})
