"""ONNX: fp32 through tf2onnx (Keras's exporter), int8 QDQ through onnxruntime.quantization."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from dnnkit.artifacts.metadata import set_onnx_metadata
from dnnkit.core.fileio import atomic_path
from dnnkit.core.tensors import Inputs, cast, cast_to, rows, take
from dnnkit.errors import ConversionError, one_line
from dnnkit.formats.common import io_names
from dnnkit.formats.frozen import frozen_graph


# protobuf cannot serialise a message over 2 GiB: above this many bytes of weights, tensors go to
# NAME.onnx.data beside the model (ONNX external data), which onnxruntime loads from the model's folder
EXTERNAL_DATA_BYTES = 1_800_000_000


def weight_bytes(proto: Any) -> int:
    """Bytes of the graph's initializers (raw or typed fields)."""
    from onnx import numpy_helper

    return sum(len(i.raw_data) if i.raw_data else numpy_helper.to_array(i).nbytes for i in proto.graph.initializer)


def save_onnx(proto: Any, path: str | os.PathLike[str], external_data: str = "auto") -> str | None:
    """Save ``proto`` at ``path`` (checked by ``onnx.checker`` from the file), its tensors in
    ``NAME.onnx.data`` when ``external_data`` is ``always``, or ``auto`` and they pass
    :data:`EXTERNAL_DATA_BYTES`. Returns the external data file's name, or ``None``."""
    import onnx

    p = Path(path)
    external = external_data == "always" or (external_data == "auto" and weight_bytes(proto) > EXTERNAL_DATA_BYTES)
    location = None
    if external:
        location = f"{p.name}.data"
        onnx.save_model(proto, str(p), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=location, size_threshold=1024)
    else:
        onnx.save(proto, str(p))
    onnx.checker.check_model(str(p))  # from the file: works past 2 GiB
    return location


def _tidy(proto: Any, model: Any, metadata: dict[str, Any]) -> None:
    """Give the graph the model's input/output names, drop initializers listed as inputs
    (they break calibration: "Required inputs ... are missing"), add metadata."""
    graph = proto.graph
    inits = {i.name for i in graph.initializer}
    keep = [i for i in graph.input if i.name not in inits]
    del graph.input[:]
    graph.input.extend(keep)
    want_in, want_out = io_names(model)
    if len(graph.input) != len(want_in) or len(graph.output) != len(want_out):
        raise ConversionError(f"ONNX graph has {len(graph.input)} inputs and {len(graph.output)} outputs, "
                              f"expected {len(want_in)} and {len(want_out)}")
    renames = {t.name: n for t, n in zip(list(graph.input) + list(graph.output), want_in + want_out)}
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for t in list(graph.input) + list(graph.output):
        t.name = renames[t.name]
        dims = t.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "batch"
    set_onnx_metadata(proto, {**metadata, "precision": "fp32"} if metadata else {})


def write_onnx(model: Any, path: str, *, opset: int, metadata: dict[str, Any],
               check_inputs: Inputs | None = None, external_data: str = "auto") -> dict[str, Any]:
    """Write the fp32 ONNX graph (dynamic batch axis named ``batch``) without atomicity.

    The model is frozen in inference mode first (:mod:`dnnkit.formats.frozen`), so constants stay
    constants and augmentation/dropout layers vanish; tf2onnx converts that graph.

    Returns:
        The rewrites made before conversion and the check of the frozen graph (``transforms``), and
        the external data file's name (``external_data``, ``None`` when the tensors are inside).
    """
    import tf2onnx

    try:  # Keras's tf2onnx shim for NumPy 2 (np.object, np.cast)
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        patch_tf2onnx()
    except ImportError:  # pragma: no cover - older or newer Keras
        pass
    graph_def, inputs, outputs, transforms = frozen_graph(model, None, check_inputs)
    try:
        with _lean_optimizer():
            proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs,
                                                      opset=opset)
    except Exception:  # noqa: BLE001 - tf2onnx's own way: a failing optimizer pass is skipped
        proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=inputs, output_names=outputs, opset=opset)
        transforms["tf2onnx_optimizer"] = "with tf2onnx's copies (an optimizer pass failed without them)"
    _tidy(proto, model, metadata)
    return {"transforms": transforms, "external_data": save_onnx(proto, path, external_data)}


