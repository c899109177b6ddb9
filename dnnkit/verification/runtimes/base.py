"""What every runtime offers (:class:`Runner`): outputs for any number of inputs, batch-1 latency and
batch-N throughput on one core and on all of them."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Iterator

import numpy as np

from dnnkit.core.tensors import Inputs, batch_for, concat, rows, take


class Runner:
    """An artifact loaded in its runtime.

    Inputs are one array (a single-input artifact) or a dict keyed by input name.

    Attributes:
        input_names, output_names: the names the artifact exposes.
        batch: the static batch size, or ``None`` when the batch is dynamic.
        input_dtypes: NumPy dtype each input takes (int8 for quantized I/O), by name.
    """

    input_names: list[str]
    output_names: list[str]
    batch: int | None
    input_dtypes: dict[str, Any]

    @property
    def input_dtype(self) -> Any:
        return self.input_dtypes[self.input_names[0]]

    def _feed(self, x: Inputs) -> dict[str, np.ndarray]:
        """The inputs by the artifact's names (a single array goes to its only input)."""
        return x if isinstance(x, dict) else {self.input_names[0]: x}

    def _call(self, x: Inputs) -> list[np.ndarray]:
        return self._invoke(self._prepare(x))

    def run(self, x: Inputs, chunk: int = 512) -> list[np.ndarray]:
        """Outputs (float32, dequantized) for all of ``x``, fed in the batches it accepts."""
        step = self.batch or batch_for(x, chunk)
        total = rows(x)
        parts: list[list[np.ndarray]] = []
        for i in range(0, total, step):
            piece = take(x, slice(i, i + step))
            n = rows(piece)
            if self.batch and n < self.batch:  # pad a short last batch, then trim
                piece = concat([piece, take(piece, np.repeat(n - 1, self.batch - n))])
            parts.append([o[:n] for o in self._call(piece)])
        return [np.concatenate([p[k] for p in parts]).astype(np.float32) for k in range(len(parts[0]))]

    def _prepare(self, x: Inputs) -> Any:
        """The input as the runtime takes it (quantized, cast); not part of the timed call."""
        return x

    def _invoke(self, prepared: Any) -> Any:
        """One raw inference on prepared input (what latency measures)."""
        raise NotImplementedError

    default_threads = 1  # the threads latency_ms's figures use (TensorFlow: every core)

    def latency_ms(self, sample: Inputs, runs: int, warmup: int) -> dict[str, float]:
        """Median and p90 wall time of one batch-1 inference, in milliseconds, after warm-up; where the
        runtime takes a batch, the samples per second of batch-32 inferences (``batch``,
        ``throughput_per_s``); and the runtime settings used (``settings``).

        Input preparation (quantizing for int8 I/O, casting) happens once, outside the timing.
        """
        one = take(sample, np.zeros(self.batch or 1, dtype=np.int64))
        prepared = self._prepare(one)
        begin = time.perf_counter()
        for _ in range(warmup):
            self._invoke(prepared)
            if time.perf_counter() - begin > LATENCY_BUDGET_S / 3:
                break
        times: list[float] = []
        begin = time.perf_counter()
        while len(times) < runs and (len(times) < MIN_LATENCY_RUNS
                                     or time.perf_counter() - begin < LATENCY_BUDGET_S):
            start = time.perf_counter()
            self._invoke(prepared)
            times.append((time.perf_counter() - start) * 1000.0)
        result = {"p50": float(np.percentile(times, 50)), "p90": float(np.percentile(times, 90)), "runs": len(times)}
        n = self._throughput_batch(sample)
        if n > 1:  # a batch-N figure only where the runtime takes a batch of N
            result.update(batch=n, throughput_per_s=self._throughput(sample, n, runs))
        result["settings"] = self.settings()
        return result

    def _throughput_batch(self, sample: Inputs) -> int:
        return (min(THROUGHPUT_BATCH, rows(sample), batch_for(sample, max_bytes=THROUGHPUT_BYTES))
                if self.batch is None else self.batch)

    def _throughput(self, sample: Inputs, n: int, runs: int = 100) -> float:
        """Samples per second of batch-``n`` inferences: up to 10 batches, at most ~THROUGHPUT_S (a
        large model is not timed for long), after one warm-up batch."""
        batch = self._prepare(take(sample, np.arange(n) % rows(sample)))
        self._invoke(batch)
        start, reps = time.perf_counter(), 0
        while reps < max(1, min(10, runs // 10)) and (reps == 0 or time.perf_counter() - start < THROUGHPUT_S):
            self._invoke(batch)
            reps += 1
        return float(n * reps / (time.perf_counter() - start))

    def throughput_by_cores(self, sample: Inputs, measured: float | None = None) -> dict[str, Any] | None:
        """Batch-N samples per second on one core and on every core this process may use:
        ``{"batch", "cores": N, "one_core_per_s", "all_cores_per_s", "speedup"}`` (``None`` where the
        batch is fixed at 1 or one core is all there is); ``measured``: latency_ms's throughput, taken
        for the thread count it was measured with instead of timing it again."""
        n, cores = self._throughput_batch(sample), usable_cores()
        if n <= 1 or cores <= 1:
            return None
        default = cores if self.default_threads is None else self.default_threads
        one = measured if measured and default == 1 else self._throughput_on(sample, n, 1)
        every = measured if measured and default == cores else self._throughput_on(sample, n, cores)
        if one is None or every is None:
            return None
        return {"batch": n, "cores": cores, "one_core_per_s": one, "all_cores_per_s": every,
                "speedup": round(every / one, 3)}

    def _throughput_on(self, sample: Inputs, n: int, cores: int) -> float | None:
        """Throughput with the runtime set to ``cores`` threads (a fresh session/interpreter)."""
        other = type(self)(self.path, threads=cores)
        return other._throughput(sample, n)

    def settings(self) -> dict[str, Any]:
        """The runtime settings the figures were measured with (threads, delegates, graph optimization)."""
        return {}


THROUGHPUT_BATCH = 32  # the batch-N of the throughput figure (fewer when the checked split is smaller,


# or when 32 samples' inputs pass THROUGHPUT_BYTES: a 224x224x3 image model is timed at batch 3)
THROUGHPUT_BYTES = 2 * 2**20


THROUGHPUT_S = 0.5  # batches are timed until this many seconds have passed (at least one)


# batch-1 timing: the recipe's latency_runs, cut short after LATENCY_BUDGET_S once MIN_LATENCY_RUNS are in
# (a 224x224 ResNet50 took 18 s per artifact for 100 runs and the throughputs; 20 runs are 1.5 s of it)
LATENCY_BUDGET_S = 2.0


MIN_LATENCY_RUNS = 20


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def one_core() -> Iterator[bool]:
    """Every thread of this process pinned to one core (Linux), the affinities restored after;
    yields whether it could (TensorFlow's thread pools are fixed when it starts, so its one-core
    figure comes from pinning them)."""
    tasks = {}
    pinned = False
    try:
        for tid in map(int, os.listdir("/proc/self/task")):
            tasks[tid] = os.sched_getaffinity(tid)
        first = min(os.sched_getaffinity(0))
        for tid in tasks:
            os.sched_setaffinity(tid, {first})
        pinned = True
    except (OSError, AttributeError):
        pass
    try:
        yield pinned
    finally:
        for tid, cpus in tasks.items():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, cpus)
