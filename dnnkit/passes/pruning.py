"""Magnitude pruning for Keras 3 models, native (tfmot accepts only tf_keras models).

Masks live in non-trainable variables; each pruned weight gets a Keras variable
*constraint* ``w -> w * mask``, which every Keras optimizer applies right after each update,
inside the train step (TensorFlow backend, also under tf.distribute; on JAX the compiled
step keeps the masks of its first trace, so there the masks are re-applied at every mask
update and when stripping). Pruned weights therefore
cannot regrow between mask updates. A callback recomputes the masks on the schedule's steps.
Nothing wraps the layers, so :func:`strip_pruning` only has to drop the constraints.

    state = prune_low_magnitude(model, PruneConfig(schedule=PolynomialDecay(0, 0.8, 0, 300, frequency=10)))
    model.compile(...); model.fit(..., callbacks=[state.callback()])
    plain = strip_pruning(model, state)
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnnkit.core.tensors import set_weights
from dnnkit.passes.schedules import ConstantSparsity, PruningSchedule
from dnnkit.config.passes import PRUNABLE

# Convolution kernels keep their input channels on axis -2; everything else on axis 0.
_INPUT_AXIS_M2 = ("Conv1D", "Conv2D", "Conv3D", "DepthwiseConv1D", "DepthwiseConv2D")


@dataclass(frozen=True)
class PruneConfig:
    """What to prune and how.

    Attributes:
        schedule: when, and to which sparsity, masks are updated.
        layers: fnmatch patterns of layer names to prune (empty: every prunable layer).
        types: layer class names to prune (empty: every prunable class).
        skip_first, skip_last: leave the first / last prunable layer dense.
        scope: ``layer`` (each weight to the target) or ``global`` (one magnitude threshold
            over all selected weights).
        structure: ``(m, n)`` keeps the m largest of every n consecutive weights along the
            input dimension (2:4 sparsity); ``None`` for unstructured.
    """

    schedule: PruningSchedule = field(default_factory=lambda: ConstantSparsity(0.5))
    layers: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    skip_first: bool = False
    skip_last: bool = False
    scope: str = "layer"
    structure: tuple[int, int] | None = None


@dataclass
class Target:
    """One pruned weight: its layer, variable, mask variable and input axis."""

    layer: str
    weight: str
    variable: Any
    mask: Any
    input_axis: int


class MaskConstraint:
    """Variable constraint ``w -> w * mask`` (applied by the optimizer after each update)."""

    def __init__(self, mask: Any) -> None:
        self.mask = mask

    def __call__(self, w: Any) -> Any:
        from keras import ops

        return w * ops.cast(self.mask, w.dtype)


@dataclass
class PruningState:
    """The pruned weights of one model and the schedule that drives them."""

    config: PruneConfig
    targets: list[Target]
    skipped: dict[str, str] = field(default_factory=dict)
    last_step: int = -1

    def update(self, step: int) -> float | None:
        """Recompute and apply the masks if the schedule asks for it at ``step``."""
        sparsity = self.config.schedule(step)
        if sparsity is None or step == self.last_step:
            return None
        self.last_step = step
        weights = [np.asarray(t.variable.numpy()) for t in self.targets]
        if self.config.structure is not None:
            m, n = self.config.structure
            masks = [m_of_n_mask(w, m, n, t.input_axis) for w, t in zip(weights, self.targets)]
        elif self.config.scope == "global":
            masks = global_masks(weights, sparsity)
        else:
            masks = [magnitude_mask(w, sparsity) for w in weights]
        for t, w, mask in zip(self.targets, weights, masks):
            t.mask.assign(mask.astype(np.float32))
            t.variable.assign((w * mask).astype(w.dtype))
        return sparsity

    def callback(self) -> Any:
        """A Keras callback that updates the masks on the schedule (step = optimizer iterations)."""
        import keras

        state = self

        class UpdatePruningMasks(keras.callbacks.Callback):
            def _update(self) -> None:
                step = int(self.model.optimizer.iterations.numpy())
                if state.config.schedule(step) is None:
                    return
                # On JAX the trainer holds the weights during an epoch: write them back
                # first; it re-reads them (masked) before the next step.
                sync = getattr(self.model, "jax_state_sync", None)
                if sync is not None:
                    sync()
                state.update(step)

            def on_train_begin(self, logs: Any = None) -> None:
                self._update()

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                self._update()

        return UpdatePruningMasks()

    def report(self) -> list[dict[str, Any]]:
        """Per-weight sparsity (fraction of exact zeros) now."""
        return [sparsity_row(t.layer, t.weight, t.variable.numpy()) for t in self.targets]


def sparsity_row(layer: str, weight: str, value: Any) -> dict[str, Any]:
    """One row of a per-weight sparsity report: layer, weight, shape, fraction of exact zeros."""
    w = np.asarray(value)
    return {"layer": layer, "weight": weight, "shape": list(w.shape), "sparsity": float(np.mean(w == 0))}


def magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero exactly ``round(sparsity * size)`` smallest-magnitude entries."""
    k = int(round(sparsity * w.size))
    mask = np.ones(w.size, dtype=np.float32)
    if k > 0:
        mask[np.argsort(np.abs(w).ravel(), kind="stable")[:k]] = 0.0
    return mask.reshape(w.shape)


