"""Schemas and readers: what a model spec (``models/*.toml``) and an export recipe (``export/*.toml``)
may say, validated once, at load time, into frozen dataclasses; and the ones that ship inside the package.

- :mod:`~dnnkit.config.tables`: the TOML table reader behind every one-line error.
- :mod:`~dnnkit.config.toml`: reading and writing TOML files.
- :mod:`~dnnkit.config.model`: the model spec (``[data]``, ``[model]``, ``[train]``).
- :mod:`~dnnkit.config.recipe`: the recipe (``[verify]``, ``[[artifacts]]``, ``[goals]``) and its sections'
  schemas: :mod:`~dnnkit.config.passes` (``[[passes]]``), :mod:`~dnnkit.config.goals` (``[optimize]``),
  :mod:`~dnnkit.config.package` (``[package]``).
- :mod:`~dnnkit.config.shipped`: the shipped recipes and specs (``dnnkit/recipes``, ``dnnkit/models``) by name.

May import: :mod:`dnnkit.errors` and :mod:`dnnkit.core` (the head tables, :mod:`dnnkit.core.heads`; the step files, :mod:`dnnkit.core.generation`). Every stage reads its options from here; nothing here knows a stage.
"""
