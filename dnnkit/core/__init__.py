"""What every stage may use: tensors by name (:mod:`~dnnkit.core.tensors`), task metrics and
degradation (:mod:`~dnnkit.core.metrics`), output closeness (:mod:`~dnnkit.core.parity`), atomic
writes (:mod:`~dnnkit.core.fileio`), the third-party log (:mod:`~dnnkit.core.quiet`), an output folder's
lock and staging (:mod:`~dnnkit.core.staging`) and how a command ends when stopped from outside
(:mod:`~dnnkit.core.faults`); what each head is: a class or a value, per sample or per element
(:mod:`~dnnkit.core.heads`).

May import: :mod:`dnnkit.errors` and each other; no stage.
"""
