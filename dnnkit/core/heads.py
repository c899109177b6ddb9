"""What each head is: one answer per sample (``multiclass``, ``binary``, ``regression``) or one per time
step (``tagging``: a class per step; ``sequence_regression``: a value per step; ``causal_lm``: the next
token at each step, over the vocabulary, each step seeing only itself and earlier ones; ``seq2seq``: an
encoder reads the source steps, a decoder gives the next target token at each target step), and which
metrics and losses it takes. Every stage asks these tables, not the head's name, whether an output is a class or a
value and whether it is per sample or per step.
"""

from __future__ import annotations

HEADS = ("multiclass", "binary", "regression", "tagging", "sequence_regression", "causal_lm", "seq2seq")

# heads whose outputs are class scores (argmax / threshold), and heads with a value per step
CLASS_HEADS = ("multiclass", "binary", "tagging", "causal_lm", "seq2seq")
STEP_HEADS = ("tagging", "sequence_regression", "causal_lm", "seq2seq")
STEP_CLASS_HEADS = ("tagging", "causal_lm", "seq2seq")
LOGIT_HEADS = ("multiclass", "tagging", "causal_lm", "seq2seq")  # a logit per class (softmax cross-entropy)
# heads that predict the next token over a vocabulary: perplexity, step-by-step generation
GENERATIVE_HEADS = ("causal_lm", "seq2seq")
VALUE_HEADS = ("regression", "sequence_regression")

# heads with num_classes / output_units
NUM_CLASSES_HEADS = ("multiclass", "tagging")
OUTPUT_UNITS_HEADS = ("regression", "sequence_regression")

# A per-step label below 0 marks padding: no loss and no metric counts that step (Keras's ignore_class,
# Hugging Face's -100 are both read as this one value).
PAD_LABEL = -1

_CLASS_METRICS = ("accuracy", "precision", "recall", "f1")
_VALUE_METRICS = ("mse", "rmse", "mae")

METRICS_OF = {"multiclass": _CLASS_METRICS, "binary": _CLASS_METRICS, "tagging": _CLASS_METRICS,
              "causal_lm": _CLASS_METRICS, "seq2seq": _CLASS_METRICS,
              "regression": _VALUE_METRICS, "sequence_regression": _VALUE_METRICS}

LOSSES_OF = {"multiclass": ("auto", "sparse_categorical_crossentropy", "categorical_crossentropy"),
             "binary": ("auto", "binary_crossentropy"),
             "tagging": ("auto", "sparse_categorical_crossentropy"),
             "causal_lm": ("auto", "sparse_categorical_crossentropy"),
             "seq2seq": ("auto", "sparse_categorical_crossentropy"),
             "regression": ("auto", "mse"),
             "sequence_regression": ("auto", "mse")}


def is_class(head: str) -> bool:
    """Whether the head's outputs are class scores."""
    return head in CLASS_HEADS


def is_value(head: str) -> bool:
    """Whether the head's outputs are values (regression, per sample or per step)."""
    return head in VALUE_HEADS


def default_metrics(head: str) -> tuple[str, ...]:
    """The metrics a training run logs when the spec names none."""
    return ("rmse",) if is_value(head) else ("accuracy",)
