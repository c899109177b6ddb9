"""Compression passes: each takes a Keras model and hands on a new one (:class:`~dnnkit.passes.registry.PassResult`),
found in one registry by its type and engine (:mod:`~dnnkit.passes.registry`); their options are read by
:mod:`dnnkit.config.passes`.

- native Keras 3: :mod:`~dnnkit.passes.pruning` (magnitude pruning, unstructured or m:n) run by
  :mod:`~dnnkit.passes.prune_pass`, :mod:`~dnnkit.passes.qat` (quantization-aware training) run by
  :mod:`~dnnkit.passes.qat_pass`, :mod:`~dnnkit.passes.distill` (keras.distillation);
- :mod:`~dnnkit.passes.tfmot_engine`: tfmot for tf_keras models (prune, qat, cluster);
- :mod:`~dnnkit.passes.context`: what every pass gets besides the model (spec, data, fine-tuning);
- :mod:`~dnnkit.passes.schedules`: pruning schedules;
- :mod:`~dnnkit.passes.bias_correction`: biases that absorb the mean error of int8-rounded weights (not a
  registered pass: the converters apply it to a copy when an int8 artifact asks, a rung of the quantization ladder);
- :mod:`~dnnkit.passes.equalization`: cross-layer equalization of channel ranges across ReLU/identity (the same:
  the ladder's ``equalized`` rung).

Importing the package stays light; a pass imports Keras when it runs.

May import: :mod:`dnnkit.training`, :mod:`dnnkit.builders`, :mod:`dnnkit.data`, :mod:`dnnkit.config`,
:mod:`dnnkit.core`.
"""
