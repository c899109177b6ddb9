"""The parent/child protocol (dnnkit.child) against a fake worker that crashes, hangs, prints
garbage or ends early: no TensorFlow, time limits of a second or two."""

import collections
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from dnnkit.child import items as child
from dnnkit.child.items import run_items, run_job
from dnnkit.child.pool import POOL, warm_workers
from dnnkit.child.process import Worker

FAKE = r"""
import json, os, signal, sys, time
modes = json.loads(sys.argv[1])
P = "@@dnnkit "
def say(**e):
    sys.stdout.write(P + json.dumps(e) + "\n"); sys.stdout.flush()
first = modes.get("_startup")
if first == "hang":
    time.sleep(60)
if first == "exit":
    sys.exit(3)
print("some library chatter on stdout")
say(event="ready")
for line in sys.stdin:
    name = json.loads(line)["name"]
    mode = modes.get(name, "ok")
    say(event="start", name=name)
    if mode == "crash":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif mode == "hang":
        time.sleep(60)
    elif mode == "error":
        say(event="error", name=name, reason="it broke")
        continue
    elif mode == "garbage":
        print("@@dnnkit {not json")
        print("@@dnnkit " + json.dumps({"event": "done", "name": "someone_else"}))
        print("@@dnnkit " + json.dumps(["a", "list"]))
        sys.stdout.write("\x00\xff binary-ish noise\n"); sys.stdout.flush()
    elif mode == "exit_after":
        say(event="done", name=name, info={"n": 1})
        sys.exit(0)
    say(event="done", name=name, info={"name": name})
"""


@pytest.fixture()
def fake(tmp_path):
    path = tmp_path / "fake_worker.py"
    path.write_text(FAKE)
    return path


def _run(fake, names, modes, timeout=1.0, startup=2.0, **kwargs):
    starts = []

    def start():
        starts.append(1)
        return Worker([sys.executable, str(fake), json.dumps(modes)])

    begin = time.monotonic()
    results, worker = run_items(start, names, collections.defaultdict(lambda: timeout), lambda n: {"name": n},
                                startup_timeout=startup, action="verification", process="verification process",
                                **kwargs)
    if worker is not None:
        worker.close()
    return results, len(starts), time.monotonic() - begin


def test_all_done_in_one_worker(fake):
    results, starts, _ = _run(fake, ["a", "b", "c"], {})
    assert {n: r["status"] for n, r in results.items()} == {"a": "done", "b": "done", "c": "done"}
    assert results["b"]["info"] == {"name": "b"} and starts == 1


def test_crash_fails_only_that_item_and_a_fresh_worker_goes_on(fake):
    results, starts, _ = _run(fake, ["a", "b", "c"], {"b": "crash"})
    assert results["b"]["status"] == "failed"
    assert results["b"]["reason"] == "verification process crashed (killed by signal SIGSEGV)"
    assert results["a"]["status"] == results["c"]["status"] == "done"
    assert starts == 2


def test_hang_is_cut_at_its_limit(fake):
    results, starts, seconds = _run(fake, ["a", "b", "c"], {"b": "hang"}, timeout=1.0)
    assert results["b"] == {**results["b"], "status": "failed", "reason": "verification timed out after 1 s"}
    assert results["c"]["status"] == "done" and starts == 2
    assert seconds < 10


def test_garbage_lines_are_ignored(fake):
    results, _, _ = _run(fake, ["a", "b"], {"a": "garbage"})
    assert {n: r["status"] for n, r in results.items()} == {"a": "done", "b": "done"}
    assert "someone_else" not in results


def test_error_event_fails_the_item_with_its_reason(fake):
    results, starts, _ = _run(fake, ["a", "b"], {"a": "error"})
    assert results["a"]["status"] == "failed" and results["a"]["reason"] == "it broke"
    assert results["b"]["status"] == "done" and starts == 1


def test_worker_that_never_answers(fake):
    results, _, seconds = _run(fake, ["a", "b"], {"_startup": "hang"}, startup=1.0)
    assert all(r["reason"] == "verification process did not respond within 1 s" for r in results.values())
    assert seconds < 10


def test_worker_that_exits_at_once(fake):
    results, starts, _ = _run(fake, ["a", "b"], {"_startup": "exit"})
    assert all(r["reason"] == "verification process ended early (exit code 3)" for r in results.values())
    assert starts == 1  # no progress: not restarted forever


