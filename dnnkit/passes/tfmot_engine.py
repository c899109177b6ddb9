"""tensorflow-model-optimization (tfmot) as the engine for tf_keras (Keras 2) models.

tfmot works only on tf_keras models. A Keras 3 model given to a tfmot pass is rebuilt layer
by layer in tf_keras (same configs, same weights, outputs checked equal), optimized by
tfmot, stripped, and rebuilt in Keras 3, so export and verification stay one code path.
Importing tfmot sets ``TF_USE_LEGACY_KERAS=1`` in the environment; :func:`import_tfmot`
restores the variable so Keras 3 (and the converter child processes) are unaffected.
"""

from __future__ import annotations

import inspect
import os
import time
from typing import Any

import numpy as np

from dnnkit.errors import CompressionError
from dnnkit.passes.context import PassContext
from dnnkit.passes.pruning import PruneConfig, candidates, sparsity_row
from dnnkit.passes.registry import PassResult
from dnnkit.passes.schedules import schedule_for
from dnnkit.config.passes import PruneOptions
from dnnkit.training.fit import make_loss, prepare_targets

# Layers whose configs mean the same in Keras 3 and tf_keras.
PORTABLE = ("InputLayer", "Dense", "Conv1D", "Conv2D", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D",
            "AveragePooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D", "Flatten", "Activation",
            "Dropout", "BatchNormalization", "Reshape")
_DROP = ("_initializer", "_regularizer", "_constraint")


def import_tfmot() -> Any:
    """Import tfmot without leaving ``TF_USE_LEGACY_KERAS`` set in this process."""
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    try:
        import tensorflow_model_optimization as tfmot
    finally:
        if before is None:
            os.environ.pop("TF_USE_LEGACY_KERAS", None)
        else:
            os.environ["TF_USE_LEGACY_KERAS"] = before
    return tfmot


def is_tf_keras_model(model: Any) -> bool:
    """Whether ``model`` is a tf_keras (Keras 2) model rather than a Keras 3 one."""
    return type(model).__module__.startswith("tf_keras")


def _portable_config(layer: Any, target: type) -> dict[str, Any]:
    cfg = {k: v for k, v in layer.get_config().items() if not k.endswith(_DROP)}
    cfg.pop("quantization_config", None)
    cfg["dtype"] = "float32"
    act = cfg.get("activation")
    if isinstance(act, dict) and act.get("class_name") == "QuantizeAwareActivation":
        act = cfg["activation"] = act["config"]["activation"]  # inside a tfmot QAT wrapper
    if act is not None and not isinstance(act, str):
        raise CompressionError(f"model: layer {layer.name}: activation {act} is not a built-in name; expected "
                               "built-in activations for the tfmot engine")
    allowed = set(inspect.signature(target.__init__).parameters) | {"name", "dtype", "trainable"}
    return {k: v for k, v in cfg.items() if k in allowed}


def _fusable(layer: Any, nxt: Any) -> bool:
    """A linear Dense/Conv directly followed by ``Activation("relu")`` (fused for tfmot QAT)."""
    return (type(layer).__name__ in ("Dense", "Conv1D", "Conv2D") and layer.get_config().get("activation") == "linear"
            and nxt is not None and type(nxt).__name__ == "Activation"
            and nxt.get_config().get("activation") == "relu")


def _rebuild(model: Any, layers_module: Any, input_fn: Any, model_cls: Any, *, fuse_relu: bool = False) -> Any:
    layers = [layer for layer in model.layers if type(layer).__name__ not in ("InputLayer", "FoldedBatchNorm")]
    kinds = [type(layer).__name__ for layer in layers]
    unsupported = sorted({k for k in kinds if k not in PORTABLE})
    if unsupported:
        raise CompressionError(f"model: layers {unsupported} cannot be moved between Keras 3 and tf_keras for the "
                               f"tfmot engine; expected only {', '.join(PORTABLE)}")
    shape = tuple(model.inputs[0].shape[1:])
    inp = input_fn(shape=shape, name=model.inputs[0].name if hasattr(model.inputs[0], "name") else "inputs")
    x = inp
    skip = set()
    for i, layer in enumerate(layers):
        if layer.name in skip:
            continue
        kind = type(layer).__name__
        target = getattr(layers_module, kind)
        cfg = _portable_config(layer, target)
        if fuse_relu and _fusable(layer, layers[i + 1] if i + 1 < len(layers) else None):
            cfg["activation"] = "relu"
            skip.add(layers[i + 1].name)
        new = target(**cfg)
        x = new(x)
        new.set_weights(layer.get_weights())
    rebuilt = model_cls(inp, x, name=model.name)
    probe = np.random.default_rng(0).random((4, *shape)).astype(np.float32)
    if not np.allclose(np.asarray(rebuilt(probe, training=False)), np.asarray(model(probe, training=False)),
                       atol=1e-4):
        raise CompressionError("model: not a single chain of layers; expected a sequential chain for the tfmot "
                               "engine (it could not be rebuilt in tf_keras faithfully)")
    return rebuilt


