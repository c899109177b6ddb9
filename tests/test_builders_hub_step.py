"""keras-hub causal LMs run step by step with dnnkit's fixed-capacity cache compute what keras-hub computes: GPT-2
(learned positions) the same logits as the whole model, GPT-2, Llama (grouped key/value heads) and Mistral the same
greedy tokens as keras-hub's own jit-compiled generate(), Gemma too; a model dnnkit cannot step is refused with the
reason."""

import keras
import numpy as np
import pytest

from dnnkit.builders.decoding import HubDecoder, greedy_full, hub_refusal, numpy_step, step_model
from dnnkit.core.generation import greedy

keras_hub = pytest.importorskip("keras_hub")  # in the test extra; `make test` installs it


def gpt2(length=24):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=50, num_layers=2, num_heads=2, hidden_dim=32,
                                             intermediate_dim=64, max_sequence_length=length)
    return keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)


def numpy_step(decoder):
    def step(tokens, pos, state):
        out = {k: keras.ops.convert_to_numpy(v) for k, v in decoder({"tokens": tokens, "input_pos": pos,
                                                                      **state}).items()}
        return out.pop("logits"), out
    return step


def test_the_cached_step_gives_keras_hubs_logits_and_its_generate_tokens():
    model = gpt2()
    decoder = step_model(model, capacity=16)
    assert isinstance(decoder, HubDecoder) and decoder.capacity == 16 and decoder.vocab == 50
    assert decoder.state_shapes(1)["kv_cache_k_1"] == (1, 2, 16, 16)
    x = np.random.default_rng(0).integers(1, 50, (1, 16)).astype(np.int32)
    full = keras.ops.convert_to_numpy(model({"token_ids": x, "padding_mask": np.ones_like(x)}))[0]
    step = numpy_step(decoder)
    logits, state = step(x[:, :5], np.arange(5, dtype=np.int32)[None], decoder.empty_cache(1))
    got = [logits[0]]
    for pos in range(5, 16):
        logits, state = step(x[:, pos:pos + 1], np.array([[pos]], np.int32), state)
        got.append(logits[0])
    assert np.abs(np.concatenate(got) - full).max() <= 1e-5 * max(np.abs(full).max(), 1.0)
    model.compile(sampler="greedy")
    for prompt in ([3, 4, 5], [7, 1, 9, 9]):
        padded = np.zeros((1, 16), np.int32)
        padded[0, :len(prompt)] = prompt
        hub = model.generate({"token_ids": padded, "padding_mask": padded > 0}, stop_token_ids=None)
        want = [int(t) for t in hub["token_ids"][0, len(prompt):]]
        assert greedy_full(model, [prompt], 16 - len(prompt), steps=16)[0][:len(want)] == want
        got = greedy(step, decoder.empty_cache(1), prompt, 16, max_new=len(want), prefill_len=16)
        assert got == want


@pytest.mark.parametrize("family", ["llama_grouped", "llama", "mistral", "gemma", "gemma2_style"])
def test_rotary_backbones_step_with_grouped_key_value_heads_as_keras_hub_generates(family):
    keras.utils.set_random_seed(0)
    common = dict(vocabulary_size=50, num_layers=2, num_query_heads=2, hidden_dim=16, intermediate_dim=32,
                  num_key_value_heads=1 if family == "llama_grouped" else 2)
    if family == "mistral":  # a window longer than the cache: full causal attention within it
        model = keras_hub.models.MistralCausalLM(keras_hub.models.MistralBackbone(**common, sliding_window=64),
                                                 preprocessor=None)
    elif family.startswith("gemma"):
        extra = {} if family == "gemma" else dict(query_head_dim_normalize=False, use_post_ffw_norm=True,
                                                  use_post_attention_norm=True, attention_logit_soft_cap=50,
                                                  final_logit_soft_cap=30)
        model = keras_hub.models.GemmaCausalLM(keras_hub.models.GemmaBackbone(head_dim=8, **common, **extra),
                                               preprocessor=None)
    else:
        model = keras_hub.models.LlamaCausalLM(keras_hub.models.LlamaBackbone(**common), preprocessor=None)
    decoder = step_model(model, capacity=16)
    assert decoder.kind in ("rotary", "gemma") and decoder.state_shapes(1)["kv_cache_k_0"] == (
        1, 1 if family == "llama_grouped" else 2, 16, 8)  # the cache keeps the key/value heads
    model.compile(sampler="greedy")
    padded = np.zeros((1, 16), np.int32)
    padded[0, :3] = [3, 4, 5]
    hub = model.generate({"token_ids": padded, "padding_mask": padded > 0}, stop_token_ids=None)
    want = [int(t) for t in hub["token_ids"][0, 3:]]
    assert greedy(numpy_step(decoder), decoder.empty_cache(1), [3, 4, 5], 16, max_new=len(want),
                  prefill_len=16) == want
    if family == "mistral":
        with pytest.raises(ValueError, match=r"sliding attention window \(64\) is shorter than the cache's capacity"):
            step_model(model, capacity=128)


def test_other_models_are_refused_with_the_reason():
    keras.utils.set_random_seed(0)
    assert "not a keras-hub CausalLM" in hub_refusal(gpt2().backbone)
    backbone = keras_hub.models.GemmaBackbone(vocabulary_size=50, num_layers=1, num_query_heads=2, head_dim=8,
                                              num_key_value_heads=1, hidden_dim=16, intermediate_dim=32,
                                              use_sliding_window_attention=True, sliding_window_size=8)
    gemma = keras_hub.models.GemmaCausalLM(backbone=backbone, preprocessor=None)
    with pytest.raises(ValueError, match=r"sliding attention window \(8\) is shorter than the cache's capacity \(16\)"):
        HubDecoder(gemma, capacity=16)
