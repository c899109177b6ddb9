"""Built-in sequence tasks: seeded generators (no file, no network) that a small model learns in minutes.

- ``brackets`` (a ``tagging`` head on token ids): a string of ``(``, ``)`` and letters; each step's tag is
  the bracket depth after it (0 .. num_classes - 1). Strings have different lengths, right-padded with
  token 0; a padded step's tag is the padding label, so no loss or metric counts it.
- ``series`` (a ``sequence_regression`` head on one feature per step): a noisy sum of two sines; each step's
  target is the next step's value (one-step-ahead forecasting).
- ``reverse`` (a ``causal_lm`` head): a prompt of 2 .. (steps - 1) // 2 digits and ``=``, answered by the same
  digits reversed and an end token. The model reads the sequence shifted by one and learns the next token at
  the answer's steps only (the prompt's steps are padding in the labels): what greedy decoding then generates.
- ``addition`` (a ``seq2seq`` head): the source is a sum as text, ``"12+345"`` (each number of 1 ..
  (source_steps - 1) // 2 digits, right-padded), the target its value, ``"357"``, and an end token; the decoder
  reads the target behind a start token (keras-io's addition_rnn task, as an encoder-decoder).
"""

from __future__ import annotations

import numpy as np

from dnnkit.core.heads import PAD_LABEL
from dnnkit.config.model import BUILTIN_SOURCES, ModelConfig
from dnnkit.errors import DataError

TASKS = tuple(s for s in BUILTIN_SOURCES if s != "digits")  # the seeded generators below

SAMPLES = 3000  # sequences a task generates unless the spec's data.samples says

PAD, OPEN, CLOSE = 0, 1, 2  # brackets' token ids; 3 .. vocab_size - 1 are letters
EOS, SEP = 11, 12  # reverse's end and "=" tokens; digit d is token d + 1
REVERSE_VOCAB = 13
# reverse's tokens as text (the artifacts' labels; `dnnkit generate --text` reads and writes them)
REVERSE_TOKENS = ("<pad>", *"0123456789", "<eos>", "=")
# addition's tokens: digit d is token d + 1
ADDITION_TOKENS = ("<pad>", *"0123456789", "+", "<bos>", "<eos>")
PLUS, BOS, ADD_EOS = 11, 12, 13


def task_data(source: str, model: ModelConfig, seed: int, samples: int | None = None) -> dict[str, np.ndarray]:
    """``x_train``/``y_train`` of the built-in task ``source``, laid out for ``model`` (and ``class_names``, a
    language model's tokens as text, where the task has them).

    Raises:
        DataError: if the model does not fit the task (head, input, classes).
    """
    rng = np.random.default_rng(seed)
    n = samples or SAMPLES
    if source == "brackets":
        return _brackets(model, rng, n)
    if source == "reverse":
        return _reverse(model, rng, n)
    if source == "addition":
        return _addition(model, rng, n)
    return _series(model, rng, n)


