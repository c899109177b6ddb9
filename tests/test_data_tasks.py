"""The built-in sequence tasks (seeded, no network) and the per-element labels every tagging /
sequence_regression model is checked against, a spec's or a brought model's."""

import numpy as np
import pytest

from conftest import MODELS
from dnnkit.config.model import load_spec, spec_from_dict
from dnnkit.core.heads import PAD_LABEL
from dnnkit.data.checks import check_labels
from dnnkit.data.load import load_data
from dnnkit.data.tasks import CLOSE, OPEN, PAD, task_data
from dnnkit.errors import DataError
from dnnkit.sources.target import _flat_spec
from dnnkit.config.model import DataConfig


def test_brackets_tags_are_the_depth_after_each_token_and_padding_is_masked():
    spec = load_spec(MODELS / "brackets_lstm.toml")
    arrays = task_data("brackets", spec.model, seed=3)
    x, y = arrays["x_train"], arrays["y_train"]
    assert x.shape == y.shape == (3000, 32) and x.dtype == y.dtype == np.int32
    depth = np.cumsum((x == OPEN).astype(int) - (x == CLOSE).astype(int), axis=1)
    real = x != PAD
    assert np.array_equal(y[real], depth[real])  # the tag is the nesting depth after the token
    assert np.all(y[~real] == PAD_LABEL) and np.all(x[~real] == PAD)
    # right padding only, lengths vary, every depth class occurs, depth never negative nor above num_classes - 1
    assert np.all(np.diff(real.astype(int), axis=1) <= 0)
    assert len(np.unique(real.sum(axis=1))) > 10
    assert set(np.unique(y[real])) == set(range(spec.model.num_classes))
    again = task_data("brackets", spec.model, seed=3)
    assert np.array_equal(again["x_train"], x)  # seeded
    assert not np.array_equal(task_data("brackets", spec.model, seed=4)["x_train"], x)


def test_series_targets_are_the_next_steps_value():
    spec = load_spec(MODELS / "series_gru.toml")
    arrays = task_data("series", spec.model, seed=0)
    x, y = arrays["x_train"], arrays["y_train"]
    assert x.shape == y.shape == (3000, 48, 1)
    assert np.array_equal(x[:, 1:], y[:, :-1])  # y_t = x_{t+1}
    ds = load_data(spec)
    assert ds.sizes() == {"train": 2100, "val": 300, "test": 600}
    # one-step-ahead persistence is a weak forecaster here: the task has something to learn
    persistence = float(np.sqrt(np.mean((ds.x_test - ds.y_test) ** 2)))
    assert 0.2 < persistence < 0.5 * float(np.std(ds.y_test))


@pytest.mark.parametrize("model, message", [
    ({"family": "rnn", "input_shape": [16], "input": "tokens", "vocab_size": 8, "head": "multiclass"},
     'brackets tags each token of a string, expected head "tagging"'),
    ({"family": "rnn", "input_shape": [16], "input": "tokens", "vocab_size": 3, "head": "tagging",
      "num_classes": 4}, "model.vocab_size: brackets needs 4 or more token ids"),
])
def test_a_model_that_does_not_fit_the_brackets_task_is_one_line(model, message):
    spec = spec_from_dict({"name": "m", "data": {"source": "brackets"}, "model": model})
    with pytest.raises(DataError) as err:
        load_data(spec)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_series_needs_a_value_per_step_on_one_feature():
    spec = spec_from_dict({"name": "m", "data": {"source": "series"},
                           "model": {"family": "rnn", "input_shape": [16, 2], "head": "sequence_regression"}})
    with pytest.raises(DataError, match=r"series forecasts one value per step.*input_shape \[16, 2\]"):
        load_data(spec)


def tagging_spec(steps=6, classes=3):
    return spec_from_dict({"name": "t", "model": {"family": "rnn", "input_shape": [steps], "input": "tokens",
                                                  "vocab_size": 9, "head": "tagging", "num_classes": classes}})


