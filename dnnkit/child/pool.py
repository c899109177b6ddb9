"""Workers started ahead of their jobs (importing TensorFlow and the converters takes seconds) and
kept between jobs while :func:`warm_workers` is active."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import threading
from typing import Iterator

from dnnkit.child.process import Worker


class Pool:
    """Workers started ahead of their jobs (importing TensorFlow and the converters takes seconds) and kept
    between jobs, while :func:`warm_workers` is active; outside it every job starts and ends its own."""

    def __init__(self) -> None:
        self.active = 0
        self.idle: dict[str, Worker] = {}
        self.tmp: str | None = None  # the workers' TMPDIR while the pool is active
        self.lock = threading.Lock()

    @staticmethod
    def key(module: str) -> tuple[str, ...]:
        """What a kept worker must share with the job that takes it: the module and the environment
        that changes what it does (dnnkit's own variables: tests inject faults through them)."""
        keep = ("DNNKIT_", "KERAS_BACKEND", "PYTHONPATH", "CUDA_VISIBLE_DEVICES")
        return (module, *sorted(f"{k}={v}" for k, v in os.environ.items() if k.startswith(keep)))

    def prestart(self, modules: tuple[str, ...]) -> None:
        """Start the modules' workers now: the first imports at once, the others once the first is
        taken (on two cores, the imports take the core the parent leaves free: while it imports and
        trains, the converter's; while the converter works, the verifier's)."""
        if os.environ.get("DNNKIT_PRESTART", "1") == "0":  # benchmarks compare with and without
            return
        with self.lock:
            for i, module in enumerate(modules):
                if not self.active or (module in self.idle and self.idle[module].alive()):
                    continue
                worker = Worker([sys.executable, "-m", module], env=worker_env(), key=self.key(module),
                                nice=PRESTART_NICE)
                worker.prestarted = True
                if i == 0:
                    worker.send({"warm": True})
                else:
                    worker.cold = True
                self.idle[module] = worker

    def take(self, module: str) -> Worker:
        """A prestarted worker for ``module``, else a new one."""
        key = self.key(module)
        with self.lock:
            worker = self.idle.pop(module, None)
        if worker is not None and worker.key == key and worker.alive():
            self.warm_rest()
            return worker
        if worker is not None:
            worker.stop()  # started for another environment (tests inject faults through it)
        return Worker([sys.executable, "-m", module], env=worker_env(), key=key)

    def warm_rest(self) -> None:
        """Have the prestarted workers that wait for the first one to be taken warm up now."""
        with self.lock:
            for other in self.idle.values():
                if other.cold:
                    other.send({"warm": True})
                    other.cold = False

    def give_back(self, module: str, worker: Worker) -> None:
        with self.lock:
            if self.active and worker.alive() and module not in self.idle:
                self.idle[module] = worker
                return
        worker.close()

    def close(self) -> None:
        with self.lock:
            workers, self.idle = list(self.idle.values()), {}
        for worker in workers:
            if worker.settled or worker.log_name is not None:
                worker.close()
            else:  # never handed an item: nothing of its own to clean up, no reason to wait out its imports
                worker.stop()
        if self.tmp is not None:  # what killed workers left behind
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


POOL = Pool()


# Prestarted workers run at a lower priority, below the process that started them (measured: it does
# not stop a worker importing during training from slowing the training, hence the verifier warms once
# training is over; docs/field-notes.md).
PRESTART_NICE = int(os.environ.get("DNNKIT_PRESTART_NICE", "10"))


@contextlib.contextmanager
def warm_workers(*modules: str) -> Iterator[None]:
    """Start a worker for each of ``modules`` now and keep workers between jobs until the block ends.

    Args:
        modules: worker modules to prestart (``dnnkit.workers.converter``, ``dnnkit.workers.verifier``).
    """
    POOL.active += 1
    if POOL.tmp is None:
        import tempfile

        POOL.tmp = tempfile.mkdtemp(prefix="dnnkit-workers-")
    try:
        POOL.prestart(modules)
        yield
    finally:
        POOL.active -= 1
        if not POOL.active:
            POOL.close()


def worker_env() -> dict[str, str]:
    """The workers' environment: this one, TensorFlow's C++ log quieter, and inside
    :func:`warm_workers` a temporary folder of their own (removed at the end, with whatever a killed
    worker left in it)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    # blocks of 8 MB and more always mapped (glibc otherwise raises the threshold as they are freed and
    # keeps later ones on a heap it cannot give back): a worker's resident memory falls when an item's
    # arrays go. At 1 MB every mid-size tensor was a fresh mapping: a 224x224 ResNet50's ONNX export took
    # 16.8 s instead of 9.3 s (page faults), 8 MB: 10.5 s
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(8 << 20))
    if POOL.tmp is not None:
        env["TMPDIR"] = POOL.tmp
    return env
