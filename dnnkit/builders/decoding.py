"""Step-by-step decoding of a dnnkit generative model (a ``causal_lm`` or ``seq2seq`` head): :func:`step_model`
gives the model's step (a Transformer's KV-cached step, :mod:`dnnkit.builders.kv_cache`; an RNN's step with its
``h``/``c`` states, :mod:`dnnkit.builders.rnn_step`; an encoder-decoder's, :mod:`dnnkit.builders.seq2seq_step`),
and :func:`greedy_full` the tokens a cache must reproduce.

Every step model answers the same questions: ``capacity`` (the positions a sequence may use), ``vocab``,
``state_shapes(batch)`` (each state tensor's shape by name), ``empty_cache(batch)``, ``token_axis`` (the ONNX
step's token axis: ``None`` for any number of tokens, 1 where the step takes one token at a time), and
``call({"tokens", "input_pos", **state}) -> {"logits", **state}``. An encoder-decoder's also has
``source_steps``, ``encoder_shapes(batch)`` (what each call reads from the encoder: ``encoder_hidden_states``)
and ``encode(source)``. Keras ops only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops

from dnnkit.builders.hub_step import HubDecoder, hub_refusal, is_hub_causal_lm
from dnnkit.builders.kv_cache import CachedDecoder, cache_names
from dnnkit.builders.rnn_step import RecurrentDecoder
from dnnkit.builders.seq2seq_step import Seq2SeqStep, is_seq2seq

__all__ = ["CachedDecoder", "HubDecoder", "RecurrentDecoder", "Seq2SeqStep", "cache_names", "greedy_full",
           "hub_refusal", "is_hub_causal_lm", "numpy_step", "start_of", "step_model"]


def numpy_step(decoder: Any) -> Any:
    """``decoder`` (a step model) as a :data:`dnnkit.core.generation.Step` on NumPy arrays; the state it
    returns keeps what it was given and did not change (``encoder_hidden_states``)."""
    def step(tokens: np.ndarray, pos: np.ndarray, state: dict[str, np.ndarray]) -> tuple:
        out = {k: ops.convert_to_numpy(v) for k, v in decoder({"tokens": tokens, "input_pos": pos, **state}).items()}
        return out.pop("logits"), {**state, **out}
    return step


def start_of(decoder: Any, prompt: list[int]) -> tuple[dict[str, np.ndarray], list[int]]:
    """The state a Keras step model starts ``prompt`` from and the tokens it prefills (an encoder-decoder's
    source steps encoded first)."""
    state = decoder.empty_cache(1)
    steps = int(getattr(decoder, "source_steps", 0))
    if not steps:
        return state, prompt
    encoded = decoder.encode(np.array([prompt[:steps]], np.int32))
    return {**state, **{k: ops.convert_to_numpy(v) for k, v in encoded.items()}}, prompt[steps:]


def step_model(model: Any, capacity: int | None = None) -> Any:
    """The step model of a dnnkit causal_lm or seq2seq ``model`` (KV-cached for a Transformer, stateful for an
    RNN, with an ``encode`` for an encoder-decoder), or of a keras-hub causal LM (``capacity`` positions).

    Raises:
        ValueError: if the model is none of these.
    """
    if is_hub_causal_lm(model):
        return HubDecoder(model, capacity)
    if is_seq2seq(model):
        return Seq2SeqStep(model)
    names = {layer.name for layer in model.layers}
    if "block_0_attention" in names:
        return CachedDecoder(model)
    return RecurrentDecoder(model)


def greedy_full(model: Any, prompts: list[list[int]], max_new: list[int] | int,
                eos: int | None = None, steps: int | None = None) -> list[list[int]]:
    """Greedy generation recomputing the whole prefix for every new token (what a cache must reproduce),
    every prompt in one batch.

    Args:
        model: the causal_lm or seq2seq ``keras.Model`` (fixed length ``steps``).
        prompts: token ids, each at least one token (a seq2seq model's: the source steps, then the decoder's
            first tokens).
        max_new: the most tokens generated, per prompt or for all.
        eos: the end token: a prompt's generation stops after it.
        steps: the positions a sequence may use (default: the model's input length; a keras-hub causal LM,
            whose length is free, is fed ``token_ids`` and an all-ones ``padding_mask`` of this length).

    Returns:
        The generated tokens of each prompt (never past ``steps`` positions).
    """
    hub = isinstance(model.input, dict)
    steps = int(steps or model.inputs[0].shape[1])
    offset = 0 if hub else steps - int(model.outputs[0].shape[1])  # a seq2seq model's source steps have no output
    limits = [max_new] * len(prompts) if isinstance(max_new, int) else list(max_new)
    seqs = [list(p) for p in prompts]
    new: list[list[int]] = [[] for _ in prompts]
    live = [i for i in range(len(prompts)) if limits[i] > 0 and len(seqs[i]) <= steps]
    while live:
        x = np.zeros((len(live), steps), np.int32)
        for row, i in enumerate(live):
            x[row, :len(seqs[i])] = seqs[i]
        feed = {"token_ids": x, "padding_mask": np.ones_like(x)} if hub else x
        logits = ops.convert_to_numpy(model(feed, training=False))
        for row, i in enumerate(live):
            token = int(np.argmax(logits[row, len(seqs[i]) - 1 - offset]))
            seqs[i].append(token)
            new[i].append(token)
        live = [i for i in live if len(new[i]) < limits[i] and len(seqs[i]) <= steps and new[i][-1] != eos]
    return new
