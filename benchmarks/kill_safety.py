"""SIGKILL `dnnkit run` at random moments; after each kill the folder must hold either no manifest
or a manifest whose every "verified" artifact verifies again, and the same command must then
complete.

    python benchmarks/kill_safety.py [--kills 10] [--seed 0] [--spec models/digits_mlp.toml] [--epochs 5]

Prints one line per kill (when, what the folder held, the re-verification) and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command(spec: str, out: Path, epochs: int, recipe: str) -> list[str]:
    return [sys.executable, "-m", "dnnkit", "run", spec, "--recipe", recipe, "--out", str(out), "--epochs", str(epochs)]


def check_state(out: Path) -> dict:
    """What a killed run left: no manifest, or one whose verified artifacts verify again."""
    manifest_path = out / "manifest.json"
    state = {"manifest": manifest_path.is_file(), "artifact_files": 0, "claimed": 0, "reverified": 0, "ok": True}
    if (out / "artifacts").is_dir():
        state["artifact_files"] = sum(1 for p in (out / "artifacts").iterdir() if not p.name.startswith("."))
    if not state["manifest"]:
        return state
    manifest = json.loads(manifest_path.read_text())  # must parse: it is written atomically
    claimed = [e["name"] for e in manifest["artifacts"] if e["status"] == "verified"]
    state["claimed"] = len(claimed)
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "copy"
        shutil.copytree(out, copy, ignore=shutil.ignore_patterns("run"))
        result = subprocess.run([sys.executable, "-m", "dnnkit", "verify", str(copy), "--json"], capture_output=True,
                                text=True, cwd=ROOT, timeout=900)
        again = {e["name"]: e["status"] for e in json.loads(result.stdout)["artifacts"]}
    state["reverified"] = sum(again.get(n) == "verified" for n in claimed)
    state["ok"] = state["reverified"] == len(claimed)
    return state


def kill_at(cmd: list[str], delay: float) -> float:
    """Start the command, SIGKILL it after ``delay`` seconds (if still running); return when it died."""
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = time.monotonic()
    try:
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    return time.monotonic() - start


def trial(kills: int, seed: int, spec: str, epochs: int, recipe: str, out: Path, log=print) -> dict:
    """Measure a full run, then kill ``kills`` runs at uniform random moments, then complete one."""
    cmd = command(spec, out, epochs, recipe)
    start = time.monotonic()
    full = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    length = time.monotonic() - start
    if full.returncode != 0:
        raise RuntimeError(f"the uninterrupted run failed: {full.stdout[-2000:]}")
    log(f"uninterrupted run: {length:.1f} s")
    rng = random.Random(seed)
    rows = []
    for i in range(kills):
        delay = rng.uniform(0.3, length)
        lived = kill_at(cmd, delay)
        state = check_state(out)
        rows.append({"delay": delay, **state})
        log(f"kill {i + 1:2d} at {delay:5.1f} s (lived {lived:5.1f} s): manifest={'yes' if state['manifest'] else 'no '} "
            f"artifact files={state['artifact_files']} verified claimed={state['claimed']} "
            f"re-verified={state['reverified']} {'ok' if state['ok'] else 'BAD'}")
    final = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {}
    done = final.returncode == 0 and manifest.get("status") == "verified"
    log(f"the same command afterwards: exit {final.returncode}, status {manifest.get('status')}")
    bad = sum(not r["ok"] for r in rows)
    log(f"{kills} kills: {sum(not r['manifest'] for r in rows)} left no manifest, "
        f"{sum(r['manifest'] for r in rows)} a manifest; {bad} bad states; completion afterwards: {done}")
    return {"rows": rows, "completed": done, "bad": bad}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spec", default="models/digits_mlp.toml")
    parser.add_argument("--recipe", default="export/all.toml")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = trial(args.kills, args.seed, args.spec, args.epochs, args.recipe, Path(tmp) / "out")
    sys.exit(0 if result["completed"] and not result["bad"] else 1)


if __name__ == "__main__":
    main()
