"""Training a spec: the tf.distribute strategy, compile, the ``tf.data`` pipeline, callbacks and the run
directory (:func:`~dnnkit.training.run.train`).

- :mod:`~dnnkit.training.run`: :func:`~dnnkit.training.run.train` and its run directory.
- :mod:`~dnnkit.training.fit`: datasets, optimizer, loss and targets, shared with every fine-tuning pass.
- :mod:`~dnnkit.training.callbacks`: the epoch log, the resumable backup, the best checkpoint.
- :mod:`~dnnkit.training.strategy`: choosing and creating the tf.distribute strategy.
- :mod:`~dnnkit.training.keras_metrics`: the Keras metrics logged while training.

May import: :mod:`dnnkit.builders`, :mod:`dnnkit.data`, :mod:`dnnkit.config`, :mod:`dnnkit.core`.
"""
