"""``[package]`` options and ``dnnkit package``'s flags: bad values are one-line errors naming the field."""

import pytest

from dnnkit.errors import SpecError
from dnnkit.config.package import check_options
from dnnkit.config.recipe import recipe_from_dict


@pytest.mark.parametrize("options, fragment", [
    ({"layouts": ["kserve"]}, "package.layout: expected one of triton, tf-serving, tflm, got 'kserve'"),
    ({"version": 0}, "package.version: expected a positive integer, got 0"),
    ({"version": True}, "package.version: expected a positive integer, got True"),
    ({"max_batch_size": -1}, "package.max_batch_size: expected an integer >= 0, got -1"),
    ({"model_name": "../x"}, "package.model_name: expected letters, digits"),
])
def test_bad_options_are_one_line_errors(options, fragment):
    given = {"layouts": ["triton"], "version": 1, "max_batch_size": 8, "model_name": None, **options}
    with pytest.raises(SpecError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        check_options(given.pop("layouts"), **given)


def test_a_recipe_package_table_is_read_with_the_recipe():
    recipe = recipe_from_dict({"name": "r", "artifacts": [{"name": "o", "format": "onnx"}],
                               "package": {"layouts": ["triton"], "model_name": "digits", "onnx_artifact": "o"}})
    assert recipe.package == {"layouts": ["triton"], "version": 1, "max_batch_size": 8, "model_name": "digits",
                              "artifact": "o"}
    with pytest.raises(SpecError, match=r"package\.max_batch_size: expected a non-negative integer, got -2"):
        recipe_from_dict({"name": "r", "artifacts": [{"name": "o", "format": "onnx"}],
                          "package": {"max_batch_size": -2}})


def test_a_package_table_asks_for_the_firmware_layout_only_by_name():
    serving = recipe_from_dict({"name": "r", "artifacts": [{"name": "t", "format": "tflite"}], "package": {}})
    assert serving.package["layouts"] == ["triton", "tf-serving"]  # the default stays the serving layouts
    firmware = recipe_from_dict({"name": "r", "artifacts": [{"name": "t", "format": "tflite"}],
                                 "package": {"layouts": ["tflm"], "tflite_artifact": "t"}})
    assert firmware.package["layouts"] == ["tflm"] and firmware.package["tflite_artifact"] == "t"
