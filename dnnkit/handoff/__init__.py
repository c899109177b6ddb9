"""The hand-off: verified artifacts laid out for model servers (a Triton model repository for an ONNX
artifact, a TF Serving base folder for the SavedModel), each copy verified again where it lies.

- :mod:`~dnnkit.handoff.layouts`: a layout written, staged and verified; packaged copies checked again.
- :mod:`~dnnkit.handoff.triton`: Triton's ``config.pbtxt`` and labels file.

(The metadata inside every artifact is written by the converters, :mod:`dnnkit.artifacts.metadata`; a
TFLite file's device fit is measured with its checks, :mod:`dnnkit.verification.device_fit`.)

May import: :mod:`dnnkit.workers` (the copies are checked in the verifier), :mod:`dnnkit.verification` (the
reference they are checked against), :mod:`dnnkit.config` (``[package]`` options), :mod:`dnnkit.artifacts`,
:mod:`dnnkit.core`.
"""
