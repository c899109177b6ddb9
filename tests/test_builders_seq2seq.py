"""The seq2seq builders: one token input split into source and target steps, logits at each target step; the
spec says how many steps are the source, and only a seq2seq head may attend over an encoder."""

import keras
import pytest

import dnnkit
from dnnkit.config.model import spec_from_dict
from dnnkit.errors import SpecError


def spec(**model):
    return {"name": "s2s", "model": {"family": "rnn", "input": "tokens", "vocab_size": 14, "input_shape": [9],
                                     "head": "seq2seq", "source_steps": 5, **model}}


@pytest.mark.parametrize("family", [{"family": "rnn", "attention": True}, {"family": "transformer"}])
def test_the_model_answers_at_the_target_steps_over_the_vocabulary(family):
    model = dnnkit.build(spec_from_dict(spec(**family)))
    assert model.input_shape == (None, 9) and model.output_shape == (None, 4, 14)
    names = {layer.name for layer in model.layers}
    assert {"token_embedding", "source_steps", "target_steps", "logits"} <= names
    if family["family"] == "transformer":
        assert {"block_0_cross_attention", "encoder_block_0_attention", "encoder_norm"} <= names
    else:
        assert {"encoder_lstm_0", "decoder_lstm_0", "attention"} <= names
    # a target step never sees a later target step: changing the last target token changes only the last output
    x = keras.random.randint((2, 9), 0, 14, seed=1)
    y = keras.ops.concatenate([x[:, :8], (x[:, 8:] + 1) % 14], axis=1)
    a, b = keras.ops.convert_to_numpy(model(x)), keras.ops.convert_to_numpy(model(y))
    assert abs(a[:, :3] - b[:, :3]).max() < 1e-6


@pytest.mark.parametrize("model, message", [
    ({"source_steps": 9}, "model.source_steps: expected a positive integer up to 8, got 9"),
    ({"source_steps": None}, "model.source_steps"),
    ({"bidirectional": True}, "model.bidirectional: expected false for a seq2seq head"),
    ({"input": "features", "input_shape": [9, 2]}, "model.input: expected \"tokens\" for a seq2seq head"),
])
def test_bad_seq2seq_specs_name_the_field(model, message):
    raw = spec(**model)
    raw["model"] = {k: v for k, v in raw["model"].items() if v is not None}
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec_from_dict(raw)


def test_attention_needs_a_seq2seq_head():
    with pytest.raises(SpecError, match="model.attention: expected false: attention over an encoder's states needs "
                                        "head \"seq2seq\""):
        spec_from_dict({"name": "m", "model": {"family": "rnn", "input": "tokens", "vocab_size": 9,
                                               "input_shape": [6], "head": "causal_lm", "attention": True}})