def to_tf_keras(model: Any, *, fuse_relu: bool = False) -> Any:
    """The same chain of layers, with the same weights, as a tf_keras model.

    Args:
        model: a Keras 3 chain model.
        fuse_relu: merge each linear Dense/Conv and the ``Activation("relu")`` after it
            into one layer (tfmot's QAT leaves such a layer's weights unquantized otherwise).
    """
    import tf_keras

    return _rebuild(model, tf_keras.layers, tf_keras.Input, tf_keras.Model, fuse_relu=fuse_relu)


def to_keras3(model: Any) -> Any:
    """The same chain of layers, with the same weights, as a Keras 3 model."""
    import keras

    return _rebuild(model, keras.layers, keras.Input, keras.Model)


def _fit(model: Any, ctx: PassContext, *, epochs: int, learning_rate: float, batch_size: int,
         callbacks: list[Any]) -> None:
    import tf_keras

    tf_keras.utils.set_random_seed(ctx.seed)
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=make_loss(ctx.spec, tf_keras.losses))
    ds = ctx.dataset
    model.fit(ds.x_train, prepare_targets(ctx.spec, ds.y_train), batch_size=batch_size, epochs=epochs,
              validation_data=(ds.x_val, prepare_targets(ctx.spec, ds.y_val)), callbacks=callbacks, verbose=0)


def _selected(model: Any, opts: PruneOptions) -> set[str]:
    """The layers the native engine would prune (the same selection rules, on tf_keras)."""
    config = PruneConfig(layers=opts.layers, types=opts.types, skip_first=opts.skip_first,
                         skip_last=opts.skip_last)
    return {layer.name for layer in candidates(model, config)}


def prune_with_tfmot(model: Any, opts: PruneOptions, ctx: PassContext) -> PassResult:
    """Magnitude pruning by tfmot (``prune_low_magnitude`` + ``strip_pruning``).

    Returns:
        A plain Keras 3 model with the pruned weights, and a report.
    """
    import tf_keras

    if opts.structure or opts.scope != "layer":
        raise CompressionError("passes: prune with the tfmot engine: expected unstructured, per-layer sparsity, "
                               f"got structure={opts.structure!r}, scope={opts.scope!r}")
    tfmot = import_tfmot()
    base = model if is_tf_keras_model(model) else to_tf_keras(model)
    ours = schedule_for(opts, ctx.steps_per_epoch(opts.batch_size) * opts.epochs)
    sk = tfmot.sparsity.keras
    if opts.schedule == "constant":
        schedule = sk.ConstantSparsity(opts.final_sparsity, begin_step=ours.begin_step, end_step=ours.end_step,
                                       frequency=ours.frequency)
    else:
        schedule = sk.PolynomialDecay(opts.initial_sparsity, opts.final_sparsity, begin_step=ours.begin_step,
                                      end_step=ours.end_step, frequency=ours.frequency)
    chosen = _selected(base, opts)

    def wrap(layer: Any) -> Any:
        return sk.prune_low_magnitude(layer, pruning_schedule=schedule) if layer.name in chosen else layer

    wrapped = tf_keras.models.clone_model(base, clone_function=wrap)
    start = time.perf_counter()
    _fit(wrapped, ctx, epochs=opts.epochs, learning_rate=opts.learning_rate, batch_size=opts.batch_size,
         callbacks=[sk.UpdatePruningStep()])
    seconds = time.perf_counter() - start
    stripped = sk.strip_pruning(wrapped)
    layers = [sparsity_row(la.name, "kernel", la.kernel.numpy()) for la in stripped.layers if la.name in chosen]
    result = to_keras3(stripped)
    return PassResult(model=result, report={"engine": "tfmot", "fine_tune_seconds": round(seconds, 3),
                                            "layers": layers, "input_was_tf_keras": is_tf_keras_model(model)})


