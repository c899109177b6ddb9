"""The two worker processes and their parent's side: the converter (``python -m dnnkit.workers.converter``)
converts items with :mod:`dnnkit.formats` and can check and time SavedModels with :mod:`dnnkit.verification`
(TensorFlow is loaded there); the verifier (``python -m dnnkit.workers.verifier``) checks and times
artifacts in their runtimes. A crash or hang in either fails its item only (:mod:`dnnkit.child`).

- :mod:`~dnnkit.workers.convert`: :func:`~dnnkit.workers.convert.convert_artifacts`, the parent's side of conversions.
- :mod:`~dnnkit.workers.checks`: :func:`~dnnkit.workers.checks.verify_artifacts` and
  :func:`~dnnkit.workers.checks.measure_latencies`, the parent's side of checks.
- :mod:`~dnnkit.workers.converter`, :mod:`~dnnkit.workers.verifier`: the worker programs.

Which process checks which artifact is decided by the caller (:mod:`dnnkit.jobs.conversions`).

May import: :mod:`dnnkit.formats`, :mod:`dnnkit.verification`, :mod:`dnnkit.sources` (the converter loads the
model), :mod:`dnnkit.child`, :mod:`dnnkit.config`, :mod:`dnnkit.artifacts`, :mod:`dnnkit.core`.
"""
