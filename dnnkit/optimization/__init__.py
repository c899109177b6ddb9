"""``dnnkit optimize``: the smallest (or fastest) verified artifact that meets an accuracy goal.

Candidates come from one registry (:data:`dnnkit.optimization.candidates.CANDIDATES`, per target
runtime): fp32, fp16, dynamic-range int8, full int8 (per-channel) with a selective float fallback, and
TFLite 16x8.
Each is converted in its own process and verified exactly as every artifact is, with
``[verify] max_degradation`` set to the goal, at a confidence corrected for the number of
candidates (Bonferroni, :func:`dnnkit.verification.criteria.z_for`): choosing the best of several that
pass a 95 % test must not pass a bad one more often than 5 %. A full-int8 candidate that misses the goal
keeps its most harmful layers float, most harmful first, until it meets it
(:mod:`dnnkit.jobs.fallback`); both the all-int8 attempt and the repaired one are candidates.

Every candidate is recorded in the manifest's ``optimize`` section with its size, batch-1
latency, metric, degradation, which goals it met and whether it is on the Pareto front of
(degradation, size, latency). The chosen artifact (one per target) stays in ``OUT/artifacts``
and in ``artifacts``; the other candidates' files are removed. When no candidate meets every
goal, the closest ones are kept and listed, and the status is ``failed`` (exit 1).

A recipe's ``[[passes]]`` (pruning, QAT, ...) make a second set of candidates, built from the
compressed model in ``OUT/passes`` (an export folder of its own, kept when a candidate from it is
chosen or closest); the manifest's ``optimize.folders`` names it, and ``dnnkit verify OUT`` verifies
it too.

The search is its own package: :mod:`~dnnkit.optimization.candidates` (the registry and the recipe of
candidates), :mod:`~dnnkit.optimization.choice` (rows, goals met, the Pareto front, the pick). The job
that converts and verifies them is :mod:`dnnkit.jobs.optimize`. ``--device`` and ``--max-arena-kb`` goals judge
the TFLite candidates by their microcontroller budget (:mod:`dnnkit.verification.budget`).

May import: :mod:`dnnkit.config`, :mod:`dnnkit.core`, :mod:`dnnkit.verification` (the budget of a candidate).
"""