def cluster_with_tfmot(model: Any, opts: Any, ctx: PassContext) -> PassResult:
    """Weight clustering by tfmot (``cluster_weights`` + ``strip_clustering``).

    Returns:
        A plain Keras 3 model whose kernels hold at most ``number_of_clusters`` distinct
        values each, and a report.
    """
    import tf_keras

    tfmot = import_tfmot()
    base = model if is_tf_keras_model(model) else to_tf_keras(model)
    ck = tfmot.clustering.keras
    chosen = {la.name for la in base.layers if type(la).__name__ in ("Dense", "Conv1D", "Conv2D")}

    def wrap(layer: Any) -> Any:
        if layer.name not in chosen:
            return layer
        return ck.cluster_weights(layer, number_of_clusters=opts.number_of_clusters,
                                  cluster_centroids_init=ck.CentroidInitialization.KMEANS_PLUS_PLUS)

    wrapped = tf_keras.models.clone_model(base, clone_function=wrap)
    start = time.perf_counter()
    _fit(wrapped, ctx, epochs=opts.epochs, learning_rate=opts.learning_rate, batch_size=opts.batch_size,
         callbacks=[])
    seconds = time.perf_counter() - start
    stripped = ck.strip_clustering(wrapped)
    layers = [{"layer": la.name, "distinct_values": int(len(np.unique(la.kernel.numpy())))}
              for la in stripped.layers if la.name in chosen]
    return PassResult(model=to_keras3(stripped), report={"engine": "tfmot", "fine_tune_seconds": round(seconds, 3),
                                                         "layers": layers,
                                                         "number_of_clusters": opts.number_of_clusters})


# Layers a QAT range may pass through unchanged on its way to the first Dense/Conv.
_SHAPE_ONLY = ("Flatten", "Reshape", "Dropout", "MaxPooling1D", "MaxPooling2D")


def _wrapper_vars(layer: Any, *, as_numpy: bool = True) -> dict[str, Any]:
    """A tfmot wrapper's variables (or their values) by short name (``post_activation_min``, ``kernel_min``...)."""
    return {v.name.split("/")[-1].split(":")[0]: v.numpy() if as_numpy else v for v in layer.weights}


def native_from_tfmot(qat: Any) -> tuple[Any, list[str]]:
    """The tfmot QAT model as dnnkit's native Keras 3 QAT model: same float weights, the
    activation ranges tfmot learned, weights fake-quantized the same way (symmetric 8-bit,
    per-channel for convolutions, per-tensor for Dense).

    Native QAT layers are what dnnkit's export and verification handle, so a tfmot QAT model
    takes the same path to full-integer TFLite and ONNX as a native one.

    Args:
        qat: a tf_keras chain model from ``quantize_model`` / ``quantize_apply`` (Default8Bit schemes).

    Returns:
        The Keras 3 model and the names of its quantized layers.

    Raises:
        CompressionError: for a tfmot layout with no native counterpart.
    """
    import keras

    from dnnkit.passes import qat as native  # defines Keras layers: imports Keras

    inp = keras.Input(shape=tuple(qat.inputs[0].shape[1:]), name="inputs")
    x, pending_input, quantized, fills = inp, None, [], []
    for layer in qat.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "QuantizeLayer":
            v = _wrapper_vars(layer)  # named after the layer: quantize_layer_min, quantize_layer_1_min...
            pending_input = tuple(next(val for key, val in v.items() if key.endswith(end))
                                  for end in ("_min", "_max"))
            continue
        if kind != "QuantizeWrapperV2":
            raise CompressionError(f"model: tfmot layer {layer.name} ({kind}) has no native QAT counterpart")
        inner, v = layer.layer, _wrapper_vars(layer)
        inner_kind = type(inner).__name__
        cfg = _portable_config(inner, getattr(keras.layers, inner_kind))
        if inner_kind in native.QUANTIZABLE:
            if "kernel_min" not in v or "post_activation_min" not in v:
                raise CompressionError(f"model: tfmot left layer {inner.name} without weight or output "
                                       "quantization; expected Dense/Conv quantized by the Default8Bit scheme")
            new = native.QUANT_LAYERS[inner_kind].from_config({**cfg, "quantize_input": pending_input is not None})
            x = new(x)
            kernel = v["kernel"]  # the wrapper's own variable; inner.kernel is the quantized tensor
            if "sparsity_mask" in v:
                kernel = kernel * v["sparsity_mask"]
            ranges = {"out": (v["post_activation_min"], v["post_activation_max"])}
            if pending_input is not None:
                ranges["in"] = pending_input
                pending_input = None
            fills.append((new, [kernel] + ([v["bias"]] if inner.use_bias else []), ranges))
            quantized.append(inner.name)
            continue
        if pending_input is not None and inner_kind not in _SHAPE_ONLY:
            raise CompressionError(f"model: the input quantization range of the tfmot model reaches {inner.name} "
                                   f"({inner_kind}) before any Dense/Conv; expected a Dense/Conv first")
        if inner_kind == "Activation" and "output_min" in v:
            new = native.QuantActivation.from_config(cfg)
            x = new(x)
            fills.append((new, [], {"out": (v["output_min"], v["output_max"])}))
            quantized.append(inner.name)
            continue
        if "post_activation_min" in v:
            raise CompressionError(f"model: tfmot quantized the activation of {inner.name} ({inner_kind}); "
                                   "expected activation ranges only on Dense/Conv layers")
        new = getattr(keras.layers, inner_kind)(**cfg)
        x = new(x)
        fills.append((new, inner.get_weights(), {}))
        if "output_min" in v:  # e.g. pooling or batch norm: an identity carries tfmot's output range
            out_q = native.QuantActivation(activation="linear", name=f"{inner.name}_quant")
            x = out_q(x)
            fills.append((out_q, [], {"out": (v["output_min"], v["output_max"])}))
            quantized.append(out_q.name)
    model = keras.Model(inp, x, name=qat.name)
    for new, weights, ranges in fills:
        if weights:
            new.set_weights(weights + new.get_weights()[len(weights):])
        for prefix, (lo, hi) in ranges.items():
            getattr(new, f"{prefix}_min").assign(float(lo))
            getattr(new, f"{prefix}_max").assign(float(hi))
            getattr(new, f"{prefix}_seen").assign(1.0)
    return model, quantized


