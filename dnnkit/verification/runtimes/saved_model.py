"""A SavedModel run by TensorFlow through its ``serving_default`` signature."""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnkit.core.tensors import Inputs
from dnnkit.verification.runtimes.base import Runner, one_core


class SavedModelRunner(Runner):
    default_threads = None  # TensorFlow's pools: every core

    def __init__(self, path: str, threads: int | None = None) -> None:
        import tensorflow as tf

        self.path = path
        self._tf = tf
        self._module = tf.saved_model.load(path)
        if "serving_default" not in self._module.signatures:
            raise ValueError("no serving_default signature")
        self._fn = self._module.signatures["serving_default"]
        inputs = self._fn.structured_input_signature[1]
        self.input_names = list(inputs)
        self.output_names = list(self._fn.structured_outputs)
        self.batch = inputs[self.input_names[0]].shape[0]
        self.input_dtypes = {n: spec.dtype.as_numpy_dtype for n, spec in inputs.items()}

    def _throughput_on(self, sample: Inputs, n: int, cores: int) -> float | None:
        if cores > 1:
            return self._throughput(sample, n)  # TensorFlow's pools already use every core
        with one_core() as pinned:
            return self._throughput(sample, n) if pinned else None

    def settings(self) -> dict[str, Any]:
        threads = self._tf.config.threading.get_intra_op_parallelism_threads()
        return {"runtime": "tensorflow", "intra_op_threads": threads or "all cores"}

    def _prepare(self, x: Inputs) -> Any:
        return {n: self._tf.constant(np.asarray(v).astype(self.input_dtypes.get(n, np.float32)))
                for n, v in self._feed(x).items()}

    def _invoke(self, prepared: Any) -> Any:
        return self._fn(**prepared)

    def signature(self) -> list[dict[str, Any]]:
        """``serving_default``'s inputs and outputs: name, shape (-1: any), dtype."""
        inputs = self._fn.structured_input_signature[1]
        outputs = self._fn.structured_outputs
        return [{"io": io, "name": n, "shape": [-1 if d is None else int(d) for d in spec.shape.as_list()],
                 "dtype": spec.dtype.name}
                for io, group in (("input", inputs), ("output", outputs)) for n, spec in group.items()]

    def _call(self, x: Inputs) -> list[np.ndarray]:
        out = self._invoke(self._prepare(x))
        return [out[name].numpy() for name in self.output_names]
