"""An RNN language model's step (its cells run a token at a time, h/c states passed in and out) computes what the
model computes over the whole prefix: the same logits at every position, the same greedy tokens, whatever the
prefill width; a padded slot leaves the states alone."""

import keras
import numpy as np
import pytest

import dnnkit
from dnnkit.builders.decoding import RecurrentDecoder, greedy_full, step_model
from dnnkit.config.model import spec_from_dict
from dnnkit.core.generation import PAD_POS, greedy


def rnn_lm(cell, **model):
    keras.utils.set_random_seed(5)
    return dnnkit.build(spec_from_dict({"name": "lm", "model": {
        "family": "rnn", "cell": cell, "input": "tokens", "vocab_size": 11, "input_shape": [12], "head": "causal_lm",
        "units": [16, 12], "embedding_dim": 8, "dense_units": [10], **model}}))


def keras_step(decoder):
    def step(tokens, pos, state):
        out = {k: keras.ops.convert_to_numpy(v) for k, v in decoder({"tokens": tokens, "input_pos": pos,
                                                                      **state}).items()}
        return out.pop("logits"), out
    return step


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_prefill_then_decode_gives_the_full_models_logits_at_every_position(cell):
    model = rnn_lm(cell)
    decoder = step_model(model)
    assert isinstance(decoder, RecurrentDecoder) and decoder.capacity == 12 and decoder.token_axis == 1
    want = {"h_0": (1, 16), "h_1": (1, 12)}
    if cell == "lstm":
        want.update({"c_0": (1, 16), "c_1": (1, 12)})
    assert decoder.state_shapes(1) == want
    x = np.random.default_rng(0).integers(1, 11, (1, 12)).astype(np.int32)
    full = keras.ops.convert_to_numpy(model(x))
    step = keras_step(decoder)
    logits, state = step(x[:, :5], np.arange(5, dtype=np.int32)[None], decoder.empty_cache(1))
    got = [logits[0]]
    for pos in range(5, 12):
        logits, state = step(x[:, pos:pos + 1], np.array([[pos]], np.int32), state)
        got.append(logits[0])
    scale = np.abs(full).max()
    assert np.abs(np.concatenate(got) - full[0]).max() <= 1e-5 * max(scale, 1.0)
    # padded slots (input_pos -1) after a 5-token prompt leave the states where the prompt left them
    positions = np.where(np.arange(12) < 5, np.arange(12), PAD_POS).astype(np.int32)[None]
    _, padded = step(np.where(np.arange(12) < 5, x, 7).astype(np.int32), positions, decoder.empty_cache(1))
    _, exact = step(x[:, :5], np.arange(5, dtype=np.int32)[None], decoder.empty_cache(1))
    for name in want:
        assert np.array_equal(padded[name], exact[name]), name


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cached_greedy_tokens_are_recomputed_greedy_tokens_at_any_prefill_width(cell):
    model = rnn_lm(cell)
    decoder = step_model(model)
    rng = np.random.default_rng(2)
    prompts = [[int(t) for t in rng.integers(1, 11, int(n))] for n in rng.integers(1, 8, 10)]
    full = greedy_full(model, prompts, 12)
    step = keras_step(decoder)
    for prompt, want in zip(prompts, full):
        for width in (None, 1, 12):  # the prompt's own length, token by token (ONNX), right-padded (TFLite)
            assert greedy(step, decoder.empty_cache(1), prompt, 12, max_new=12, prefill_len=width) == want


def test_a_model_that_is_not_a_causal_rnn_chain_is_refused():
    with pytest.raises(ValueError, match="expected a dnnkit causal_lm RNN"):
        RecurrentDecoder(dnnkit.build(spec_from_dict({"name": "m", "model": {"family": "mlp", "input_shape": [4]}})))
    inp = keras.Input((6,), dtype="int32")
    x = keras.layers.Embedding(9, 4)(inp)
    x = keras.layers.Bidirectional(keras.layers.GRU(5, return_sequences=True))(x)
    model = keras.Model(inp, keras.layers.Dense(9)(x))
    with pytest.raises(ValueError, match="not a step of a causal chain"):
        RecurrentDecoder(model)
    x = keras.layers.Embedding(9, 4)(inp)
    model = keras.Model(inp, keras.layers.Dense(9)(keras.layers.GRU(5, return_sequences=True, go_backwards=True)(x)))
    with pytest.raises(ValueError, match="not a step of a causal chain"):
        RecurrentDecoder(model)