def _sync_weight_ranges(qat: Any) -> None:
    """Set tfmot's stored weight ranges to those of the final weights.

    tfmot's weight quantizers store the range of the weights *before* the last optimizer
    step and use it at inference; the integer model is made from the final weights, so
    the QAT model should quantize those (native QAT computes them from the weights).
    """
    for layer in qat.layers:
        v = _wrapper_vars(layer, as_numpy=False)
        if "kernel_min" not in v:
            continue
        kernel = v["kernel"].numpy() * (v["sparsity_mask"].numpy() if "sparsity_mask" in v else 1.0)
        axes = tuple(range(kernel.ndim - 1)) if len(v["kernel_min"].shape) else None
        bound = np.abs(kernel).max(axis=axes)
        v["kernel_min"].assign(-bound)
        v["kernel_max"].assign(bound)


def quantize_with_tfmot(model: Any, opts: Any, ctx: PassContext) -> PassResult:
    """Quantization-aware training by tfmot (``quantize_model``; with ``preserve_sparsity``, the
    collaborative pruning-preserving QAT scheme), handed on as a native Keras 3 QAT model.

    Batch norm is folded into the layer before it first, and each linear Dense/Conv followed
    by a ReLU becomes one layer, so tfmot quantizes every kernel and the converted integer
    model computes what the QAT model computed.

    Returns:
        The Keras 3 QAT model and a report (engine, scheme, how closely the Keras 3 model
        reproduces tfmot's on the validation split).
    """
    from dnnkit.passes.qat import fold_batch_norm  # defines Keras layers: imports Keras

    tfmot = import_tfmot()
    k3 = to_keras3(model) if is_tf_keras_model(model) else model
    folded, folded_bn = fold_batch_norm(k3)
    base = to_tf_keras(folded, fuse_relu=True)
    fused = [la.name for la in base.layers if la.get_config().get("activation") == "relu"
             and type(la).__name__ in ("Dense", "Conv1D", "Conv2D")]
    qk = tfmot.quantization.keras
    if opts.preserve_sparsity:
        scheme = "default_8bit_prune_preserve"
        with qk.quantize_scope():
            qat = qk.quantize_apply(qk.quantize_annotate_model(base),
                                    tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    else:
        scheme = "default_8bit"
        qat = qk.quantize_model(base)
    start = time.perf_counter()
    _fit(qat, ctx, epochs=opts.epochs, learning_rate=opts.learning_rate, batch_size=opts.batch_size, callbacks=[])
    seconds = time.perf_counter() - start
    _sync_weight_ranges(qat)
    native, quantized = native_from_tfmot(qat)
    x_val = ctx.dataset.x_val
    ours, theirs = np.asarray(native.predict(x_val, verbose=0)), np.asarray(qat.predict(x_val, verbose=0))
    agreement = float(np.mean(ours.argmax(-1) == theirs.argmax(-1))) if ours.shape[-1] > 1 else None
    diff = float(np.max(np.abs(ours - theirs)))
    if not diff <= 1e-4:
        raise CompressionError(f"model: the Keras 3 copy of the tfmot QAT model differs from it by {diff:.3g} on "
                               "the validation split; expected <= 1e-4")
    report = {"engine": "tfmot", "scheme": scheme, "fine_tune_seconds": round(seconds, 3),
              "quantized_layers": quantized, "fused_relu": fused, "folded_batch_norm": folded_bn,
              "input_was_tf_keras": is_tf_keras_model(model),
              "keras3_copy": {"top1_agreement": agreement, "max_abs_diff": diff}}
    if opts.preserve_sparsity:
        report["layers"] = [sparsity_row(la.name, "kernel", la.kernel.numpy()) for la in native.layers
                            if la.name in quantized and hasattr(la, "kernel")]
    return PassResult(model=native, report=report)