def test_tag_labels_read_padding_below_zero_as_one_value_and_refuse_what_does_not_fit():
    model = tagging_spec().model
    y = np.array([[0, 1, 2, -100, -100, -100], [2, 2, -1, -1, -1, -1]])
    out = check_labels(y, model, "y_train")
    assert out.dtype == np.int32 and np.array_equal(out[0], [0, 1, 2, -1, -1, -1])
    assert np.array_equal(check_labels(y[..., None], model, "y_train"), out)  # (n, steps, 1) too
    cases = [(np.zeros((2, 5), int), r"y_train: per-element tags have shape \[5\], expected \[6\]"),
             (np.full((2, 6), 3), r"tags range up to 3, expected 0..2 for model.num_classes = 3"),
             (np.full((2, 6), -1), "every step is padding"),
             (np.full((2, 6), 0.5), "expected integer tags")]
    for bad, pattern in cases:
        with pytest.raises(DataError, match=pattern) as err:
            check_labels(bad, model, "y_train")
        assert "\n" not in str(err.value)


def test_a_brought_models_per_pixel_labels_are_checked_against_its_output():
    seg = _flat_spec("unet", (16, 16, 1), 3, "linear", False, None, DataConfig(source="x.npz"), dense=(16, 16, 3))
    assert seg.model.head == "tagging" and seg.model.num_classes == 3
    assert check_labels(np.zeros((4, 16, 16), int), seg.model, "y").shape == (4, 16, 16)
    with pytest.raises(DataError, match=r"per-element tags have shape \[16\], expected \[16, 16\]"):
        check_labels(np.zeros((4, 16), int), seg.model, "y")
    ae = _flat_spec("ae", (16, 16, 1), 1, "linear", False, None, DataConfig(source="x.npz"), dense=(16, 16, 1))
    assert ae.model.head == "sequence_regression"
    assert check_labels(np.zeros((4, 16, 16, 1)), ae.model, "y").shape == (4, 16, 16, 1)
    assert check_labels(np.zeros((4, 16, 16)), ae.model, "y").shape == (4, 16, 16, 1)
    with pytest.raises(DataError, match=r"per-element targets have shape \[8, 8, 1\], expected \[16, 16, 1\]"):
        check_labels(np.zeros((4, 8, 8, 1)), ae.model, "y")
    with pytest.raises(DataError, match="an answer per element; expected tagging"):
        _flat_spec("unet", (16, 16, 1), 3, "linear", False, "multiclass", DataConfig(source="x.npz"),
                   dense=(16, 16, 3))
    with pytest.raises(DataError, match="tagging needs an output with an answer per element"):
        _flat_spec("mlp", (4,), 3, "linear", False, "tagging", DataConfig(source="x.npz"))


def test_reverse_labels_the_next_token_at_the_answers_steps_only():
    from dnnkit.data.tasks import EOS, SEP, reverse_answer

    spec = load_spec(MODELS / "reverse_lm.toml")
    assert spec.model.num_classes == spec.model.options.vocab_size == 13  # one logit per token id
    arrays = task_data("reverse", spec.model, seed=0)
    x, y = arrays["x_train"], arrays["y_train"]
    assert x.shape == y.shape == (3000, 16)
    for row_x, row_y in zip(x[:200], y[:200]):
        sep = int(np.flatnonzero(row_x == SEP)[0])
        prompt, labelled = list(row_x[:sep + 1]), np.flatnonzero(row_y >= 0)
        answer = reverse_answer([int(t) for t in prompt])
        assert labelled[0] == sep and list(row_y[labelled]) == answer and answer[-1] == EOS
        assert list(row_x[sep + 1:sep + len(answer)]) == answer[:-1]  # the input is the sequence shifted by one
    with pytest.raises(DataError, match="reverse is a language-model task"):
        load_data(spec_from_dict({"name": "m", "data": {"source": "reverse"}, "model": {
            "family": "transformer", "input": "tokens", "vocab_size": 8, "input_shape": [16], "head": "causal_lm"}}))


def test_a_task_generates_as_many_sequences_as_data_samples_says_and_names_its_tokens():
    spec = load_spec(MODELS / "reverse_gru_lm.toml")
    assert spec.data.samples == 6000
    data = load_data(spec)
    assert len(data.x_train) + len(data.x_val) + len(data.x_test) == 6000
    assert data.labels == ["<pad>", *"0123456789", "<eos>", "="]  # the vocabulary, stored as the files' labels
    with pytest.raises(Exception, match=r"data.samples: expected no value: only a seeded task .* got 500"):
        spec_from_dict({"name": "d", "data": {"source": "digits", "samples": 500},
                        "model": {"family": "mlp", "input_shape": [64]}})
    with pytest.raises(Exception, match=r"data.samples: expected an integer >= 100 up to 200000, got 5"):
        spec_from_dict({"name": "d", "data": {"source": "reverse", "samples": 5},
                        "model": {"family": "mlp", "input_shape": [64]}})
