"""The candidates of dnnkit optimize: every precision, each judged as one of several."""


import pytest

from dnnkit.optimization.candidates import candidate_recipe
from dnnkit.config.goals import Goals


def test_candidates_cover_every_precision_and_are_judged_as_one_of_several():
    recipe = candidate_recipe(Goals(target="both", max_degradation=0.02))
    names = [a.name for a in recipe.artifacts]
    assert names == ["tflite_fp32", "tflite_fp16", "tflite_dynamic_int8", "tflite_int8", "tflite_int16x8",
                     "onnx_fp32", "onnx_int8"]
    int8 = {a.name: a for a in recipe.artifacts}["tflite_int8"]
    assert int8.selective_fallback and int8.io == "float" and int8.candidates == 5
    assert recipe.verify.max_degradation == 0.02 and recipe.verify.min_agreement == pytest.approx(0.96)
