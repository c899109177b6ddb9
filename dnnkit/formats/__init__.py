"""Converters: a loaded model in, an artifact file out, in this process (the converter worker,
:mod:`dnnkit.workers.converter`, runs them one item at a time).

- :mod:`~dnnkit.formats.convert`: the one dispatch point, listing the formats and what each writes.
- :mod:`~dnnkit.formats.saved_model`, :mod:`~dnnkit.formats.tflite`, :mod:`~dnnkit.formats.onnx`: one
  module per format, each with its per-layer quantization error for the selective fallback (``rank_layers``).
- :mod:`~dnnkit.formats.tflite_fp16`: an fp16 file's small constants kept in fp32; :mod:`~dnnkit.formats.tflite_int16`:
  a model's LayerNorm made convertible to TFLite's 16x8 kernels.
- :mod:`~dnnkit.formats.frozen`: a Keras model as one frozen TensorFlow graph (what tf2onnx converts).
- :mod:`~dnnkit.formats.common`: the signature every artifact shares.

Converters never judge their artifacts (:mod:`dnnkit.verification` does, in another process).

- :mod:`~dnnkit.formats.generation`: a causal LM's cached step model (prefill / decode signatures) as
  SavedModel, TFLite and ONNX.

May import: :mod:`dnnkit.artifacts`, :mod:`dnnkit.core`, :mod:`dnnkit.child` (memory), :mod:`dnnkit.builders` (the
step model of a causal LM, :mod:`dnnkit.builders.decoding`), :mod:`dnnkit.passes` (bias correction and
cross-layer equalization of the weights an int8 artifact rounds, :mod:`dnnkit.passes.bias_correction`,
:mod:`dnnkit.passes.equalization`), :mod:`dnnkit.errors`;
never :mod:`dnnkit.verification`.
"""
