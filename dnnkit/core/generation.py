"""Greedy generation driven one step at a time through any runtime that runs a cached step model: prefill
the prompt once, then decode one token per call, the state (a Transformer's KV cache, an RNN's ``h``/``c``)
passed back in. Pure NumPy, so Keras, TensorFlow, the LiteRT interpreter and onnxruntime are driven by the same
loop and must give the same tokens. Also the state tensors' names in each runtime.

State names, as the TFLite and SavedModel signatures carry them (LiteRT-LM's for the KV cache):
``kv_cache_k_{i}`` / ``kv_cache_v_{i}`` (batch, heads, capacity, head_dim) per Transformer block, ``h_{i}``
(and ``c_{i}`` for an LSTM) (batch, units) per recurrent layer. The ONNX step model has Hugging Face Optimum's
names: ``past_key_values.{i}.key`` / ``.value`` in, ``present.{i}.key`` / ``.value`` out, and for an RNN
``past_state.{i}.h`` / ``.c`` in, ``present_state.{i}.h`` / ``.c`` out.

A prefill of a fixed width takes the prompt right-padded; a padded slot's ``input_pos`` is -1, which writes
nothing: no cache slot, no recurrent state.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from dnnkit.errors import DataError

# step(tokens (1, L) int32, input_pos (1, L) int32, state) -> (logits (1, L, vocab), state)
Step = Callable[[np.ndarray, np.ndarray, dict[str, np.ndarray]], tuple[np.ndarray, dict[str, np.ndarray]]]

PAD_POS = -1  # the input_pos of a padded prefill slot

# The step artifacts an export writes: name -> (format, precision, file under OUT/artifacts/generation/)
STEP_ARTIFACTS = {
    "decoder_saved_model": ("saved_model", "fp32", "saved_model"),
    "decoder_tflite_fp32": ("tflite", "fp32", "decoder_fp32.tflite"),
    "decoder_tflite_fp16": ("tflite", "fp16", "decoder_fp16.tflite"),
    "decoder_tflite_dynamic_int8": ("tflite", "dynamic_int8", "decoder_dynamic_int8.tflite"),
    "decoder_onnx_fp32": ("onnx", "fp32", "decoder_step.onnx"),
    "decoder_onnx_dynamic_int8": ("onnx", "dynamic_int8", "decoder_step_dynamic_int8.onnx"),
    # full integer (int8 weights and activations, float state in and out), written when a recipe asks for it
    "decoder_tflite_int8": ("tflite", "int8", "decoder_int8.tflite"),
}
DEFAULT_STEP_ARTIFACTS = tuple(n for n in STEP_ARTIFACTS if n != "decoder_tflite_int8")


def encoder_file(step_file: str) -> str:
    """The ONNX encoder file written beside an encoder-decoder's ONNX step file (``encoder.onnx``, ...)."""
    return step_file.replace("decoder_step", "encoder")


def onnx_name(name: str, side: str) -> str:
    """The ONNX name of a step tensor (``side`` "in" or "out"): Optimum's for tokens, positions and caches."""
    if name.startswith("kv_cache_"):
        _, _, kind, i = name.split("_")
        return f"{'past_key_values' if side == 'in' else 'present'}.{i}.{'key' if kind == 'k' else 'value'}"
    if name[:2] in ("h_", "c_"):
        return f"{'past_state' if side == 'in' else 'present_state'}.{name[2:]}.{name[0]}"
    return {"tokens": "input_ids", "input_pos": "position_ids", "source": "input_ids"}.get(name, name)


def state_name(onnx: str) -> str:
    """The signature name of an ONNX state tensor (the inverse of :func:`onnx_name` for states)."""
    parts = onnx.split(".")
    if parts[0] in ("past_key_values", "present"):
        return f"kv_cache_{'k' if parts[2] == 'key' else 'v'}_{parts[1]}"
    if parts[0] in ("past_state", "present_state"):
        return f"{parts[2]}_{parts[1]}"
    return {"input_ids": "tokens", "position_ids": "input_pos"}.get(onnx, onnx)


