"""The parent/child protocol (dnnkit.child) against a fake worker that crashes, hangs, prints
garbage or ends early: no TensorFlow, time limits of a second or two."""

import json
import sys
import time

import pytest

from dnnkit.child import run_items

FAKE = r'''
import json, os, signal, sys, time
modes = json.loads(sys.argv[1])
names = sys.argv[2:]
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
for name in names:
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
'''


@pytest.fixture()
def fake(tmp_path):
    path = tmp_path / "fake_worker.py"
    path.write_text(FAKE)
    return path


def _run(fake, names, modes, timeout=1.0, startup=2.0):
    starts = []

    def command(pending):
        starts.append(list(pending))
        return [sys.executable, str(fake), json.dumps(modes), *pending]

    begin = time.monotonic()
    results = run_items(command, names, {n: timeout for n in names}, startup_timeout=startup,
                        action="verification", process="verification process")
    return results, starts, time.monotonic() - begin


def test_all_done_in_one_worker(fake):
    results, starts, _ = _run(fake, ["a", "b", "c"], {})
    assert {n: r["status"] for n, r in results.items()} == {"a": "done", "b": "done", "c": "done"}
    assert results["b"]["info"] == {"name": "b"} and starts == [["a", "b", "c"]]


def test_crash_fails_only_that_item_and_a_fresh_worker_goes_on(fake):
    results, starts, _ = _run(fake, ["a", "b", "c"], {"b": "crash"})
    assert results["b"]["status"] == "failed"
    assert results["b"]["reason"] == "verification process crashed (killed by signal SIGSEGV)"
    assert results["a"]["status"] == results["c"]["status"] == "done"
    assert starts == [["a", "b", "c"], ["c"]]


def test_hang_is_cut_at_its_limit(fake):
    results, starts, seconds = _run(fake, ["a", "b", "c"], {"b": "hang"}, timeout=1.0)
    assert results["b"] == {**results["b"], "status": "failed", "reason": "verification timed out after 1 s"}
    assert results["c"]["status"] == "done" and starts[-1] == ["c"]
    assert seconds < 10


def test_garbage_lines_are_ignored(fake):
    results, _, _ = _run(fake, ["a", "b"], {"a": "garbage"})
    assert {n: r["status"] for n, r in results.items()} == {"a": "done", "b": "done"}
    assert "someone_else" not in results


def test_error_event_fails_the_item_with_its_reason(fake):
    results, starts, _ = _run(fake, ["a", "b"], {"a": "error"})
    assert results["a"]["status"] == "failed" and results["a"]["reason"] == "it broke"
    assert results["b"]["status"] == "done" and len(starts) == 1


def test_worker_that_never_answers(fake):
    results, _, seconds = _run(fake, ["a", "b"], {"_startup": "hang"}, startup=1.0)
    assert all(r["reason"] == "verification process did not respond within 1 s" for r in results.values())
    assert seconds < 10


def test_worker_that_exits_at_once(fake):
    results, starts, _ = _run(fake, ["a", "b"], {"_startup": "exit"})
    assert all(r["reason"] == "verification process ended early (exit code 3)" for r in results.values())
    assert len(starts) == 1  # no progress: not restarted forever


def test_worker_that_stops_between_items_is_restarted(fake):
    results, starts, _ = _run(fake, ["a", "b"], {"a": "exit_after"})
    assert {n: r["status"] for n, r in results.items()} == {"a": "done", "b": "done"}
    assert starts == [["a", "b"], ["b"]]


SERVED = r'''
import json, sys
from dnnkit.child import serve_items
names = sys.argv[1:]
sys.exit(serve_items([{"name": n} for n in names], lambda item: {"twice": item["name"] * 2},
                     fault_variable="FAKE_FAULT", what="fake"))
'''


def test_serve_items_with_injected_faults(tmp_path, monkeypatch):
    # dnnkit's own worker loop (no TensorFlow), faults injected through the environment
    script = tmp_path / "served.py"
    script.write_text(SERVED)
    monkeypatch.setenv("FAKE_FAULT", "b:crash,c:error,d:hang")
    results = run_items(lambda pending: [sys.executable, str(script), *pending], ["a", "b", "c", "d", "e"],
                        {n: 1.0 for n in "abcde"}, startup_timeout=20.0)
    assert results["a"]["info"] == {"twice": "aa"} and results["e"]["info"] == {"twice": "ee"}
    assert results["b"]["reason"] == "converter process crashed (killed by signal SIGSEGV)"
    assert results["c"]["reason"] == "injected fake error"
    assert results["d"]["reason"] == "conversion timed out after 1 s"