def test_worker_that_stops_between_items_is_restarted(fake):
    results, starts, _ = _run(fake, ["a", "b"], {"a": "exit_after"})
    assert {n: r["status"] for n, r in results.items()} == {"a": "done", "b": "done"}
    assert starts == 2


def test_items_handed_over_as_they_arrive(fake):
    # verification takes artifacts while conversions still run: the names come from a queue
    arrivals: "queue.Queue[str | None]" = queue.Queue()
    settled = []

    def names():
        while (name := arrivals.get()) is not None:
            yield name

    def produce():
        for name in ("a", "b", "c"):
            time.sleep(0.3)
            arrivals.put(name)
            settled.append(("sent", name))
        arrivals.put(None)

    threading.Thread(target=produce, daemon=True).start()
    results, starts, _ = _run(fake, names(), {"b": "crash"},
                              on_settled=lambda name, result: settled.append((result["status"], name)))
    assert [r["status"] for r in results.values()] == ["done", "failed", "done"] and starts == 2
    # each item settled after it was sent and before the next one arrived
    assert settled == [("sent", "a"), ("done", "a"), ("sent", "b"), ("failed", "b"), ("sent", "c"), ("done", "c")]


SERVED = r'''
import sys
from dnnkit.child.serve import serve
sys.exit(serve(lambda item: {"twice": item["name"] * 2}, fault_variable="FAKE_FAULT", what="fake"))
'''


def test_serve_with_injected_faults(tmp_path, monkeypatch):
    # dnnkit's own worker loop (no TensorFlow), faults injected through the environment
    script = tmp_path / "served.py"
    script.write_text(SERVED)
    monkeypatch.setenv("FAKE_FAULT", "b:crash,c:error,d:hang")
    results, worker = run_items(lambda: Worker([sys.executable, str(script)]), ["a", "b", "c", "d", "e"],
                                {n: 1.0 for n in "abcde"}, lambda n: {"name": n}, startup_timeout=20.0)
    worker.close()
    assert results["a"]["info"] == {"twice": "aa"} and results["e"]["info"] == {"twice": "ee"}
    assert results["b"]["reason"] == "converter process crashed (killed by signal SIGSEGV)"
    assert results["c"]["reason"] == "injected fake error"
    assert results["d"]["reason"] == "conversion timed out after 1 s"


MODULE = r'''
import os, sys, time
from dnnkit.child.serve import serve

def warm():
    time.sleep(float(os.environ.get("FAKE_WARM_S", "0")))

KEPT = []

def work(item):
    if item.get("keep_mb"):  # memory the item leaves behind (touched, so resident)
        KEPT.append(bytearray(item["keep_mb"] * 2**20))
        for i in range(0, len(KEPT[-1]), 4096):
            KEPT[-1][i] = 1
    if item.get("leave"):  # a file in the worker's temporary folder
        open(os.path.join(os.environ["TMPDIR"], item["leave"]), "w").write("x")
    if item.get("stderr"):
        print(item["stderr"], file=sys.stderr, flush=True)
    return {"pid": os.getpid(), "tmpdir": os.environ.get("TMPDIR")}

def cleanup():
    open(os.environ["CLEANUP_MARK"], "w").write("cleaned")

sys.exit(serve(work, fault_variable="DNNKIT_FAKE_FAULT", what="fake", warm=warm, cleanup=cleanup))
'''


@pytest.fixture()
def module(tmp_path, monkeypatch):
    (tmp_path / "fake_dnnkit_worker.py").write_text(MODULE)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("CLEANUP_MARK", str(tmp_path / "cleaned"))
    monkeypatch.setenv("FAKE_WARM_S", "1.0")
    return "fake_dnnkit_worker"


def test_prestarted_worker_is_warm_and_kept_between_jobs(module, tmp_path):
    stats = []
    with warm_workers(module):
        time.sleep(2.5)  # the parent is busy (training); the worker warms up meanwhile
        first = run_job(module, ["a"], {"a": 5.0}, lambda n: {"name": n}, stats=stats,
                        log_path=tmp_path / "job.log")
        second = run_job(module, ["b"], {"b": 5.0}, lambda n: {"name": n, "stderr": "to the log"}, stats=stats,
                         log_path=tmp_path / "job.log")
        tmpdir = first["a"]["info"]["tmpdir"]
        assert os.path.isdir(tmpdir)
    assert first["a"]["info"]["pid"] == second["b"]["info"]["pid"]  # one process for both jobs
    assert stats[0]["prestarted"] and stats[0]["import_s"] >= 1.0
    assert stats[0]["waited_s"] < 0.5  # its 1 s warm-up was over before the job began
    assert (tmp_path / "job.log").read_text().strip() == "to the log"  # stderr goes to the job's log
    assert (tmp_path / "cleaned").read_text() == "cleaned"  # ended by closing its input, not killed
    assert not os.path.exists(tmpdir)  # the workers' temporary folder goes with the pool