def prefill(step: Step, caches: dict[str, np.ndarray], prompt: list[int], prefill_len: int | None = None
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The prompt through the step: in one call right-padded to ``prefill_len`` (default its own length; a padded
    slot's position is -1), or token by token where the step takes one (``prefill_len`` 1). Returns the logits
    after its last token and the state."""
    n = len(prompt)
    if prefill_len == 1:
        for pos, token in enumerate(prompt):
            logits, caches = step(np.array([[token]], np.int32), np.array([[pos]], np.int32), caches)
        return logits[0, 0], caches
    width = prefill_len or n
    tokens = np.zeros((1, width), np.int32)
    tokens[0, :n] = prompt
    positions = np.where(np.arange(width) < n, np.arange(width), PAD_POS).astype(np.int32)[None, :]
    logits, caches = step(tokens, positions, caches)
    return logits[0, n - 1], caches


def first_logits(step: Step, caches: dict[str, np.ndarray], prompt: list[int], prefill_len: int | None = None
                 ) -> np.ndarray:
    """What the prefill and the first decode call answer: the logits after the prompt's last token and after the
    greedy token that follows it, (2, vocab): a step artifact's signatures compared with the Keras step's."""
    n = len(prompt)
    last, caches = prefill(step, caches, prompt, prefill_len)
    after, _ = step(np.array([[int(np.argmax(last))]], np.int32), np.array([[n]], np.int32), caches)
    return np.stack([last, after[0, 0]]).astype(np.float32)


def greedy(step: Step, caches: dict[str, np.ndarray], prompt: list[int], capacity: int, max_new: int,
           eos: int | None = None, prefill_len: int | None = None) -> list[int]:
    """Greedy tokens after ``prompt``: the prompt prefilled (in one call right-padded to ``prefill_len``,
    default its own length; token by token where the step takes one token at a time, ``prefill_len`` 1),
    then one decode call per token, until ``eos``, ``max_new`` tokens or a full cache.

    Args:
        step: runs the step model (see :data:`Step`).
        caches: the empty state to start from.
        prompt: the prompt's token ids.
        capacity: the positions a sequence may use.
        max_new: the most tokens generated.
        eos: the end token (generation stops after it).
        prefill_len: the prefill signature's fixed length, if it has one.

    Returns:
        The generated token ids.
    """
    n = len(prompt)
    last, caches = prefill(step, caches, prompt, prefill_len)
    token = int(np.argmax(last))
    new, pos = [token], n
    while token != eos and len(new) < max_new and pos < capacity:
        logits, caches = step(np.array([[token]], np.int32), np.array([[pos]], np.int32), caches)
        token = int(np.argmax(logits[0, 0]))
        new.append(token)
        pos += 1
    return new


def prompt_tokens(prompt: Any, vocab_size: int, vocabulary: list[str] | None = None,
                  text: str | None = None) -> list[int]:
    """A prompt as token ids, checked: ``prompt`` (integer ids: a list, a 1-D integer array, or a string of ids
    separated by spaces or commas) or ``text`` (split into the vocabulary's tokens, longest first).

    Raises:
        DataError: naming the field, the value and what was expected: not integers, an id outside the
            vocabulary, text with no token for a character, both or neither given, an empty prompt.
    """
    if (prompt is None) == (text is None):
        raise DataError("prompt: expected token ids (--prompt) or text (--text), exactly one, got "
                        + ("both" if prompt is not None else "neither"))
    if text is not None:
        if not vocabulary:
            raise DataError("text: this model records no vocabulary (its data gave no class_names), so text cannot "
                            "be read; give token ids with --prompt")
        ids = _tokenize(text, vocabulary)
    else:
        ids = _ids(prompt)
    if not ids:
        raise DataError("prompt: expected at least one token, got none")
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise DataError(f"prompt: token id {bad[0]} is outside the vocabulary, expected 0 .. {vocab_size - 1}")
    return ids


def check_room(prompt: list[int], max_new: int | None, capacity: int) -> int:
    """The number of tokens to generate: ``max_new``, or all the cache has room for; checked against the
    cache's ``capacity``.

    Raises:
        DataError: if the prompt fills the cache, or ``max_new`` more tokens would overflow it.
    """
    room = capacity - len(prompt) + 1  # the token after the last position is still predicted
    if room < 1 or len(prompt) > capacity:
        raise DataError(f"prompt: {len(prompt)} tokens, expected at most {capacity} (the cache's capacity)")
    if max_new is None:
        return room
    if isinstance(max_new, bool) or not isinstance(max_new, (int, np.integer)) or max_new < 1:
        raise DataError(f"max_new: expected a positive integer, got {max_new!r}")
    if max_new > room:
        raise DataError(f"max_new: {max_new} tokens after a prompt of {len(prompt)} overflow the cache's capacity "
                        f"of {capacity} positions, expected at most {room}")
    return int(max_new)


def _ids(prompt: Any) -> list[int]:
    if isinstance(prompt, str):
        parts = prompt.replace(",", " ").split()
        try:
            return [int(p) for p in parts]
        except ValueError:
            bad = next(p for p in parts if not p.lstrip("-").isdigit())
            raise DataError(f"prompt: expected integer token ids, got {bad!r}") from None
    array = np.asarray(prompt)
    if array.dtype.kind not in "iu" and not (array.size == 0 and array.dtype.kind == "f"):
        raise DataError(f"prompt: expected integer token ids, got dtype {array.dtype}"
                        + (f" ({array.reshape(-1)[0]!r} ...)" if array.size else ""))
    if array.ndim != 1:
        raise DataError(f"prompt: expected one sequence of token ids (1-D), got shape {list(array.shape)}")
    return [int(t) for t in array]


def _tokenize(text: str, vocabulary: list[str]) -> list[int]:
    index = {token: i for i, token in enumerate(vocabulary)}
    longest = max(len(t) for t in vocabulary)
    ids, at = [], 0
    while at < len(text):
        for size in range(min(longest, len(text) - at), 0, -1):
            if text[at:at + size] in index:
                ids.append(index[text[at:at + size]])
                at += size
                break
        else:
            raise DataError(f"text: {text[at]!r} (at {at}) is no token of the vocabulary, expected text made of "
                            f"{' '.join(repr(t) for t in vocabulary[:20])}{' ...' if len(vocabulary) > 20 else ''}")
    return ids


def detokenize(ids: list[int], vocabulary: list[str] | None, eos: int | None = None) -> str | None:
    """The text of ``ids`` (the end token left out), where a vocabulary is known."""
    if not vocabulary:
        return None
    return "".join(vocabulary[t] for t in ids if t != eos and 0 <= t < len(vocabulary))
