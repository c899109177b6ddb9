"""One exception hierarchy: every user error is a one-line ValueError with exit code 2."""

import pytest

from dnnkit.errors import CompressionError, ConversionError, DataError, DnnkitError, SpecError, one_line


def test_messages_are_one_line_and_cut_where_asked():
    assert one_line(ValueError("a\n  b\tc")) == "a b c"
    assert one_line("x" * 500) == "x" * 300 and one_line("x" * 500, 10) == "x" * 10
    assert one_line("x" * 500, None) == "x" * 500
    assert str(SpecError("spec.toml: model.units:\n expected a list")) == "spec.toml: model.units: expected a list"


@pytest.mark.parametrize("error", [SpecError, DataError, CompressionError])
def test_user_errors_exit_2(error):
    assert issubclass(error, DnnkitError) and issubclass(error, ValueError) and error("x").exit_code == 2


def test_a_converter_that_refuses_the_model_fails_its_artifact_with_exit_1():
    assert issubclass(ConversionError, DnnkitError) and ConversionError("no").exit_code == 1
