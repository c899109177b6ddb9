"""Built-in sequence tasks: seeded generators (no file, no network) that a small model learns in minutes.

- ``brackets`` (a ``tagging`` head on token ids): a string of ``(``, ``)`` and letters; each step's tag is
  the bracket depth after it (0 .. num_classes - 1). Strings have different lengths, right-padded with
  token 0; a padded step's tag is the padding label, so no loss or metric counts it.
- ``series`` (a ``sequence_regression`` head on one feature per step): a noisy sum of two sines; each step's
  target is the next step's value (one-step-ahead forecasting).
- ``reverse`` (a ``causal_lm`` head): a prompt of 2 .. (steps - 1) // 2 digits and ``=``, answered by the same
  digits reversed and an end token. The model reads the sequence shifted by one and learns the next token at
  the answer's steps only (the prompt's steps are padding in the labels): what greedy decoding then generates.
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
