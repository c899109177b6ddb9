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

from dnnkit.compress import PassResult, PruneOptions
from dnnkit.compress.context import PassContext

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
    if act is not None and not isinstance(act, str):
        raise ValueError(f"layer {layer.name}: activation {act} is not a built-in name; "
                         "tfmot engine supports built-in activations only")
    allowed = set(inspect.signature(target.__init__).parameters) | {"name", "dtype", "trainable"}
    return {k: v for k, v in cfg.items() if k in allowed}


def _rebuild(model: Any, layers_module: Any, input_fn: Any, model_cls: Any) -> Any:
    kinds = [type(layer).__name__ for layer in model.layers]
    unsupported = sorted({k for k in kinds if k not in PORTABLE})
    if unsupported:
        raise ValueError(f"tfmot engine: layers {unsupported} cannot be moved between Keras 3 and "
                         f"tf_keras; supported: {', '.join(PORTABLE)}")
    shape = tuple(model.inputs[0].shape[1:])
    inp = input_fn(shape=shape, name=model.inputs[0].name if hasattr(model.inputs[0], "name") else "inputs")
    x = inp
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        target = getattr(layers_module, kind)
        new = target(**_portable_config(layer, target))
        x = new(x)
        new.set_weights(layer.get_weights())
    rebuilt = model_cls(inp, x, name=model.name)
    probe = np.random.default_rng(0).random((4, *shape)).astype(np.float32)
    if not np.allclose(np.asarray(rebuilt(probe, training=False)), np.asarray(model(probe, training=False)),
                       atol=1e-4):
        raise ValueError("tfmot engine: the model is not a single chain of layers; it cannot be rebuilt "
                         "in tf_keras faithfully")
    return rebuilt


def to_tf_keras(model: Any) -> Any:
    """The same chain of layers, with the same weights, as a tf_keras model."""
    import tf_keras

    return _rebuild(model, tf_keras.layers, tf_keras.Input, tf_keras.Model)


def to_keras3(model: Any) -> Any:
    """The same chain of layers, with the same weights, as a Keras 3 model."""
    import keras

    return _rebuild(model, keras.layers, keras.Input, keras.Model)


def _fit(model: Any, ctx: PassContext, *, epochs: int, learning_rate: float, batch_size: int,
         callbacks: list[Any]) -> None:
    import tf_keras

    from dnnkit.training import prepare_targets

    tf_keras.utils.set_random_seed(ctx.seed)
    head = ctx.spec.model.head
    loss = {"multiclass": tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            "binary": tf_keras.losses.BinaryCrossentropy(),
            "regression": tf_keras.losses.MeanSquaredError()}[head]
    if ctx.spec.train.loss == "categorical_crossentropy":
        loss = tf_keras.losses.CategoricalCrossentropy(from_logits=True)
    model.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=loss)
    ds = ctx.dataset
    model.fit(ds.x_train, prepare_targets(ctx.spec, ds.y_train), batch_size=batch_size, epochs=epochs,
              validation_data=(ds.x_val, prepare_targets(ctx.spec, ds.y_val)), callbacks=callbacks, verbose=0)


def _selected(model: Any, opts: PruneOptions) -> set[str]:
    """The layers the native engine would prune (the same selection rules, on tf_keras)."""
    from dnnkit.compress.pruning import PruneConfig, candidates

    config = PruneConfig(layers=opts.layers, types=opts.types, skip_first=opts.skip_first,
                         skip_last=opts.skip_last)
    return {layer.name for layer in candidates(model, config)}


def prune_with_tfmot(model: Any, opts: PruneOptions, ctx: PassContext) -> PassResult:
    """Magnitude pruning by tfmot (``prune_low_magnitude`` + ``strip_pruning``).

    Returns:
        A plain Keras 3 model with the pruned weights, and a report.
    """
    import tf_keras

    from dnnkit.compress.prune_pass import schedule_for

    if opts.structure or opts.scope != "layer":
        raise ValueError("tfmot engine: prune supports unstructured, per-layer sparsity here "
                         f"(got structure={opts.structure!r}, scope={opts.scope!r})")
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
    layers = [{"layer": la.name, "weight": "kernel", "shape": list(la.kernel.shape),
               "sparsity": float(np.mean(la.kernel.numpy() == 0))} for la in stripped.layers if la.name in chosen]
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
