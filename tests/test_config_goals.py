"""Goals of dnnkit optimize: bad values are one-line errors naming the field."""


import pytest

from dnnkit.config.goals import goals_from


@pytest.mark.parametrize("values, fragment", [
    ({"target": "tpu"}, "target: expected one of 'tflite', 'onnx', 'both', got \"tpu\""),
    ({"max_degradation": "-0.1"}, "max_degradation: expected a fraction >= 0 and < 1, got -0.1"),
    ({"max_degradation": "a lot"}, "max_degradation: expected a fraction >= 0 and < 1, got \"a lot\""),
    # 5 meant as 5 %: a tflite_int8 with agreement 0.41 would have met it
    ({"max_degradation": "5"}, "max_degradation: expected a fraction >= 0 and < 1 (5 % is 0.05), got 5"),
    ({"max_degradation": 1}, "max_degradation: expected a fraction >= 0 and < 1 (1 % is 0.01), got 1"),
    ({"max_size_kb": "0"}, "max_size_kb: expected a number > 0, got 0"),
    ({"objective": "best"}, "objective: expected one of 'smallest', 'fastest', got \"best\""),
])
def test_bad_goals_are_one_line_errors(values, fragment):
    from dnnkit.errors import SpecError

    with pytest.raises(SpecError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        goals_from(values)
