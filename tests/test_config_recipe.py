"""Recipes: the shipped ones load, and quantized artifacts calibrate on a count that follows the model's heads."""

import pytest

from conftest import RECIPES


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_recipes_load(path):
    from dnnkit.config.recipe import load_recipe

    recipe = load_recipe(path)
    assert recipe.name == path.stem and recipe.artifacts
    for p in recipe.passes:
        assert getattr(p.options, "engine", "auto") in ("auto", "native", "tfmot")


def test_calibration_count_follows_the_heads_unless_the_recipe_sets_it():
    """Classifiers calibrate on 100 inputs (a clipped score keeps its rank; wider ranges would coarsen
    the steps), models with a value output on 1000 (a clipped value is wrong); ``samples`` overrides."""
    from dnnkit.config.recipe import recipe_from_dict, with_samples

    recipe = recipe_from_dict({"name": "r", "artifacts": [
        {"name": "i", "format": "tflite", "precision": "int8"}, {"name": "f", "format": "tflite"},
        {"name": "o", "format": "onnx", "precision": "int8", "samples": 300}]})
    assert [a.samples for a in recipe.artifacts] == [None, None, 300]

    def counts(heads):
        return [a.samples for a in with_samples(recipe, heads).artifacts]

    assert counts(["multiclass"]) == [100, None, 300] and counts(["binary"]) == [100, None, 300]
    assert counts(["multiclass", "regression"]) == [1000, None, 300] and counts(["features"]) == [1000, None, 300]


@pytest.mark.parametrize("runs, fragment", [
    (10 ** 20, "verify.latency_runs: expected a positive integer up to 10000, got 100000000000000000000"),
    (1e20, "verify.latency_runs: expected a positive integer up to 10000, got 1e+20"),
    (0, "verify.latency_runs: expected a positive integer up to 10000, got 0"),
])
def test_latency_runs_are_bounded_before_any_run(runs, fragment):
    from dnnkit.config.recipe import RecipeError, recipe_from_dict

    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"name": "r", "verify": {"latency_runs": runs},
                          "artifacts": [{"name": "f", "format": "tflite"}]})
    assert fragment in str(err.value)


def test_a_generation_table_chooses_the_step_files():
    from dnnkit.config.recipe import RecipeError, recipe_from_dict
    from dnnkit.core.generation import DEFAULT_STEP_ARTIFACTS

    base = {"name": "r", "artifacts": [{"name": "tflite_fp32", "format": "tflite"}]}
    assert recipe_from_dict(base).generation == DEFAULT_STEP_ARTIFACTS  # every step file but full int8
    assert "decoder_tflite_int8" not in DEFAULT_STEP_ARTIFACTS and len(DEFAULT_STEP_ARTIFACTS) == 6
    chosen = recipe_from_dict({**base, "generation": {"artifacts": ["decoder_tflite_int8", "decoder_onnx_fp32"]}})
    assert chosen.generation == ("decoder_tflite_int8", "decoder_onnx_fp32")
    with pytest.raises(RecipeError, match=r"generation.artifacts: expected each one of .*'decoder_tflite_int8'.*, "
                                          r'got "decoder_tflite_int4"'):
        recipe_from_dict({**base, "generation": {"artifacts": ["decoder_tflite_int4"]}})
    with pytest.raises(RecipeError, match=r"generation.artifacts: expected at least one step file"):
        recipe_from_dict({**base, "generation": {"artifacts": []}})
    with pytest.raises(RecipeError, match=r"generation.capacity: unknown key"):
        recipe_from_dict({**base, "generation": {"capacity": 8}})
