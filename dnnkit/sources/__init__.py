"""Model sources: the model a user brings, or a stage wrote, loaded safely and described.

- :mod:`~dnnkit.sources.keras_file`: Keras 3 ``.keras`` files in safe mode (archive and config checked
  first; custom classes given by a file the user trusts).
- :mod:`~dnnkit.sources.saved_model`: a TensorFlow SavedModel folder's serving signature, called like a
  Keras model (:class:`~dnnkit.sources.saved_model.SignatureModel`).
- :mod:`~dnnkit.sources.h5`: tf_keras (Keras 2) ``.h5`` files, loaded once by tf_keras and written as a
  SavedModel that is checked against them.
- :mod:`~dnnkit.sources.open`: any of these opened for export, and an export folder's reference model.
- :mod:`~dnnkit.sources.target`: a run directory or a bare file, with the minimal spec a brought model gets.

May import: :mod:`dnnkit.passes`, :mod:`dnnkit.training` and :mod:`dnnkit.builders` (their Keras classes are
registered before a model is loaded), :mod:`dnnkit.config`, :mod:`dnnkit.core`.
"""
