"""What training and every fine-tuning pass share: the ``tf.data`` pipeline, the optimizer, the loss and
its targets, eager prediction, and ``fit``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from dnnkit.core.tensors import batch_for, rows
from dnnkit.core.heads import PAD_LABEL, STEP_CLASS_HEADS
from dnnkit.config.model import Spec, TrainConfig


def make_tf_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, *, shuffle: bool,
                    seed: int = 0) -> Any:
    """A ``tf.data`` pipeline: shuffle (seeded), batch at the global batch size, prefetch.

    Sharding is by data, so the same pipeline feeds every tf.distribute strategy.
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        ds = ds.shuffle(rows(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return ds.with_options(options)


def make_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> Any:
    """The optimizer and learning-rate schedule the train config names."""
    import keras

    lr: Any = cfg.learning_rate
    if cfg.schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(cfg.learning_rate,
                                                    decay_steps=max(1, cfg.epochs * steps_per_epoch))
    elif cfg.schedule == "step":
        lr = keras.optimizers.schedules.ExponentialDecay(
            cfg.learning_rate, decay_steps=max(1, cfg.step_epochs * steps_per_epoch),
            decay_rate=cfg.step_gamma, staircase=True)
    if cfg.optimizer == "sgd":
        opt = keras.optimizers.SGD(lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(lr)
    elif cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay or 0.004)
    else:
        opt = keras.optimizers.RMSprop(lr, momentum=cfg.momentum)
    if cfg.mixed_precision == "float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def make_loss(spec: Spec, losses: Any = None) -> Any:
    """The loss for the spec's head (``auto``) or the one it names: the one loss choice of training
    and of every fine-tuning pass.

    Args:
        spec: the model's spec.
        losses: the module to take the loss class from: ``keras.losses`` (default) or
            ``tf_keras.losses`` (the tfmot engine).
    """
    if losses is None:
        import keras

        losses = keras.losses
    head, loss = spec.model.head, spec.train.loss
    if head in STEP_CLASS_HEADS:  # padding steps (tag -1) add nothing to the loss
        return losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_LABEL)
    if head == "multiclass":
        name = "CategoricalCrossentropy" if loss == "categorical_crossentropy" else "SparseCategoricalCrossentropy"
        return getattr(losses, name)(from_logits=True)
    return losses.BinaryCrossentropy() if head == "binary" else losses.MeanSquaredError()


def one_hot(spec: Spec) -> bool:
    return spec.model.head == "multiclass" and spec.train.loss == "categorical_crossentropy"


def prepare_targets(spec: Spec, y: np.ndarray) -> np.ndarray:
    """Labels as the spec's loss wants them: one-hot, a (n, 1) float column, or unchanged."""
    if one_hot(spec):
        return np.eye(spec.model.num_classes, dtype=np.float32)[y]
    if spec.model.head == "binary":
        return y.astype(np.float32).reshape(-1, 1)
    return y


def predict(model: Any, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Run a Keras model eagerly over ``x`` in batches (outside any strategy) and return NumPy."""
    import keras

    batch_size = batch_for(x, batch_size)
    outs = [keras.ops.convert_to_numpy(model(x[i:i + batch_size], training=False))
            for i in range(0, len(x), batch_size)]
    return np.concatenate(outs, axis=0).astype(np.float32)


def fit(model: Any, *args: Any, **kwargs: Any) -> Any:
    """``model.fit`` on a tf.data pipeline, without Keras's warning that ``shuffle`` is
    ignored for tf.data input (the pipeline shuffles)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*shuffle.*", category=UserWarning)
        return model.fit(*args, **kwargs)
