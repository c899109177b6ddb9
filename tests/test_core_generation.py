"""A prompt is checked before any runtime runs (integers, inside the vocabulary, room in the cache), text is
read with the model's vocabulary, and the state tensors' names map between signatures and ONNX both ways."""

import numpy as np
import pytest

from dnnkit.core.generation import check_room, detokenize, onnx_name, prompt_tokens, state_name
from dnnkit.errors import DataError

VOCAB = ["<pad>", *"0123456789", "<eos>", "="]


def test_prompts_as_ids_lists_arrays_or_text():
    assert prompt_tokens("4 2,5", 13) == [4, 2, 5]
    assert prompt_tokens([4, 2], 13) == [4, 2]
    assert prompt_tokens(np.array([1, 12], np.int64), 13) == [1, 12]
    assert prompt_tokens(None, 13, VOCAB, text="31=") == [4, 2, 12]
    assert prompt_tokens(None, 13, VOCAB, text="1<eos>") == [2, 11]  # the longest token first
    assert detokenize([4, 2, 11], VOCAB, eos=11) == "31" and detokenize([4], None) is None


@pytest.mark.parametrize("prompt, text, vocabulary, message", [
    ("4 2.5", None, None, "prompt: expected integer token ids, got '2.5'"),
    (np.array([1.0, 2.0], np.float32), None, None, "prompt: expected integer token ids, got dtype float32"),
    ([[1, 2]], None, None, "prompt: expected one sequence of token ids (1-D), got shape [1, 2]"),
    ("3 13", None, None, "prompt: token id 13 is outside the vocabulary, expected 0 .. 12"),
    ("-1", None, None, "prompt: token id -1 is outside the vocabulary"),
    ("", None, None, "prompt: expected at least one token, got none"),
    (None, "3a", VOCAB, "text: 'a' (at 1) is no token of the vocabulary"),
    (None, "31", None, "text: this model records no vocabulary"),
    ("3", "3", VOCAB, "expected token ids (--prompt) or text (--text), exactly one, got both"),
    (None, None, VOCAB, "exactly one, got neither"),
])
def test_a_bad_prompt_is_one_line_naming_the_field(prompt, text, vocabulary, message):
    with pytest.raises(DataError) as err:
        prompt_tokens(prompt, 13, vocabulary, text)
    assert message in str(err.value) and "\n" not in str(err.value) and err.value.exit_code == 2


def test_room_in_the_cache():
    assert check_room([1] * 4, None, 16) == 13  # the token after the last position is still predicted
    assert check_room([1] * 4, 13, 16) == 13
    with pytest.raises(DataError, match=r"max_new: 14 tokens after a prompt of 4 overflow the cache's capacity of 16 "
                                        r"positions, expected at most 13"):
        check_room([1] * 4, 14, 16)
    with pytest.raises(DataError, match=r"prompt: 17 tokens, expected at most 16 \(the cache's capacity\)"):
        check_room([1] * 17, None, 16)
    with pytest.raises(DataError, match="max_new: expected a positive integer, got 0"):
        check_room([1], 0, 16)


def test_state_names_map_to_optimums_and_back():
    pairs = {"kv_cache_k_0": ("past_key_values.0.key", "present.0.key"),
             "kv_cache_v_3": ("past_key_values.3.value", "present.3.value"),
             "h_1": ("past_state.1.h", "present_state.1.h"), "c_0": ("past_state.0.c", "present_state.0.c"),
             "tokens": ("input_ids", "input_ids"), "input_pos": ("position_ids", "position_ids")}
    for name, (into, out) in pairs.items():
        assert onnx_name(name, "in") == into and onnx_name(name, "out") == out
        assert state_name(into) == name and state_name(out) == name
    assert onnx_name("logits", "out") == "logits"
