"""Per-step heads (tagging, sequence_regression): their specs, builders, loss and training metrics."""

import numpy as np
import pytest

import dnnkit
from conftest import MODELS
from dnnkit.config.model import load_spec, spec_from_dict, spec_to_dict
from dnnkit.errors import SpecError


def spec(model, **train):
    return spec_from_dict({"name": "s", "model": model, **({"train": train} if train else {})})


TOKENS_LSTM = {"family": "rnn", "input_shape": [12], "input": "tokens", "vocab_size": 9, "embedding_dim": 8,
               "head": "tagging", "num_classes": 4, "units": [16, 8]}
CAUSAL = {"family": "transformer", "input_shape": [12], "input": "tokens", "vocab_size": 9, "d_model": 16,
          "num_heads": 2, "key_dim": 8, "ff_dim": 16, "num_blocks": 2, "head": "tagging", "num_classes": 4,
          "causal": True}
FORECAST = {"family": "rnn", "input_shape": [10, 3], "head": "sequence_regression", "output_units": 2,
            "cell": "gru", "units": [8], "bidirectional": True}


@pytest.mark.parametrize("model, shape", [(TOKENS_LSTM, (2, 12, 4)), (CAUSAL, (2, 12, 4)),
                                          (FORECAST, (2, 10, 2))], ids=["lstm", "transformer", "gru"])
def test_a_per_step_head_answers_at_every_step(model, shape):
    built = dnnkit.build(spec(model))
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, (2, 12)) if model.get("input") == "tokens" else rng.random((2, 10, 3), np.float32)
    y = np.asarray(built(x, training=False))
    assert y.shape == shape and np.all(np.isfinite(y))
    assert built.layers[-1].name == ("logits" if model["head"] == "tagging" else "prediction")


@pytest.mark.parametrize("model", [TOKENS_LSTM, CAUSAL], ids=["lstm", "causal_transformer"])
def test_a_causal_model_never_sees_later_tokens(model):
    built = dnnkit.build(spec(model))
    x = np.random.default_rng(1).integers(1, 9, (1, 12))
    later = x.copy()
    later[0, 7:] = (later[0, 7:] % 8) + 1  # change every token from step 7 on
    a, b = np.asarray(built(x)), np.asarray(built(later))
    assert np.allclose(a[0, :7], b[0, :7], atol=1e-6)
    assert not np.allclose(a[0, 7:], b[0, 7:], atol=1e-3)


def test_without_a_causal_mask_an_encoder_sees_the_whole_sequence():
    built = dnnkit.build(spec({**CAUSAL, "causal": False}))
    x = np.random.default_rng(1).integers(1, 9, (1, 12))
    later = x.copy()
    later[0, 7:] = (later[0, 7:] % 8) + 1
    assert not np.allclose(np.asarray(built(x))[0, :7], np.asarray(built(later))[0, :7], atol=1e-4)


@pytest.mark.parametrize("model, message", [
    ({"family": "mlp", "input_shape": [8], "head": "tagging"},
     'a per-step head needs family "rnn" or "transformer"'),
    ({**CAUSAL, "pooling": "cls"}, "model.pooling: expected \"mean\" for a per-step head"),
    ({**TOKENS_LSTM, "input_shape": [12, 3]}, "1 dimension (sequence length) for an rnn on token input"),
    ({**TOKENS_LSTM, "vocab_size": None}, "model.vocab_size: required field is missing"),
])
def test_a_per_step_spec_that_cannot_work_is_one_line(model, message):
    model = {k: v for k, v in model.items() if v is not None}
    with pytest.raises(SpecError) as err:
        spec(model)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_tagging_head_takes_sparse_cross_entropy_and_class_metrics_only():
    with pytest.raises(SpecError, match=r"train.loss: expected a loss for a tagging head"):
        spec(TOKENS_LSTM, loss="categorical_crossentropy")
    with pytest.raises(SpecError, match="train.metrics"):
        spec(TOKENS_LSTM, metrics=["rmse"])
    assert spec(FORECAST).train.metrics == ("rmse",) and spec(TOKENS_LSTM).train.metrics == ("accuracy",)


def test_the_shipped_sequence_specs_round_trip_and_build():
    for name, shape in (("brackets_lstm", (None, 32, 5)), ("series_gru", (None, 48, 1))):
        s = load_spec(MODELS / f"{name}.toml")
        assert spec_from_dict(spec_to_dict(s)) == s.__class__(**{**s.__dict__, "path": None})
        assert dnnkit.build(s).output_shape == shape


def test_padding_steps_add_nothing_to_the_loss_nor_to_token_accuracy_and_f1():
    import keras

    from dnnkit.training.fit import make_loss
    from dnnkit.training.keras_metrics import keras_metrics

    s = spec(TOKENS_LSTM, metrics=["accuracy", "f1"])
    y = np.array([[0, 1, 2, -1], [3, 3, -1, -1]])
    right = np.eye(4)[np.where(y < 0, 0, y)] * 8.0
    padded_wrong = right.copy()
    padded_wrong[y < 0] = np.eye(4)[1] * 8.0  # only the padding steps change
    loss = make_loss(s)
    assert float(loss(y, right)) == pytest.approx(float(loss(y, padded_wrong)), abs=1e-6)
    accuracy, f1 = keras_metrics("tagging", s.train.metrics, 4)
    for metric in (accuracy, f1):
        metric.update_state(y, padded_wrong)
    assert float(accuracy.result()) == 1.0 and float(f1.result()) == 1.0
    wrong_once = right.copy()
    wrong_once[0, 0] = np.eye(4)[2] * 8.0
    accuracy.reset_state()
    accuracy.update_state(y, wrong_once)
    assert float(accuracy.result()) == pytest.approx(4 / 5)
    assert keras.ops.convert_to_numpy(loss(y, wrong_once)) > float(loss(y, right))


def test_a_causal_lm_spec_round_trips_and_needs_token_input():
    s = load_spec(MODELS / "reverse_lm.toml")
    assert spec_from_dict(spec_to_dict(s)).model == s.model and s.model.num_classes == 13
    with pytest.raises(SpecError, match='model.input: expected "tokens" for a causal_lm head'):
        spec({"family": "rnn", "input_shape": [8, 2], "head": "causal_lm"})
    with pytest.raises(SpecError, match="model.bidirectional: expected false for a causal_lm head"):
        spec({**TOKENS_LSTM, "head": "causal_lm", "num_classes": None, "bidirectional": True})