def test_prestarted_worker_not_used_for_another_environment(module, monkeypatch):
    with warm_workers(module):
        monkeypatch.setenv("DNNKIT_FAKE_FAULT", "a:error")  # set after the worker started
        stats = []
        result = run_job(module, ["a"], {"a": 5.0}, lambda n: {"name": n}, stats=stats)
    assert result["a"]["reason"] == "injected fake error" and not stats[0]["prestarted"]


def test_killed_worker_leaves_nothing_behind(module):
    with warm_workers(module):
        stats = []
        result = run_job(module, ["a"], {"a": 5.0}, lambda n: {"name": n, "leave": "junk"}, stats=stats)
        tmpdir = result["a"]["info"]["tmpdir"]
        assert os.path.isfile(os.path.join(tmpdir, "junk"))
        POOL.idle[module].stop()  # as a hang or crash would end it
    assert not os.path.exists(tmpdir)


def test_prestart_can_be_switched_off(module, monkeypatch):
    monkeypatch.setenv("DNNKIT_PRESTART", "0")
    with warm_workers(module):
        assert module not in POOL.idle


def test_worker_that_keeps_memory_is_replaced(module, monkeypatch):
    monkeypatch.setattr(child, "RECYCLE_GROWTH_MB", 100)
    monkeypatch.setattr(child, "RECYCLE_RATIO", 1.0)
    stats = []
    results = run_job(module, ["a", "b", "c"], collections.defaultdict(lambda: 20.0),
                      lambda n: {"name": n, "keep_mb": 200 if n == "a" else 0}, stats=stats, recycle=True)
    pids = [results[n]["info"]["pid"] for n in "abc"]
    assert pids[0] != pids[1] == pids[2]  # a new process after "a" kept 200 MB; "b" kept nothing
    assert stats[0]["recycled"]["after"] == "a" and stats[0]["recycled"]["rss_mb"] > stats[0]["recycled"][
        "at_first_item_mb"] + 100
    assert "recycled" not in stats[1]


def test_worker_started_in_a_job_thread_is_kept_after_the_thread_ends(module, monkeypatch):
    """The conversions run in a thread of their own; a worker that thread starts (here the replacement after a
    recycle) goes back to the pool and serves the next job, from another thread, without a new start."""
    monkeypatch.setattr(child, "RECYCLE_GROWTH_MB", 100)
    monkeypatch.setattr(child, "RECYCLE_RATIO", 1.0)
    first: dict = {}
    with warm_workers(module):
        job = threading.Thread(target=lambda: first.update(run_job(
            module, ["a", "b"], collections.defaultdict(lambda: 20.0),
            lambda n: {"name": n, "keep_mb": 200 if n == "a" else 0}, recycle=True)))
        job.start()
        job.join()
        time.sleep(0.5)  # a worker tied to the ended thread would have been killed by now
        later = run_job(module, ["c"], {"c": 5.0}, lambda n: {"name": n})
    assert first["a"]["info"]["pid"] != first["b"]["info"]["pid"]  # recycled after "a"
    assert later["c"]["info"]["pid"] == first["b"]["info"]["pid"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_the_process_that_started_them():
    """A worker started from a thread that has ended still gets SIGKILL when dnnkit's process is killed."""
    script = (
        "import sys, threading, time\n"
        "from dnnkit.child.process import Worker\n"
        "box = []\n"
        "t = threading.Thread(target=lambda: box.append(Worker([sys.executable, '-c', "
        "'import time; time.sleep(120)'])))\n"
        "t.start(); t.join(); time.sleep(0.3)\n"
        "print(box[0].proc.pid, box[0].alive(), flush=True)\n"
        "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        pid, alive = parent.stdout.readline().split()
        assert alive == "True"  # outlived the thread that started it
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # killed, waiting to be reaped by init
            time.sleep(0.05)
        else:
            assert not os.path.exists(f"/proc/{pid}"), "the worker outlived its parent"
    finally:
        parent.kill()
