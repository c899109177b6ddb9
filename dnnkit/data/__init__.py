"""Data: the built-in ``digits`` set, user ``.npz``/``.csv`` files and image folders, splits and checks.

Everything here is NumPy and scikit-learn (Keras only to read images); the ``tf.data`` pipeline lives in
:mod:`dnnkit.training.fit`. All checks run before training starts and raise :class:`~dnnkit.errors.DataError`
with one line naming the file, the field and what was expected.

- :mod:`~dnnkit.data.dataset`: the split data set and the splitting.
- :mod:`~dnnkit.data.files`: reading digits, ``.npz``, ``.csv`` and image folders.
- :mod:`~dnnkit.data.checks`: features and labels checked against a model.
- :mod:`~dnnkit.data.load`: a spec's data, loaded, checked and split (:func:`~dnnkit.data.load.load_data`).
- :mod:`~dnnkit.data.named`: arrays per input and output name, for models with several of either.

May import: :mod:`dnnkit.config`, :mod:`dnnkit.core`, :mod:`dnnkit.errors`.
"""
