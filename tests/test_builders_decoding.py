"""Cached step-by-step decoding (a fixed-capacity KV cache passed in and out) computes what the model computes
over the whole prefix: the same logits at every position, the same greedy tokens."""

import keras
import numpy as np
import pytest

import dnnkit
from dnnkit.builders.decoding import CachedDecoder, cache_names, greedy_full
from dnnkit.config.model import spec_from_dict
from dnnkit.core.generation import greedy


def lm(**model):
    keras.utils.set_random_seed(3)
    return dnnkit.build(spec_from_dict({"name": "lm", "model": {
        "family": "transformer", "input": "tokens", "vocab_size": 11, "input_shape": [12], "head": "causal_lm",
        "d_model": 16, "num_heads": 2, "key_dim": 8, "ff_dim": 24, "num_blocks": 2, **model}}))


def keras_step(decoder):
    def step(tokens, pos, caches):
        out = {k: keras.ops.convert_to_numpy(v) for k, v in decoder({"tokens": tokens, "input_pos": pos,
                                                                      **caches}).items()}
        return out.pop("logits"), out
    return step


@pytest.mark.parametrize("variant", [{}, {"norm": "post", "positional": "sinusoidal"}], ids=["pre", "post_sine"])
def test_prefill_then_decode_gives_the_full_models_logits_at_every_position(variant):
    model = lm(**variant)
    decoder = CachedDecoder(model)
    assert decoder.capacity == 12 and decoder.blocks == 2 and decoder.cache_shape(1) == (1, 2, 12, 8)
    assert cache_names(2) == ["kv_cache_k_0", "kv_cache_v_0", "kv_cache_k_1", "kv_cache_v_1"]
    x = np.random.default_rng(0).integers(1, 11, (1, 12)).astype(np.int32)
    full = keras.ops.convert_to_numpy(model(x))
    step = keras_step(decoder)
    logits, caches = step(x[:, :5], np.arange(5, dtype=np.int32)[None], decoder.empty_cache(1))
    got = [logits[0]]
    for pos in range(5, 12):  # then one token at a time
        logits, caches = step(x[:, pos:pos + 1], np.array([[pos]], np.int32), caches)
        got.append(logits[0])
    assert np.allclose(np.concatenate(got), full[0], atol=1e-5)
    # a right-padded prefill (a fixed-length signature) writes junk past the prompt that is never read
    padded = np.where(np.arange(12) < 5, x, 0).astype(np.int32)
    logits, _ = step(padded, np.arange(12, dtype=np.int32)[None], decoder.empty_cache(1))
    assert np.allclose(logits[0, :5], full[0, :5], atol=1e-5)


def test_cached_greedy_tokens_are_recomputed_greedy_tokens():
    model = lm()
    decoder = CachedDecoder(model)
    rng = np.random.default_rng(1)
    prompts = [list(rng.integers(1, 11, int(n))) for n in rng.integers(1, 8, 12)]
    full = greedy_full(model, prompts, 12)
    step = keras_step(decoder)
    for prompt, want in zip(prompts, full):
        assert len(want) == 12 - len(prompt) + 1  # never past the model's positions
        for width in (None, 12):  # prefill of the prompt's own length, or the whole window right-padded
            got = greedy(step, decoder.empty_cache(1), [int(t) for t in prompt], 12, max_new=12, prefill_len=width)
            assert got == want
    eos = full[0][1]
    assert greedy_full(model, prompts[:1], 12, eos=eos)[0] == full[0][:full[0].index(eos) + 1]


def test_a_model_that_is_not_a_causal_transformer_is_refused():
    model = dnnkit.build(spec_from_dict({"name": "m", "model": {"family": "mlp", "input_shape": [4]}}))
    with pytest.raises(ValueError, match="expected a dnnkit causal_lm Transformer"):
        CachedDecoder(model)
