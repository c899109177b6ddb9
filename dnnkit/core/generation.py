"""Greedy generation driven one step at a time through any runtime that runs a cached step model: prefill
the prompt once, then decode one token per call, the cache passed back in. Pure NumPy, so Keras, the
LiteRT interpreter and onnxruntime are driven by the same loop and must give the same tokens."""

from __future__ import annotations

from typing import Callable

import numpy as np

# step(tokens (1, L) int32, input_pos (1, L) int32, caches) -> (logits (1, L, vocab), caches)
Step = Callable[[np.ndarray, np.ndarray, dict[str, np.ndarray]], tuple[np.ndarray, dict[str, np.ndarray]]]


def greedy(step: Step, caches: dict[str, np.ndarray], prompt: list[int], capacity: int, max_new: int,
           eos: int | None = None, prefill_len: int | None = None) -> list[int]:
    """Greedy tokens after ``prompt``: one prefill call over the prompt (right-padded to ``prefill_len``,
    default its own length), then one decode call per token, until ``eos``, ``max_new`` tokens or a full cache.

    Args:
        step: runs the step model (see :data:`Step`).
        caches: the empty caches to start from.
        prompt: the prompt's token ids.
        capacity: the cache's positions.
        max_new: the most tokens generated.
        eos: the end token (generation stops after it).
        prefill_len: the prefill signature's fixed length, if it has one.
    """
    n = len(prompt)
    width = prefill_len or n
    tokens = np.zeros((1, width), np.int32)
    tokens[0, :n] = prompt
    logits, caches = step(tokens, np.arange(width, dtype=np.int32)[None, :], caches)
    token = int(np.argmax(logits[0, n - 1]))
    new, pos = [token], n
    while token != eos and len(new) < max_new and pos < capacity:
        logits, caches = step(np.array([[token]], np.int32), np.array([[pos]], np.int32), caches)
        token = int(np.argmax(logits[0, 0]))
        new.append(token)
        pos += 1
    return new