def global_masks(weights: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    """One magnitude threshold over all weights together."""
    flat = np.concatenate([np.abs(w).ravel() for w in weights])
    k = int(round(sparsity * flat.size))
    if k == 0:
        return [np.ones_like(w, dtype=np.float32) for w in weights]
    threshold = np.partition(flat, k - 1)[k - 1]
    return [(np.abs(w) > threshold).astype(np.float32) for w in weights]


def m_of_n_mask(w: np.ndarray, m: int, n: int, input_axis: int) -> np.ndarray:
    """Keep the ``m`` largest magnitudes in every group of ``n`` consecutive weights along
    the input axis (2:4 sparsity with m=2, n=4)."""
    moved = np.moveaxis(w, input_axis, -1)
    groups = np.abs(moved).reshape(-1, n)
    keep = np.argsort(-groups, axis=1, kind="stable")[:, :m]
    mask = np.zeros_like(groups, dtype=np.float32)
    np.put_along_axis(mask, keep, 1.0, axis=1)
    return np.moveaxis(mask.reshape(moved.shape), -1, input_axis)


def _resolve(layer: Any, path: str) -> Any:
    obj = layer
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def candidates(model: Any, config: PruneConfig) -> list[Any]:
    """The layers ``config`` selects for pruning, in model order."""
    layers = [layer for layer in model.layers if type(layer).__name__ in PRUNABLE]
    if config.skip_first and layers:
        layers = layers[1:]
    if config.skip_last and layers:
        layers = layers[:-1]
    if config.layers:
        layers = [layer for layer in layers if any(fnmatch.fnmatchcase(layer.name, p) for p in config.layers)]
    if config.types:
        layers = [layer for layer in layers if type(layer).__name__ in config.types]
    return layers


def prune_low_magnitude(model: Any, config: PruneConfig) -> PruningState:
    """Attach masks and constraints to the prunable weights of ``model`` (in place).

    Call it inside the strategy scope the model was built in. Nothing is pruned until the
    schedule's first update (at ``fit`` start or the first step it names).

    Args:
        model: a built Keras 3 model.
        config: which layers, which schedule, unstructured or m:n.

    Returns:
        The :class:`PruningState`; pass ``state.callback()`` to ``fit``.

    Raises:
        ValueError: if nothing in the model can be pruned with this config.
    """
    import keras

    targets: list[Target] = []
    skipped: dict[str, str] = {}
    for layer in candidates(model, config):
        kind = type(layer).__name__
        axis = -2 if kind in _INPUT_AXIS_M2 else 0
        for path in PRUNABLE[kind]:
            var = _resolve(layer, path)
            if var is None:
                continue
            label = f"{layer.name}/{path.rsplit('.', 1)[-1] if 'cell' not in path else path}"
            if config.structure is not None:
                n = config.structure[1]
                size = var.shape[axis]
                if size % n:
                    skipped[label] = f"input dimension {size} is not a multiple of {n}"
                    continue
            mask = keras.Variable(np.ones(var.shape, np.float32), trainable=False,
                                  name=f"{layer.name}_{path.replace('.', '_')}_mask")
            var.constraint = MaskConstraint(mask)
            targets.append(Target(layer=layer.name, weight=path, variable=var, mask=mask, input_axis=axis))
    if not targets:
        raise ValueError("prune: no prunable weights matched (layers "
                         f"{list(config.layers) or 'any'}, types {list(config.types) or 'any'})")
    return PruningState(config=config, targets=targets, skipped=skipped)


def strip_pruning(model: Any, state: PruningState | None = None) -> Any:
    """A plain copy of ``model``: same architecture and weights (zeros in place), no masks,
    no constraints, nothing that needs dnnkit's pruning code to load or export."""
    import keras

    if state is not None:
        for t in state.targets:
            t.variable.constraint = None
            # The masks once more: on the TF backend the constraint already kept the zeros;
            # on JAX the jitted step sees the masks of its first trace, so weights can
            # move between mask updates.
            mask = np.asarray(t.mask.numpy())
            t.variable.assign((np.asarray(t.variable.numpy()) * mask).astype(mask.dtype))
    plain = keras.models.clone_model(model)
    set_weights(plain, model.get_weights())
    return plain


def sparsity_of(weights: dict[str, np.ndarray]) -> dict[str, float]:
    """Fraction of exact zeros per named weight array."""
    return {name: float(np.mean(np.asarray(w) == 0)) for name, w in weights.items()}
