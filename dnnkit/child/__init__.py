"""Work that may crash or hang, done in a child process with a time limit per item.

Converters (the TFLite converter has died with SIGSEGV) and runtimes loading a damaged or
crafted file can take the whole process down, or never return. Both therefore run in a
worker process that reports on stdout, one protocol line per event (``@@dnnkit {json}``):
``ready``, then per item ``start``, and ``done`` (with ``info``) or ``error`` (with
``reason``). :func:`dnnkit.child.items.run_items` enforces the time limits, settles the item at hand
as failed when the worker crashes, hangs or ends early, and starts a fresh worker for the rest.
Lines that are not protocol lines (or not valid JSON) are ignored.

- :mod:`~dnnkit.child.protocol`: the protocol lines, both sides; the tests' fault injection.
- :mod:`~dnnkit.child.serve`: the worker's side (:func:`~dnnkit.child.serve.serve`).
- :mod:`~dnnkit.child.memory`: a process's resident and peak memory, and giving the heap back.
- :mod:`~dnnkit.child.process`: one worker process seen from the parent (:class:`~dnnkit.child.process.Worker`).
- :mod:`~dnnkit.child.pool`: workers started ahead of their jobs and kept between them.
- :mod:`~dnnkit.child.items`: items run on workers until each is settled (:func:`~dnnkit.child.items.run_job`).

May import: :mod:`dnnkit.errors` only (it knows no stage: worker modules are named by their callers).
"""
