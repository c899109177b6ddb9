"""A Keras model as one frozen TensorFlow graph in inference mode, ready for tf2onnx.

Keras's own ONNX export hands tf2onnx a traced function of the model. Three kinds of public
models broke on that path (shared/DESIGN.md):

- constants computed inside the graph (a ``Normalization`` layer's mean and variance,
  EfficientNet's rescaling, ``keras.ops.arange`` positions) became extra ONNX graph inputs;
- layers that are identities at inference (``Random*`` augmentation, ``Dropout``,
  ``GaussianNoise``) left random ops (``StatelessRandomUniformV2``) in the graph;
- nested functions that TensorFlow marks ``_noinline`` (Keras compiles grouped convolutions,
  e.g. ConvNeXt's, with XLA) stayed ``StatefulPartitionedCall`` nodes tf2onnx cannot convert.

Here the model is traced with ``training=False`` (so those layers are identities), its variables
are frozen into constants (``convert_variables_to_constants_v2``), functions that refused
inlining are inlined by Grappler's function optimizer, and ``Erfc`` (exact GELU), which tf2onnx
lacks, becomes ``1 - Erf``. Each rewrite is recorded, and the frozen graph is run in TensorFlow
and compared with the Keras model before anything is converted from it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnkit.child.memory import give_back_memory
from dnnkit.core.parity import float_parity
from dnnkit.core.tensors import batch_for, call, cast, input_names, input_specs, rows, take
from dnnkit.formats.common import serving_fn

INFERENCE_IDENTITIES = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                        "GaussianDropout", "AlphaDropout", "RandomFlip", "RandomRotation", "RandomZoom",
                        "RandomTranslation", "RandomContrast", "RandomBrightness", "RandomCrop", "RandomHeight",
                        "RandomWidth")


def _layer_classes(model: Any) -> set[str]:
    found: set[str] = set()

    def walk(layer: Any) -> None:
        found.add(type(layer).__name__)
        for sub in getattr(layer, "layers", []) or []:
            if sub is not layer:
                walk(sub)

    walk(model)
    return found


def _drop_noinline(attrs: Any) -> bool:
    """Remove the attributes that keep a function (or a call of it) from being inlined; say if any were there."""
    found = [key for key in ("_noinline", "_XlaMustCompile") if key in attrs]
    for key in found:
        del attrs[key]
    return bool(found)


def _inline_noinline_functions(graph_def: Any, inputs: list[str], outputs: list[str]) -> tuple[Any, int]:
    """Drop ``_noinline`` / ``_XlaMustCompile`` from library functions and let Grappler inline them."""
    renamed: dict[str, str] = {}
    for fn in graph_def.library.function:
        if _drop_noinline(fn.attr):
            # a new name: TensorFlow refuses a second, different definition under the old one
            renamed[fn.signature.name] = f"{fn.signature.name}_dnnkit_inline"
            fn.signature.name = renamed[fn.signature.name]
    if not renamed:
        return graph_def, 0
    calls = list(graph_def.node) + [n for fn in graph_def.library.function for n in fn.node_def]
    for node in calls:
        for value in list(node.attr.values()):
            if value.HasField("func") and value.func.name in renamed:
                value.func.name = renamed[value.func.name]
                _drop_noinline(node.attr)  # the call site carries them too
    import tensorflow as tf
    from tf2onnx.tf_loader import tf_optimize_grappler

    with tf.Graph().as_default():  # Grappler works on a meta graph, which needs graph mode
        return tf_optimize_grappler(inputs, outputs, graph_def), len(renamed)


def _erfc_as_erf(graph_def: Any) -> int:
    """Rewrite every ``Erfc(x)`` node as ``1 - Erf(x)`` (same name, same output)."""
    from tensorflow.core.framework import attr_value_pb2, node_def_pb2, tensor_pb2, types_pb2

    count = 0
    nodes = list(graph_def.node)
    for node in nodes:
        if node.op != "Erfc":
            continue
        count += 1
        dtype = node.attr["T"].type
        erf = node_def_pb2.NodeDef(name=f"{node.name}/dnnkit_erf", op="Erf", input=list(node.input))
        erf.attr["T"].type = dtype
        one = node_def_pb2.NodeDef(name=f"{node.name}/dnnkit_one", op="Const")
        one.attr["dtype"].type = dtype
        tensor = tensor_pb2.TensorProto(dtype=dtype, tensor_shape={})
        if dtype == types_pb2.DT_DOUBLE:
            tensor.double_val.append(1.0)
        else:
            tensor.float_val.append(1.0)
        one.attr["value"].CopyFrom(attr_value_pb2.AttrValue(tensor=tensor))
        node.op = "Sub"
        del node.input[:]
        node.input.extend([one.name, erf.name])
        graph_def.node.extend([erf, one])
    return count


CHECK_INPUT_BYTES = 1 * 2**20


def _check_rows(x: Any) -> int:
    """How many samples the frozen graph is checked on: at most 64 and 1 MB of inputs (a 224x224 image
    model: 1; its activations, not its inputs, are what a larger batch adds to the converter's peak)."""
    return batch_for(x, 64, CHECK_INPUT_BYTES)


def frozen_graph(model: Any, batch: int | None = None, check_inputs: Any = None
                 ) -> tuple[Any, list[str], list[str], dict[str, Any]]:
    """Freeze a Keras model (any number of inputs and outputs) in inference mode.

    Args:
        model: the Keras model.
        batch: a static batch size, or ``None`` (dynamic).
        check_inputs: samples (an array, or a dict per input name) on which the frozen graph
            must reproduce the model.

    Returns:
        ``(graph_def, input_names, output_names)`` with tensor names in the model's input and
        output order, and ``transforms`` listing each rewrite and the check's figures.

    Raises:
        ValueError: if the frozen graph does not reproduce the model on ``check_inputs``.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = input_specs(model, batch)
    fn = tf.function(serving_fn(model)).get_concrete_function(*specs)
    frozen = convert_variables_to_constants_v2(fn, lower_control_flow=False, aggressive_inlining=True)
    graph_def = frozen.graph.as_graph_def()
    inputs = [t.name for t in frozen.inputs]
    outputs = [t.name for t in frozen.outputs]
    del fn, frozen
    large = graph_def.ByteSize() >= RELEASE_BYTES
    if large:  # freezing copies every constant more than once: a 224x224 ResNet50 left +0.7 GB resident
        _release()
    rewrites: list[str] = ["frozen: variables as constants, inference mode (training=False)"]
    identities = sorted(_layer_classes(model) & set(INFERENCE_IDENTITIES))
    if identities:
        rewrites.append(f"identities at inference removed: {', '.join(identities)}")
    graph_def, inlined = _inline_noinline_functions(graph_def, inputs, outputs)
    if inlined:
        rewrites.append(f"inlined {inlined} functions marked _noinline/_XlaMustCompile (XLA-compiled ops)")
    erfc = _erfc_as_erf(graph_def)
    if erfc:
        rewrites.append(f"Erfc as 1 - Erf ({erfc} nodes; exact GELU)")
    transforms: dict[str, Any] = {"rewrites": rewrites}
    if check_inputs is not None and rows(check_inputs):
        x = cast(take(check_inputs, slice(0, _check_rows(check_inputs))), model)
        feeds = [x[n] for n in input_names(model)] if isinstance(x, dict) else [x]
        got = _run_graph(graph_def, inputs, outputs, feeds)
        want = [np.asarray(o) for o in call(model, x)]
        parity = float_parity(np.concatenate([w.ravel() for w in want]),
                              np.concatenate([np.asarray(g).ravel() for g in got]), 1e-5, 1e-5)
        diff, allowed = parity["max_abs_diff"], parity["allowed"]
        transforms.update(checked_on=int(rows(x)), max_abs_diff=diff)
        del got, want
        if large:  # what the check's session held, before tf2onnx builds its graph on top
            _release()
        if not parity["ok"]:
            raise ValueError(f"the frozen graph differs from the Keras model: max abs diff {diff:.3g} > {allowed:.3g}")
    return graph_def, inputs, outputs, transforms


# A frozen graph this large has what it freed collected and given back (a collection costs ~0.2 s with
# TensorFlow loaded: twice the digits CNN's whole ONNX conversion; malloc_trim alone returns nothing,
# the freed graphs sit in reference cycles)
RELEASE_BYTES = 64 * 2**20


def _release() -> None:
    """Collect what was freed and give the heap back to the system (ResNet50's ONNX export peaked at
    3.11 GB with what the freeze and its check had freed still resident, 2.54 GB without)."""
    import gc

    gc.collect()
    give_back_memory()


def _run_graph(graph_def: Any, inputs: list[str], outputs: list[str], feeds: list[np.ndarray]) -> list[np.ndarray]:
    """Run ``graph_def`` once in a session of its own: the graph and its constants go with the session
    (imported into the eager context as a function, they stayed for the process's life: a 224x224
    ResNet50's check held 1.4 GB and took 4.3 s, in a session 0.9 GB and 2.2 s, with the same outputs)."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    config = tf.compat.v1.ConfigProto()
    # Grappler's remapper fuses Conv2D + BiasAdd into _FusedConv2D, whose Eigen kernel (used where oneDNN is
    # off: CPUs without AVX-512) refuses grouped convolutions (ConvNeXt's depthwise-as-grouped layers); the
    # check runs the graph as tf2onnx reads it, unfused.
    config.graph_options.rewrite_options.remapping = config.graph_options.rewrite_options.OFF
    with tf.compat.v1.Session(graph=graph, config=config) as session:
        return [np.asarray(o) for o in session.run([graph.get_tensor_by_name(n) for n in outputs],
                                                   {graph.get_tensor_by_name(n): f for n, f in zip(inputs, feeds)})]
