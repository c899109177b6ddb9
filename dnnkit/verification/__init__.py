"""Verification: every artifact run in its own runtime and compared with the Keras reference, in this
process (the verifier worker, :mod:`dnnkit.workers.verifier`, checks one artifact at a time).

Checks go names -> shapes -> values, and every failure is collected before the verdict (as Hugging Face
Optimum's ``validate_model_outputs`` does).

- :mod:`~dnnkit.verification.artifact`: one artifact checked (:func:`~dnnkit.verification.artifact.verify_artifact`)
  or timed; the facts recorded beside the checks.
- :mod:`~dnnkit.verification.values`: the value checks of one output, and their parity summary.
- :mod:`~dnnkit.verification.criteria`: the statistical criteria (pass, fail or inconclusive).
- :mod:`~dnnkit.verification.reference`: the reference outputs every artifact is compared with.
- :mod:`~dnnkit.verification.fp16`: the fp16-weight error that calibrates fp16 tolerances.
- :mod:`~dnnkit.verification.device_fit`: flash, arena and TFLite Micro ops of a ``.tflite`` file.
- :mod:`~dnnkit.verification.runtimes`: TensorFlow, the LiteRT interpreter and onnxruntime behind one interface.

Verification never knows how an artifact was made.

May import: :mod:`dnnkit.config` (tolerances), :mod:`dnnkit.artifacts`, :mod:`dnnkit.core`, :mod:`dnnkit.errors`;
never :mod:`dnnkit.formats`.
"""
