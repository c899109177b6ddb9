"""Models that are not Keras 3 files: TensorFlow SavedModel folders and tf_keras (Keras 2) ``.h5``.

Both are run in TensorFlow through a SavedModel's ``serving_default`` signature (a tf_keras
``.h5`` is written as a SavedModel by tf_keras itself first), wrapped in :class:`SignatureModel`,
which offers the small part of the ``keras.Model`` interface that dnnkit's reference, converters
and verification use: ``inputs``, ``outputs`` (names, shapes, dtypes), calling it, its weights.
The reference outputs therefore come from the model's own runtime, not from a re-built copy.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dnnkit.core.tensors import fp16_round, input_specs
from dnnkit.errors import ModelLoadError, one_line


@dataclass(frozen=True)
class _Tensor:
    """What dnnkit reads of a Keras tensor: name, shape (batch first) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


def is_saved_model(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a TensorFlow SavedModel folder."""
    return Path(path).is_dir() and (Path(path) / "saved_model.pb").is_file()


class SignatureModel:
    """A SavedModel's ``serving_default`` signature, called like a Keras model.

    Inputs are fed by name (a single array goes to the only input); outputs come back as a
    dict keyed by the signature's output names, which :mod:`dnnkit.core.tensors` flattens by sorted
    name as it does for Keras models that return dicts.
    """

    layers: list[Any] = []

    def __init__(self, path: str | os.PathLike[str]) -> None:
        import tensorflow as tf

        self.path = str(path)
        self.name = Path(path).name
        try:
            self._module = tf.saved_model.load(self.path)
        except Exception as exc:  # noqa: BLE001 - any loader error is a bad model file
            raise ModelLoadError(f"model: cannot load the SavedModel {path}: {one_line(exc)}") \
                from None
        signatures = getattr(self._module, "signatures", {})
        if "serving_default" not in signatures:
            raise ModelLoadError(f"model: the SavedModel {path} has no serving_default signature; expected one "
                                 f"(found {sorted(signatures)})")
        self._fn = signatures["serving_default"]
        specs = self._fn.structured_input_signature[1]
        self.inputs = [_Tensor(n, tuple(s.shape), s.dtype.name) for n, s in sorted(specs.items())]
        outs = self._fn.structured_outputs
        self._outputs_struct = {n: None for n in outs}
        self.outputs = [_Tensor(n, tuple(outs[n].shape), outs[n].dtype.name) for n in sorted(outs)]
        self.output_names = sorted(outs)
        self._inputs_struct = {t.name: None for t in self.inputs}
        self._variables = list(self._module.variables) if hasattr(self._module, "variables") else []

    def __call__(self, x: Any, training: bool = False) -> dict[str, Any]:
        import tensorflow as tf

        feed = x if isinstance(x, dict) else {self.inputs[0].name: x}
        dtypes = {t.name: t.dtype for t in self.inputs}
        return dict(self._fn(**{k: tf.cast(v, dtypes[k]) for k, v in feed.items()}))

    def count_params(self) -> int:
        return int(sum(np.prod(v.shape) for v in self._variables))

    def get_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self._variables]

    @contextmanager
    def fp16_rounded(self) -> Iterator[None]:
        """Every float variable rounded to fp16 while inside (for the fp16 calibration)."""
        saved = [v.numpy() for v in self._variables]
        try:
            for v, w in zip(self._variables, saved):
                if w.dtype.kind == "f":
                    v.assign(fp16_round(w))
            yield
        finally:
            for v, w in zip(self._variables, saved):
                v.assign(w)

    def save_as(self, path: str | os.PathLike[str], batch: int | None) -> None:
        """Write this signature as a new SavedModel with the given batch size."""
        import tensorflow as tf

        names = [t.name for t in self.inputs]
        module = tf.Module()
        module.source = self._module

        @tf.function(input_signature=input_specs(self, batch))
        def serve(*args: Any) -> dict[str, Any]:
            return self._fn(**dict(zip(names, args)))

        module.serve = serve
        tf.saved_model.save(module, str(path), signatures={"serving_default": serve})
