"""What an artifact file carries and how it is identified, shared by the converters that write it and
the runtimes that check it: digests and sizes (:mod:`~dnnkit.artifacts.files`) and the metadata stored
inside every TFLite and ONNX file (:mod:`~dnnkit.artifacts.metadata`).

May import: nothing of dnnkit (the converters and verification both stand on it).
"""