@contextlib.contextmanager
def _lean_optimizer() -> Iterator[None]:
    """tf2onnx's graph optimizer without the copies: no deep copy of the graph before each pass (to
    roll a failing pass back; a failure raises instead, and :func:`write_onnx` converts again the
    usual way) and no rewrite of every node's protobuf after each pass (the graph writes its protobufs
    once, at the end). With the upb protobuf backend each rewrite left one more copy of every weight
    in the node protos' arenas: a 224x224 ResNet50's conversion grew by 90 MB per pass, 24 passes,
    to a 6.9 GB peak; without: 1.9 GB, 8.6 s -> 2.7 s, byte-identical ONNX (docs/field-notes.md)."""
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    def optimize(self: Any, graph: Any, iteration: int) -> Any:
        before = graph.dump_node_statistics()
        self.opt_iteration = iteration
        graph = self._optimize(graph)  # noqa: SLF001
        graph.delete_unused_nodes(graph.outputs)
        self._print_stat_diff(before, graph.dump_node_statistics())  # noqa: SLF001
        return graph

    original = GraphOptimizerBase.optimize
    saved = os.environ.get("TF2ONNX_CATCH_ERRORS")
    GraphOptimizerBase.optimize = optimize
    os.environ["TF2ONNX_CATCH_ERRORS"] = "FALSE"
    try:
        yield
    finally:
        GraphOptimizerBase.optimize = original
        if saved is None:
            os.environ.pop("TF2ONNX_CATCH_ERRORS", None)
        else:
            os.environ["TF2ONNX_CATCH_ERRORS"] = saved


def export_onnx(model: Any, path: str | os.PathLike[str], *, opset: int = 17,
                metadata: dict[str, Any] | None = None, check_inputs: Inputs | None = None,
                external_data: str = "auto") -> dict[str, Any]:
    """Export a Keras model to fp32 ONNX, atomically.

    Args:
        model: a ``keras.Model`` (any number of inputs and outputs).
        path: the ``.onnx`` file to write.
        opset: ONNX opset (>= 13; default 17).
        metadata: key/value pairs stored in the model's metadata_props.
        check_inputs: samples on which the frozen graph must reproduce the model first.
        external_data: ``auto`` (tensors in ``NAME.onnx.data`` past 1.8 GB), ``always`` or ``never``.

    Returns:
        What the manifest records: opset, the rewrites made before conversion (``transforms``),
        the external data file (``external_data``).

    Raises:
        ConversionError: if tf2onnx fails.
    """
    try:
        with atomic_path(path) as tmp:
            written = write_onnx(model, str(tmp), opset=opset, metadata=metadata or {}, check_inputs=check_inputs,
                                 external_data=external_data)
            _place_external_data(tmp, path)
    except ConversionError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"ONNX export failed: {one_line(exc, 400)}") from None
    return {"opset": opset, **written}


def _place_external_data(tmp: Path, final: str | os.PathLike[str]) -> None:
    """Move ``tmp``'s external data file beside ``final`` (before the model itself is moved there)."""
    side = tmp.with_name(tmp.name + ".data")
    target = Path(final).with_name(Path(final).name + ".data")
    if side.is_file():
        os.chmod(side, 0o644)  # onnx writes it owner-only; the model file beside it is world-readable
        os.replace(side, target)
    else:
        target.unlink(missing_ok=True)  # a stale one from an earlier, larger export


QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]


def _file_inputs(path: str) -> dict[str, Any]:
    """An ONNX file's graph inputs (initializers left out), in order: name -> numpy dtype."""
    import onnx
    from onnx import helper

    graph = onnx.load(path, load_external_data=False).graph
    weights = {i.name for i in graph.initializer}
    return {i.name: helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)
            for i in graph.input if i.name not in weights}


def _reader(in_names: list[str], samples: Inputs, count: int | None = None) -> Any:
    """An onnxruntime ``CalibrationDataReader`` over the first ``count`` samples (all by default),
    one at a time, feeding every input of the graph by name (one array goes to ``in_names[0]``)."""
    from onnxruntime.quantization import CalibrationDataReader

    pieces = [take(samples, slice(i, i + 1)) for i in range(min(count or rows(samples), rows(samples)))]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([p if isinstance(p, dict) else {in_names[0]: p} for p in pieces])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    return Reader()


