"""Run an artifact in its own runtime: TensorFlow (SavedModel), the LiteRT interpreter
(TFLite) and onnxruntime (ONNX), behind one small interface."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Iterator

import numpy as np

from dnnkit.signature import Inputs, batch_for, concat, rows, take


class Runner:
    """An artifact loaded in its runtime.

    Inputs are one array (a single-input artifact) or a dict keyed by input name.

    Attributes:
        input_names, output_names: the names the artifact exposes.
        batch: the static batch size, or ``None`` when the batch is dynamic.
        input_dtypes: NumPy dtype each input takes (int8 for quantized I/O), by name.
    """

    input_names: list[str]
    output_names: list[str]
    batch: int | None
    input_dtypes: dict[str, Any]

    @property
    def input_dtype(self) -> Any:
        return self.input_dtypes[self.input_names[0]]

    def _feed(self, x: Inputs) -> dict[str, np.ndarray]:
        """The inputs by the artifact's names (a single array goes to its only input)."""
        return x if isinstance(x, dict) else {self.input_names[0]: x}

    def _call(self, x: Inputs) -> list[np.ndarray]:
        return self._invoke(self._prepare(x))

    def run(self, x: Inputs, chunk: int = 512) -> list[np.ndarray]:
        """Outputs (float32, dequantized) for all of ``x``, fed in the batches it accepts."""
        step = self.batch or batch_for(x, chunk)
        total = rows(x)
        parts: list[list[np.ndarray]] = []
        for i in range(0, total, step):
            piece = take(x, slice(i, i + step))
            n = rows(piece)
            if self.batch and n < self.batch:  # pad a short last batch, then trim
                piece = concat([piece, take(piece, np.repeat(n - 1, self.batch - n))])
            parts.append([o[:n] for o in self._call(piece)])
        return [np.concatenate([p[k] for p in parts]).astype(np.float32) for k in range(len(parts[0]))]

    def _prepare(self, x: Inputs) -> Any:
        """The input as the runtime takes it (quantized, cast); not part of the timed call."""
        return x

    def _invoke(self, prepared: Any) -> Any:
        """One raw inference on prepared input (what latency measures)."""
        raise NotImplementedError

    default_threads = 1  # the threads latency_ms's figures use (TensorFlow: every core)

    def latency_ms(self, sample: Inputs, runs: int, warmup: int) -> dict[str, float]:
        """Median and p90 wall time of one batch-1 inference, in milliseconds, after warm-up; where the
        runtime takes a batch, the samples per second of batch-32 inferences (``batch``,
        ``throughput_per_s``); and the runtime settings used (``settings``).

        Input preparation (quantizing for int8 I/O, casting) happens once, outside the timing.
        """
        one = take(sample, np.zeros(self.batch or 1, dtype=np.int64))
        prepared = self._prepare(one)
        begin = time.perf_counter()
        for _ in range(warmup):
            self._invoke(prepared)
            if time.perf_counter() - begin > LATENCY_BUDGET_S / 3:
                break
        times: list[float] = []
        begin = time.perf_counter()
        while len(times) < runs and (len(times) < MIN_LATENCY_RUNS
                                     or time.perf_counter() - begin < LATENCY_BUDGET_S):
            start = time.perf_counter()
            self._invoke(prepared)
            times.append((time.perf_counter() - start) * 1000.0)
        result = {"p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)), "runs": len(times)}
        n = self._throughput_batch(sample)
        if n > 1:  # a batch-N figure only where the runtime takes a batch of N
            result.update(batch=n, throughput_per_s=self._throughput(sample, n, runs))
        result["settings"] = self.settings()
        return result

    def _throughput_batch(self, sample: Inputs) -> int:
        return (min(THROUGHPUT_BATCH, rows(sample), batch_for(sample, max_bytes=THROUGHPUT_BYTES))
                if self.batch is None else self.batch)

    def _throughput(self, sample: Inputs, n: int, runs: int = 100) -> float:
        """Samples per second of batch-``n`` inferences: up to 10 batches, at most ~THROUGHPUT_S (a
        large model is not timed for long), after one warm-up batch."""
        batch = self._prepare(take(sample, np.arange(n) % rows(sample)))
        self._invoke(batch)
        start, reps = time.perf_counter(), 0
        while reps < max(1, min(10, runs // 10)) and (reps == 0 or time.perf_counter() - start < THROUGHPUT_S):
            self._invoke(batch)
            reps += 1
        return float(n * reps / (time.perf_counter() - start))

    def throughput_by_cores(self, sample: Inputs, measured: float | None = None) -> dict[str, Any] | None:
        """Batch-N samples per second on one core and on every core this process may use:
        ``{"batch", "cores": N, "one_core_per_s", "all_cores_per_s", "speedup"}`` (``None`` where the
        batch is fixed at 1 or one core is all there is); ``measured``: latency_ms's throughput, taken
        for the thread count it was measured with instead of timing it again."""
        n, cores = self._throughput_batch(sample), usable_cores()
        if n <= 1 or cores <= 1:
            return None
        default = cores if self.default_threads is None else self.default_threads
        one = measured if measured and default == 1 else self._throughput_on(sample, n, 1)
        every = measured if measured and default == cores else self._throughput_on(sample, n, cores)
        if one is None or every is None:
            return None
        return {"batch": n, "cores": cores, "one_core_per_s": one, "all_cores_per_s": every,
                "speedup": round(every / one, 3)}

    def _throughput_on(self, sample: Inputs, n: int, cores: int) -> float | None:
        """Throughput with the runtime set to ``cores`` threads (a fresh session/interpreter)."""
        other = type(self)(self.path, threads=cores)
        return other._throughput(sample, n)

    def settings(self) -> dict[str, Any]:
        """The runtime settings the figures were measured with (threads, delegates, graph optimization)."""
        return {}


THROUGHPUT_BATCH = 32  # the batch-N of the throughput figure (fewer when the checked split is smaller,
# or when 32 samples' inputs pass THROUGHPUT_BYTES: a 224x224x3 image model is timed at batch 3)
THROUGHPUT_BYTES = 2 * 2**20
THROUGHPUT_S = 0.5  # batches are timed until this many seconds have passed (at least one)
# batch-1 timing: the recipe's latency_runs, cut short after LATENCY_BUDGET_S once MIN_LATENCY_RUNS are in
# (a 224x224 ResNet50 took 18 s per artifact for 100 runs and the throughputs; 20 runs are 1.5 s of it)
LATENCY_BUDGET_S = 2.0
MIN_LATENCY_RUNS = 20


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def _one_core() -> Iterator[bool]:
    """Every thread of this process pinned to one core (Linux), the affinities restored after;
    yields whether it could (TensorFlow's thread pools are fixed when it starts, so its one-core
    figure comes from pinning them)."""
    tasks = {}
    pinned = False
    try:
        for tid in map(int, os.listdir("/proc/self/task")):
            tasks[tid] = os.sched_getaffinity(tid)
        first = min(os.sched_getaffinity(0))
        for tid in tasks:
            os.sched_setaffinity(tid, {first})
        pinned = True
    except (OSError, AttributeError):
        pass
    try:
        yield pinned
    finally:
        for tid, cpus in tasks.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)


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
        with _one_core() as pinned:
            return self._throughput(sample, n) if pinned else None

    def settings(self) -> dict[str, Any]:
        threads = self._tf.config.threading.get_intra_op_parallelism_threads()
        return {"runtime": "tensorflow", "intra_op_threads": threads or "all cores"}

    def _prepare(self, x: Inputs) -> Any:
        return {n: self._tf.constant(np.asarray(v).astype(self.input_dtypes.get(n, np.float32)))
                for n, v in self._feed(x).items()}

    def _invoke(self, prepared: Any) -> Any:
        return self._fn(**prepared)

    def _call(self, x: Inputs) -> list[np.ndarray]:
        out = self._invoke(self._prepare(x))
        return [out[name].numpy() for name in self.output_names]


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

    def metadata(self) -> dict[str, Any]:
        """The JSON metadata dnnkit stored in the file (empty when it has none)."""
        from dnnkit.formats.metadata import read_tflite_metadata

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


def open_artifact(fmt: str, path: str | os.PathLike[str]) -> Runner:
    """Load an artifact in its runtime.

    Args:
        fmt: ``saved_model``, ``tflite`` or ``onnx``.
        path: the artifact.

    Returns:
        A :class:`Runner`.
    """
    cls = {"saved_model": SavedModelRunner, "tflite": TFLiteRunner, "onnx": OnnxRunner}[fmt]
    return cls(str(path))
