"""A language model's own data: an .npz of token sequences (right-padded with a padding id) is enough; each
step's label is the next token, and padding is left out of the loss and the metrics."""

import numpy as np
import pytest

from dnnkit.config.model import spec_from_dict
from dnnkit.data.load import load_data
from dnnkit.errors import DataError


def lm_spec(path):
    return spec_from_dict({"name": "lm", "data": {"source": str(path)}, "model": {
        "family": "rnn", "input": "tokens", "vocab_size": 12, "input_shape": [6], "head": "causal_lm", "units": [8]}})


def test_labels_are_the_next_tokens_and_padding_is_masked(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(2, 12, (50, 6)).astype(np.int32)
    x[:, 4:] = 1  # right-padded with the padding id 1
    names = np.array(["<pad0>", "<pad>", *"abcdefghij"])
    np.savez(tmp_path / "lm.npz", x_train=x, pad_id=np.int32(1), class_names=names)
    data = load_data(lm_spec(tmp_path / "lm.npz"))
    x_all = np.concatenate([data.x_train, data.x_val, data.x_test])
    y_all = np.concatenate([data.y_train, data.y_val, data.y_test])
    assert np.array_equal(y_all[:, :3], x_all[:, 1:4])  # the next token
    assert np.all(y_all[:, 3:] == -1)  # the next token is padding, or there is none
    assert data.labels == list(names)  # the vocabulary, for --text and the files' labels


def test_token_sequences_that_are_not_integers_name_the_array(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((4, 6), np.float32))
    with pytest.raises(DataError, match=r"x_train: a language model's token sequences, expected a 2-D integer array"):
        load_data(lm_spec(tmp_path / "bad.npz"))
    np.savez(tmp_path / "pad.npz", x_train=np.zeros((4, 6), np.int32), pad_id=np.array([0, 1]))
    with pytest.raises(DataError, match=r"pad_id: expected one integer token id"):
        load_data(lm_spec(tmp_path / "pad.npz"))
