"""The record of a job and its verdict: ``OUT/manifest.json`` (what was made, how each artifact was checked,
with which versions), the one verdict over artifacts and goals, and the two views of it (the terminal table
and ``OUT/report.html``).

- :mod:`~dnnkit.manifest.record`: the manifest's shape: its top level, the artifact entries, a check applied to one.
- :mod:`~dnnkit.manifest.verdict`: :func:`~dnnkit.manifest.verdict.decide`, the one verdict.
- :mod:`~dnnkit.manifest.table`: the terminal table.
- :mod:`~dnnkit.manifest.html`: ``OUT/report.html``.
- :mod:`~dnnkit.manifest.usage`: the report's sections on using each file (signature, load snippet, per class).

May import: :mod:`dnnkit.verification` (failure records, the fields a check writes), :mod:`dnnkit.formats` (what
each format's files are known to be), :mod:`dnnkit.artifacts`, :mod:`dnnkit.child` (memory), :mod:`dnnkit.config`,
:mod:`dnnkit.core`.
"""