def _brackets(model: ModelConfig, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    opts = model.options
    if model.head != "tagging" or getattr(opts, "input", None) != "tokens":
        raise DataError(f"data.source: brackets tags each token of a string, expected head \"tagging\" on "
                        f"input = \"tokens\", got head {model.head!r} on input "
                        f"{getattr(opts, 'input', 'features')!r}")
    if opts.vocab_size < 4:
        raise DataError(f"model.vocab_size: brackets needs 4 or more token ids (padding, '(', ')', letters), "
                        f"got {opts.vocab_size}")
    steps, depth_max = model.input_shape[0], model.num_classes - 1
    x = np.full((n, steps), PAD, np.int32)
    y = np.full((n, steps), PAD_LABEL, np.int32)
    lengths = rng.integers(max(1, steps // 2), steps + 1, n)
    for i, length in enumerate(lengths):
        depth = 0
        for t in range(length):
            r = rng.random()
            if depth < depth_max and (r < 0.4 or depth == 0 and r < 0.7):
                token, depth = OPEN, depth + 1
            elif depth > 0 and r < 0.75:
                token, depth = CLOSE, depth - 1
            else:
                token = int(rng.integers(3, opts.vocab_size))
            x[i, t], y[i, t] = token, depth
    return {"x_train": x, "y_train": y}


def reverse_prompts(count: int, steps: int, seed: int) -> list[list[int]]:
    """``count`` seeded prompts of the reverse task (digit tokens then ``=``), for generation checks."""
    rng = np.random.default_rng(seed)
    return [_reverse_pair(rng, steps)[0] for _ in range(count)]


def reverse_answer(prompt: list[int]) -> list[int]:
    """The answer the reverse task expects for ``prompt``: its digits reversed, then the end token."""
    return prompt[:-1][::-1] + [EOS]


def _reverse_pair(rng: np.random.Generator, steps: int) -> tuple[list[int], list[int]]:
    n = int(rng.integers(2, (steps - 1) // 2 + 1))
    prompt = [int(d) + 1 for d in rng.integers(0, 10, n)] + [SEP]
    return prompt, reverse_answer(prompt)


def _reverse(model: ModelConfig, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    opts = model.options
    steps = model.input_shape[0]
    if model.head != "causal_lm" or opts.vocab_size < REVERSE_VOCAB or steps < 5:
        raise DataError(f"data.source: reverse is a language-model task, expected head \"causal_lm\" with "
                        f"model.vocab_size >= {REVERSE_VOCAB} and input_shape [5 or more], got head {model.head!r} "
                        f"with vocab_size {getattr(opts, 'vocab_size', None)} and input_shape {list(model.input_shape)}")
    x = np.full((n, steps), PAD, np.int32)
    y = np.full((n, steps), PAD_LABEL, np.int32)
    for i in range(n):
        prompt, answer = _reverse_pair(rng, steps)
        seq = prompt + answer
        x[i, :len(seq) - 1] = seq[:-1]
        y[i, len(prompt) - 1:len(seq) - 1] = answer  # the next token, at the answer's steps only
    names = np.array(REVERSE_TOKENS + tuple(f"<{i}>" for i in range(REVERSE_VOCAB, opts.vocab_size)))
    return {"x_train": x, "y_train": y, "class_names": names}


def _addition(model: ModelConfig, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    opts = model.options
    source, target = model.source_steps or 0, model.output_steps
    digits = (source - 1) // 2
    if model.head != "seq2seq" or opts.vocab_size < len(ADDITION_TOKENS) or digits < 1 or target < digits + 2:
        raise DataError(f"data.source: addition is a seq2seq task, expected head \"seq2seq\" with model.vocab_size >= "
                        f"{len(ADDITION_TOKENS)}, source_steps >= 3 and (input_shape - source_steps) >= a sum's digits + "
                        f"2, got head {model.head!r} with vocab_size {getattr(opts, 'vocab_size', None)}, source_steps "
                        f"{model.source_steps} and input_shape {list(model.input_shape)}")
    x = np.full((n, source + target), PAD, np.int32)
    y = np.full((n, target), PAD_LABEL, np.int32)
    for i in range(n):
        a, b = (int(rng.integers(0, 10 ** int(rng.integers(1, digits + 1)))) for _ in range(2))
        query = [int(c) + 1 if c.isdigit() else PLUS for c in f"{a}+{b}"]
        answer = [int(c) + 1 for c in str(a + b)] + [ADD_EOS]
        x[i, :len(query)] = query
        x[i, source:source + len(answer)] = [BOS] + answer[:-1]
        y[i, :len(answer)] = answer
    names = np.array(ADDITION_TOKENS + tuple(f"<{i}>" for i in range(len(ADDITION_TOKENS), opts.vocab_size)))
    return {"x_train": x, "y_train": y, "class_names": names}


def _series(model: ModelConfig, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    shape = tuple(model.input_shape)
    if model.head != "sequence_regression" or len(shape) != 2 or shape[1] != 1 or model.output_units != 1:
        raise DataError(f"data.source: series forecasts one value per step, expected head "
                        f"\"sequence_regression\" with model.input_shape [steps, 1] and output_units = 1, got head "
                        f"{model.head!r} with input_shape {list(shape)}")
    steps = shape[0]
    t = np.arange(steps + 1, dtype=np.float64)
    freq = rng.uniform(0.15, 0.6, (n, 2, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 2, 1))
    amp = rng.uniform(0.4, 1.0, (n, 2, 1))
    clean = np.sum(amp * np.sin(freq * t + phase), axis=1)
    noisy = clean + rng.normal(0.0, 0.05, clean.shape)
    x = noisy[:, :steps, None].astype(np.float32)
    y = noisy[:, 1:, None].astype(np.float32)
    return {"x_train": x, "y_train": y}
