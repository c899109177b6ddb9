"""What every stage may use: tensors by name (:mod:`~dnnkit.core.tensors`), task metrics and
degradation (:mod:`~dnnkit.core.metrics`), output closeness (:mod:`~dnnkit.core.parity`), atomic
writes (:mod:`~dnnkit.core.fileio`) and the third-party log (:mod:`~dnnkit.core.quiet`).

May import: :mod:`dnnkit.errors` and each other; no stage.
"""