@dataclasses.dataclass(frozen=True)
class QuantOptions:
    """How :func:`export_onnx_int8` quantizes (the quantization ladder's levers, :mod:`dnnkit.jobs.ladder`).

    ``activations``: ``int8``, or ``int16`` (int16 QDQ through onnxruntime's com.microsoft
    QuantizeLinear/DequantizeLinear, weights int8 at full 8 bits: the 7-bit ``reduce_range`` guards
    only the u8s8 int8 kernels, which int16 activations do not use; symmetric ranges, as TFLite's 16x8). ``calibration``: ``minmax``,
    ``percentile`` (99.999 %) or ``entropy``. ``graph_prep``: onnxruntime's ``quant_pre_process``
    (shape inference and graph fusions) before calibration."""

    activations: str = "int8"
    calibration: str = "minmax"
    graph_prep: bool = False

    @property
    def weight_bits(self) -> int:
        return 8 if self.activations == "int16" else 7


def _quantize(model: Any, tmp_dir: str, samples: Inputs, *, in_names: list[str], opset: int,
              metadata: dict[str, Any], external_data: str, exclude: list[str] | tuple[str, ...] = (),
              fp32_source: dict[str, Any] | None = None,
              options: QuantOptions = QuantOptions()) -> tuple[str, str, dict[str, Any]]:
    """fp32 ONNX and its static int8 QDQ twin in ``tmp_dir``: ``(fp32 path, int8 path, what write_onnx says)``;
    ``in_names``: the graph's input names (see :func:`_reader`).

    ``fp32_source`` (``{"path", "transforms", "external_data"}``): an fp32 ONNX file already converted
    from this model with this opset and metadata (the job's fp32 artifact), quantized instead of
    converting the model again; ``model`` is then not used (``None`` will do)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if fp32_source is not None:
        fp32 = fp32_source["path"]
        written = {"transforms": fp32_source.get("transforms"), "external_data": fp32_source.get("external_data"),
                   "quantized_from": os.path.basename(fp32)}
    else:
        fp32 = os.path.join(tmp_dir, "fp32.onnx")
        written = write_onnx(model, fp32, opset=opset, metadata=metadata, check_inputs=samples,
                             external_data=external_data)
    q8 = os.path.join(tmp_dir, "int8.onnx")
    source = fp32
    if options.graph_prep:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        source = os.path.join(tmp_dir, "prepared.onnx")
        quant_pre_process(fp32, source, skip_symbolic_shape=True,
                          save_as_external_data=written["external_data"] is not None)
    int16 = options.activations == "int16"
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[options.calibration]
    quantize_static(source, q8, _reader(in_names, samples), quant_format=QuantFormat.QDQ,
                    per_channel=True, reduce_range=options.weight_bits == 7,
                    activation_type=QuantType.QInt16 if int16 else QuantType.QInt8,
                    weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS, calibrate_method=method,
                    nodes_to_exclude=list(exclude), use_external_data_format=written["external_data"] is not None,
                    extra_options={"UseQDQContribOps": True, "ActivationSymmetric": True} if int16 else None)
    return fp32, q8, written


def export_onnx_int8(model: Any, path: str | os.PathLike[str], *, calibration: Inputs,
                     opset: int = 17, metadata: dict[str, Any] | None = None,
                     external_data: str = "auto", float_layers: tuple[str, ...] | list[str] = (),
                     fp32_source: dict[str, Any] | None = None,
                     options: QuantOptions = QuantOptions()) -> dict[str, Any]:
    """Export static int8 ONNX (QDQ, per-channel weights) calibrated on ``calibration``.

    Conv, MatMul and Gemm are quantized (the ops that hold weights); the rest stays float,
    which keeps LayerNorm/Softmax in transformers accurate. Weights use 7 bits
    (``reduce_range``): with full 8-bit per-channel weights onnxruntime's x86 (AVX2/AVX-512
    without VNNI) int8 kernels can saturate, as its docs warn; measured on the 80 %-pruned
    digits CNN: 0.975 with 8 bits, 0.992 (= fp32) with 7. ``float_layers`` names nodes kept float
    (onnxruntime's ``nodes_to_exclude``; see :func:`rank_layers`). ``fp32_source``: the fp32 ONNX
    file this job already converted from the same model (see :func:`_quantize`); tf2onnx then does
    not run again (a 224x224 ResNet50: 13 s and 2 GB less), and ``model`` may be ``None``: the
    input names and dtypes come from that file (a converter started afresh need not load the model).
    ``options``: activation type, calibration method and graph preparation (:class:`QuantOptions`).

    Raises:
        ConversionError: if export or calibration fails.
    """
    import onnx

    if model is None:
        if fp32_source is None:
            raise ValueError("export_onnx_int8 needs the model or an fp32_source")
        dtypes = _file_inputs(fp32_source["path"])
        names, samples = list(dtypes), cast_to(calibration, dtypes)
    else:
        names, samples = io_names(model)[0], cast(calibration, model)
    try:
        with tempfile.TemporaryDirectory(prefix="dnnkit-onnx-") as tmp_dir:
            _, q8, written = _quantize(model, tmp_dir, samples, in_names=names, opset=opset,
                                       metadata=metadata or {}, external_data=external_data, exclude=float_layers,
                                       fp32_source=fp32_source, options=options)
            proto = onnx.load(q8)
            set_onnx_metadata(proto, {**(metadata or {}), "precision": "int8"})
            with atomic_path(path) as tmp:
                written["external_data"] = save_onnx(proto, tmp, external_data)
                _place_external_data(tmp, path)
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"ONNX int8 quantization failed: {one_line(exc, 400)}") from None
    return {"opset": opset, **written, "calibration_samples": int(rows(samples)),
            "quantized_ops": QUANTIZED_OPS, "weight_bits": options.weight_bits,
            "activations": options.activations, "calibration": options.calibration,
            **({"graph_prep": "onnxruntime quant_pre_process"} if options.graph_prep else {}),
            "fallbacks": ["selective_float"] if float_layers else []}


def rank_layers(model: Any, *, calibration: Inputs, opset: int = 17, external_data: str = "auto",
                samples: int = 32) -> list[dict[str, Any]]:
    """Per-node quantization error of the int8 ONNX model, worst first, from onnxruntime's
    ``onnxruntime.quantization.qdq_loss_debug``: the SQNR of each quantized node's activations
    (each tensor before and after its QuantizeLinear/DequantizeLinear pair) and weights.

    Returns:
        ``[{"name": node name (for ``float_layers``), "op": op type, "sqnr_db": the node's lowest
        SQNR, "tensor": the tensor it comes from}]``, lowest first.

    Raises:
        ConversionError: if export, calibration or the debugger fails.
    """
    from onnxruntime.quantization import qdq_loss_debug as debug

    import onnx

    data = cast(calibration, model)
    names = io_names(model)[0]
    try:
        with tempfile.TemporaryDirectory(prefix="dnnkit-onnx-") as tmp_dir:
            fp32, q8, _ = _quantize(model, tmp_dir, data, in_names=names, opset=opset, metadata={},
                                    external_data=external_data)
            big = external_data == "always" or os.path.isfile(fp32 + ".data")
            f_aug, q_aug = os.path.join(tmp_dir, "f_aug.onnx"), os.path.join(tmp_dir, "q_aug.onnx")
            debug.modify_model_output_intermediate_tensors(fp32, f_aug, save_as_external_data=big)
            debug.modify_model_output_intermediate_tensors(q8, q_aug, save_as_external_data=big)
            matched = debug.create_activation_matching(debug.collect_activations(q_aug, _reader(names, data, samples)),
                                                       debug.collect_activations(f_aug, _reader(names, data, samples)))
            act = {name: e["qdq_err"] for name, e in debug.compute_activation_error(matched).items()
                   if "qdq_err" in e}
            weights = debug.compute_weight_error(debug.create_weight_matching(fp32, q8))
            graph = onnx.load(fp32, load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001
        raise ConversionError(f"onnxruntime qdq_loss_debug failed: {one_line(exc)}") from None
    ranked = []
    for node in graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        errors = {t: float(act[t]) for t in [*node.input, *node.output] if t in act}
        errors.update({t: float(weights[t]) for t in node.input if t in weights})
        if errors:
            tensor = min(errors, key=errors.get)
            ranked.append({"name": node.name, "op": node.op_type, "sqnr_db": round(errors[tensor], 2),
                           "tensor": tensor})
    return sorted(ranked, key=lambda r: r["sqnr_db"])
