"""A ``.tflite`` file run by the LiteRT interpreter (XNNPACK), int8 inputs quantized as the file says;
its ops, kernels, float ops and metadata read through an interpreter without delegates."""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnkit.artifacts.metadata import read_tflite_metadata
from dnnkit.core.tensors import Inputs
from dnnkit.verification.runtimes.base import Runner


def _integers(value: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A float input on an int8/uint8 tensor's grid (``round(x / scale + zero)``), not yet clipped."""
    scale, zero = detail["quantization"]
    return np.round(value / scale + zero)


class TFLiteRunner(Runner):
    def __init__(self, path: str, threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = path
        self.threads = threads
        self.interpreter = Interpreter(model_path=path, num_threads=threads)
        signatures = self.interpreter.get_signature_list()
        if "serving_default" not in signatures:
            raise ValueError(f"no serving_default signature (found {sorted(signatures)})")
        full = self.interpreter._get_full_signature_list()["serving_default"]
        self.input_names = list(full["inputs"])
        self.output_names = list(full["outputs"])
        by_index = {d["index"]: d for d in
                    self.interpreter.get_input_details() + self.interpreter.get_output_details()}
        self._ins = {n: by_index[full["inputs"][n]] for n in self.input_names}
        self._outs = [by_index[full["outputs"][n]] for n in self.output_names]
        first = self._ins[self.input_names[0]]
        # A dynamic batch shows as -1 in shape_signature.
        sig = first.get("shape_signature", first["shape"])
        self.batch = None if sig[0] == -1 else int(first["shape"][0])
        self.input_dtypes = {n: d["dtype"] for n, d in self._ins.items()}
        self.interpreter.allocate_tensors()
        self._shapes = {n: tuple(d["shape"]) for n, d in self._ins.items()}

    def signature(self) -> list[dict[str, Any]]:
        """Each input and output as the interpreter sees it: name, shape (-1: any), dtype, and the scale and
        zero point an int8 tensor is read with (``real = scale * (q - zero_point)``)."""
        found = []
        for io, names, details in (("input", self.input_names, [self._ins[n] for n in self.input_names]),
                                   ("output", self.output_names, self._outs)):
            for name, d in zip(names, details):
                scale, zero = d.get("quantization", (0.0, 0))
                found.append({"io": io, "name": name, "shape": [int(v) for v in d.get("shape_signature", d["shape"])],
                              "dtype": np.dtype(d["dtype"]).name,
                              **({"scale": float(scale), "zero_point": int(zero)} if scale else {})})
        return found

    def metadata(self) -> dict[str, Any]:
        """The JSON metadata dnnkit stored in the file (empty when it has none)."""
        return read_tflite_metadata(self.path) or {}

    def settings(self) -> dict[str, Any]:
        return {"runtime": "LiteRT interpreter", "num_threads": self.threads, "xnnpack": True}

    def _prepare(self, x: Inputs) -> dict[str, np.ndarray]:
        feed = self._feed(x)
        prepared, resized = {}, False
        for name, value in feed.items():
            d = self._ins.get(name)
            if d is None:
                raise ValueError(f"the model has no input {name!r} (inputs: {self.input_names})")
            value = np.asarray(value)
            if d["dtype"] in (np.int8, np.uint8) and value.dtype.kind == "f":
                info = np.iinfo(d["dtype"])
                value = np.clip(_integers(value, d), info.min, info.max)
            value = value.astype(d["dtype"])
            if value.shape != self._shapes[name]:
                self.interpreter.resize_tensor_input(d["index"], list(value.shape))
                self._shapes[name] = value.shape
                resized = True
            prepared[name] = value
        if resized:
            self.interpreter.allocate_tensors()
        return prepared

    def input_quantization(self, x: Inputs) -> dict[str, dict[str, float]]:
        """For each int8 input: its scale, the share of ``x`` clipped, and the SQNR of its worst
        feature (last axis; constant features left out) after quantize-dequantize: variance of the
        feature over the squared rounding error. One per-tensor scale for features whose spreads
        differ leaves the narrow ones at a few dB."""
        out = {}
        for name, value in self._feed(x).items():
            d = self._ins.get(name)
            if d is None or d["dtype"] not in (np.int8, np.uint8) or np.asarray(value).dtype.kind != "f":
                continue
            v = np.asarray(value, np.float64).reshape(-1, np.asarray(value).shape[-1])
            scale, zero = d["quantization"]
            info = np.iinfo(d["dtype"])
            q = _integers(v, d)
            back = (np.clip(q, info.min, info.max) - zero) * scale
            noise = np.maximum(np.mean((back - v) ** 2, axis=0), 1e-30)
            signal = np.var(v, axis=0)
            # a constant feature (a blank pixel) carries nothing to lose
            sqnr = np.where(signal > 0, 10.0 * np.log10(np.maximum(signal, 1e-30) / noise), np.inf)
            if not np.isfinite(np.min(sqnr)):
                continue
            out[name] = {"scale": float(scale), "clipped": float(np.mean((q < info.min) | (q > info.max))),
                         "worst_feature_sqnr_db": round(float(np.min(sqnr)), 2), "worst_feature": int(np.argmin(sqnr))}
        return out

    def _invoke(self, prepared: dict[str, np.ndarray]) -> list[np.ndarray]:
        it = self.interpreter
        for name, value in prepared.items():
            it.set_tensor(self._ins[name]["index"], value)
        it.invoke()
        return [it.get_tensor(d["index"]) for d in self._outs]

    def _call(self, x: Inputs) -> list[np.ndarray]:
        raw = self._invoke(self._prepare(x))
        outs = []
        for d, y in zip(self._outs, raw):
            if d["dtype"] in (np.int8, np.uint8):
                scale, zero = d["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            outs.append(y)
        return outs

    def _plain(self) -> Any:
        # The running interpreter's graph is rewritten by the XNNPACK delegate (its ops
        # show as DELEGATE); inspect the model through one without default delegates.
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        plain = Interpreter(model_path=self.path,
                            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        plain.allocate_tensors()
        return plain

    def ops(self) -> list[str]:
        """Distinct op names in the main graph."""
        return sorted({op["op_name"] for op in self._plain()._get_ops_details()})

    def weights(self) -> dict[str, np.ndarray]:
        """Constant tensors with two or more dimensions (kernels), by tensor name.

        A constant is an op input that no op produces and that is not a graph input.
        """
        plain = self._plain()
        ops = plain._get_ops_details()
        produced = {i for op in ops for i in op["outputs"]}
        produced |= {d["index"] for d in plain.get_input_details()}
        consumed = {i for op in ops for i in op["inputs"] if i >= 0}
        out = {}
        for t in plain.get_tensor_details():
            idx = t["index"]
            if idx in produced or idx not in consumed or len(t["shape"]) < 2 or int(np.prod(t["shape"])) < 16:
                continue
            out[t["name"]] = plain.get_tensor(idx)
        return out

    def float_ops(self) -> list[str]:
        """Ops (other than QUANTIZE/DEQUANTIZE) whose outputs are float: they run in float."""
        plain = self._plain()
        dtypes = {t["index"]: t["dtype"] for t in plain.get_tensor_details()}
        found = set()
        for op in plain._get_ops_details():
            if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
                continue
            if any(dtypes.get(i) == np.float32 for i in op["outputs"]):
                found.add(op["op_name"])
        return sorted(found)
