"""An ``.onnx`` file run by onnxruntime (CPU), with its initializers and metadata."""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnkit.core.tensors import Inputs
from dnnkit.verification.runtimes.base import Runner


class OnnxRunner(Runner):
    def __init__(self, path: str, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.path = path
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        inputs = self.session.get_inputs()
        self.input_names = [i.name for i in inputs]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.batch = inputs[0].shape[0] if isinstance(inputs[0].shape[0], int) else None
        self.input_dtypes = {i.name: {"tensor(float)": np.float32, "tensor(int32)": np.int32,
                                      "tensor(int64)": np.int64}.get(i.type, np.float32) for i in inputs}

    def signature(self) -> list[dict[str, Any]]:
        """Each input and output as onnxruntime sees it: name, shape (a dimension's name where it is free),
        element type."""
        return [{"io": io, "name": t.name, "shape": [d if isinstance(d, int) else str(d) for d in t.shape],
                 "dtype": t.type.removeprefix("tensor(").removesuffix(")")}
                for io, group in (("input", self.session.get_inputs()), ("output", self.session.get_outputs()))
                for t in group]

    def _prepare(self, x: Inputs) -> dict[str, np.ndarray]:
        return {n: np.asarray(v).astype(self.input_dtypes.get(n, np.float32)) for n, v in self._feed(x).items()}

    def _invoke(self, prepared: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, prepared)

    def weights(self) -> dict[str, np.ndarray]:
        """Initializers with two or more dimensions (kernels), by name."""
        import onnx
        from onnx import numpy_helper

        proto = onnx.load(self.path)
        return {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer
                if len(i.dims) >= 2 and int(np.prod(i.dims)) >= 16}

    def settings(self) -> dict[str, Any]:
        options = self.session.get_session_options()
        return {"runtime": "onnxruntime", "intra_op_threads": options.intra_op_num_threads,
                "graph_optimization_level": str(options.graph_optimization_level).split(".")[-1],
                "provider": self.session.get_providers()[0]}

    def metadata(self) -> dict[str, Any]:
        """The model's ``metadata_props`` as onnxruntime reads them, JSON values decoded."""
        import json

        def decode(value: str) -> Any:
            try:
                return json.loads(value)
            except ValueError:
                return value

        return {k: decode(v) for k, v in self.session.get_modelmeta().custom_metadata_map.items()}
