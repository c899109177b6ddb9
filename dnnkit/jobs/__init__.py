"""Orchestration: the one package that combines stages into the jobs a user runs (``dnnkit run``,
``export``, ``compress``, ``optimize``, ``verify``, ``package``, ``evaluate``). Stages never call up into it.

- :mod:`~dnnkit.jobs.run`: the main job (train a spec, then compress and export it).
- :mod:`~dnnkit.jobs.export`: a model into every artifact of a recipe, each verified.
- :mod:`~dnnkit.jobs.compress`: a recipe's passes on a model, goals checked, then the export.
- :mod:`~dnnkit.jobs.optimize`: every candidate made and verified, the best kept.
- :mod:`~dnnkit.jobs.reverify`: an export folder verified again (``dnnkit verify``).
- :mod:`~dnnkit.jobs.package`: serving layouts of an export folder (``dnnkit package``, a recipe's ``[package]``).
- :mod:`~dnnkit.jobs.evaluate`: a run or model file scored on a split.
- :mod:`~dnnkit.jobs.conversions`: conversions and checks overlapped, and which process checks what.
- :mod:`~dnnkit.jobs.fallback`: the float fallback, both kinds (a failed conversion retried; an int8 artifact
  repaired by keeping its worst layers float).
- :mod:`~dnnkit.jobs.reference`: the reference outputs, computed once per command.
- :mod:`~dnnkit.jobs.outfolder`: whose output folder it is (a fresh one, or an earlier export of the same
  source), staged and published at once.
- :mod:`~dnnkit.jobs.finish`: the one verdict, failed artifacts set apart, the one write of the manifest and
  report.
- :mod:`~dnnkit.jobs.timing`: stage timings and the worker processes of the job in progress.

May import: every stage: :mod:`dnnkit.optimization`, :mod:`dnnkit.handoff`, :mod:`dnnkit.manifest`,
:mod:`dnnkit.workers`, :mod:`dnnkit.formats`, :mod:`dnnkit.verification`, :mod:`dnnkit.sources`,
:mod:`dnnkit.passes`, :mod:`dnnkit.training`, :mod:`dnnkit.builders`, :mod:`dnnkit.data`, :mod:`dnnkit.config`,
:mod:`dnnkit.core`, :mod:`dnnkit.child`, :mod:`dnnkit.artifacts`.

Importing a job imports no Keras or TensorFlow: a job starts its worker processes first, and they import while
this one loads data, trains or computes the reference (:mod:`~dnnkit.jobs.timing`).
"""
