"""An encoder-decoder's steps (encode once, then the decoder a few tokens at a time with its state passed in and
out, reading the encoder's output on every call) compute what the model computes teacher-forced: the same
logits at every target position, the same greedy tokens, for LSTM/GRU (with and without attention) and
Transformer (pre- and post-norm) models."""

import keras
import numpy as np
import pytest

import dnnkit
from dnnkit.builders.decoding import Seq2SeqStep, greedy_full, step_model
from dnnkit.config.model import spec_from_dict
from dnnkit.core.generation import greedy

VARIANTS = {
    "lstm_attention": {"family": "rnn", "cell": "lstm", "units": [16, 12], "embedding_dim": 8, "attention": True},
    "gru": {"family": "rnn", "cell": "gru", "units": [16], "embedding_dim": 8},
    "transformer_pre": {"family": "transformer", "d_model": 16, "num_heads": 2, "key_dim": 8, "ff_dim": 24},
    "transformer_post_sine": {"family": "transformer", "d_model": 16, "num_heads": 2, "key_dim": 8, "ff_dim": 24,
                              "num_blocks": 1, "norm": "post", "positional": "sinusoidal", "dense_units": [12]},
}


def seq2seq(variant):
    keras.utils.set_random_seed(3)
    return dnnkit.build(spec_from_dict({"name": "s2s", "model": {
        "input": "tokens", "vocab_size": 11, "input_shape": [12], "head": "seq2seq", "source_steps": 7,
        **VARIANTS[variant]}}))


def numpy_step(decoder):
    def step(tokens, pos, state):
        out = {k: keras.ops.convert_to_numpy(v) for k, v in decoder({"tokens": tokens, "input_pos": pos,
                                                                      **state}).items()}
        return out.pop("logits"), {**state, **out}
    return step


def encoded(decoder, source):
    got = decoder.encode(np.asarray(source, np.int32)[None])
    return {**decoder.empty_cache(1), **{k: keras.ops.convert_to_numpy(v) for k, v in got.items()}}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encode_then_decode_gives_the_teacher_forced_logits_at_every_target_position(variant):
    model = seq2seq(variant)
    decoder = step_model(model)
    assert isinstance(decoder, Seq2SeqStep) and decoder.source_steps == 7 and decoder.capacity == 5
    x = np.random.default_rng(0).integers(1, 11, (1, 12)).astype(np.int32)
    full = keras.ops.convert_to_numpy(model(x))[0]
    state = encoded(decoder, x[0, :7])
    assert set(decoder.encoder_shapes(1)) <= set(state) and set(decoder.state_shapes(1)) <= set(state)
    step = numpy_step(decoder)
    logits, state = step(x[:, 7:9], np.arange(2, dtype=np.int32)[None], state)
    got = [logits[0]]
    for pos in range(2, 5):
        logits, state = step(x[:, 7 + pos:8 + pos], np.array([[pos]], np.int32), state)
        got.append(logits[0])
    assert np.abs(np.concatenate(got) - full).max() <= 1e-5 * max(np.abs(full).max(), 1.0)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_greedy_tokens_from_the_steps_are_the_recomputed_ones(variant):
    model = seq2seq(variant)
    decoder = step_model(model)
    rng = np.random.default_rng(4)
    prompts = [[int(t) for t in rng.integers(0, 11, 7)] + [int(rng.integers(1, 11))] for _ in range(6)]
    full = greedy_full(model, prompts, 5)
    assert all(len(f) == 5 for f in full)  # the decoder's 5 positions, the start token at the first
    step = numpy_step(decoder)
    for prompt, want in zip(prompts, full):
        for width in (None, 1, 5):  # the prompt's own length, token by token, right-padded
            got = greedy(step, encoded(decoder, prompt[:7]), prompt[7:], 5, max_new=5, prefill_len=width)
            assert got == want


def test_a_model_that_is_not_an_encoder_decoder_is_refused():
    with pytest.raises(ValueError, match="expected a dnnkit seq2seq model"):
        Seq2SeqStep(dnnkit.build(spec_from_dict({"name": "m", "model": {"family": "mlp", "input_shape": [4]}})))
