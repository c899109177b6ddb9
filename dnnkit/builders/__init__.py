"""Builders: one per model family, each turning a spec into a built ``keras.Model``.

Pure Keras 3 (Keras ops only, no TensorFlow import) so the same spec builds on the JAX
backend too. Builders never fit: training is :mod:`dnnkit.training`'s.

May import: :mod:`dnnkit.config`.
"""

from __future__ import annotations

import os
from typing import Any

from dnnkit.config.model import Spec, as_spec


def build(spec: Spec | str | os.PathLike[str] | dict[str, Any]) -> "keras.Model":  # noqa: F821
    """Build the model a spec describes.

    Args:
        spec: a :class:`~dnnkit.config.model.Spec`, a path to a spec file, or a spec dict.

    Returns:
        A built ``keras.Model`` named after the spec.

    Raises:
        SpecError: if the spec is invalid.
    """
    spec = as_spec(spec)
    from dnnkit.builders.cnn import build_cnn
    from dnnkit.builders.mlp import build_mlp
    from dnnkit.builders.rnn import build_rnn
    from dnnkit.builders.seq2seq import build_seq2seq
    from dnnkit.builders.transformer import build_transformer

    if spec.model.head == "seq2seq":
        return build_seq2seq(spec)

    builders = {"mlp": build_mlp, "cnn": build_cnn, "rnn": build_rnn,
                "transformer": build_transformer}
    return builders[spec.model.family](spec)
