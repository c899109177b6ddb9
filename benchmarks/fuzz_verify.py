"""Fuzz figures: the corpus of tests/fuzz_corpus.py through `dnnkit verify` and `dnnkit export`.

    python benchmarks/fuzz_verify.py [--seed 0] [--spec models/digits_mlp.toml]

Trains the spec briefly, exports it with export/all.toml, then:
- every mutated artifact (bit flips, truncations, zeroed regions, wrong formats; TFLite, ONNX,
  SavedModel) through one `dnnkit verify`: counts by outcome and failing check, crashes and
  time-outs of the runtimes (contained), tracebacks of dnnkit, "verified" for a changed file;
- every damaged `.keras` archive through `dnnkit export`: exit codes, one-line errors, anything
  written.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def dnnkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dnnkit", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=3600)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spec", default="models/digits_mlp.toml")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    from fuzz_corpus import artifact_corpus, keras_corpus, write_fuzz_manifest

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "export"
        made = dnnkit("run", args.spec, "--epochs", str(args.epochs), "--out", str(base))
        assert made.returncode == 0, made.stdout[-2000:]
        fuzz = Path(tmp) / "fuzz"
        shutil.copytree(base, fuzz)
        entries = artifact_corpus(fuzz, fuzz / "mutated", seed=args.seed)
        write_fuzz_manifest(fuzz, entries)
        start = time.monotonic()
        result = dnnkit("verify", str(fuzz), "--json")
        seconds = time.monotonic() - start
        manifest = json.loads(result.stdout)
        arts = manifest["artifacts"]
        by_format = collections.Counter(e["format"] for e in arts)
        print(f"artifacts: {len(arts)} mutated ({dict(by_format)}), one `dnnkit verify` in {seconds:.1f} s, "
              f"exit {result.returncode}")
        print(f"  verified (a changed file passing): {sum(e['status'] == 'verified' for e in arts)}")
        print(f"  tracebacks of dnnkit: {int('Traceback' in result.stdout + result.stderr)}; "
              f"stderr lines: {len(result.stderr.splitlines())}")
        runtime = [f["message"] for e in arts for f in e["failures"] if f["check"] == "runtime"]
        print(f"  runtime crashes contained: {sum('crashed' in m for m in runtime)}; "
              f"time-outs: {sum('timed out' in m for m in runtime)}")
        second = collections.Counter(next((f["check"] for f in e["failures"] if f["check"] != "sha256"), "sha256 only")
                                     for e in arts)
        print(f"  the check that failed after sha256: {dict(second)}")
        cases = keras_corpus(base / "reference" / "model.keras", Path(tmp) / "keras")
        codes, one_line, written = collections.Counter(), 0, 0
        for case, path in cases:
            out = Path(tmp) / "kout" / case
            r = dnnkit("export", str(path), "--recipe", "export/server-onnx.toml", "--data", "digits", "--out", str(out))
            codes[r.returncode] += 1
            one_line += len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
            written += out.exists()
        print(f".keras archives: {len(cases)} through `dnnkit export`: exit codes {dict(codes)}, "
              f"one-line errors {one_line}, output folders written {written}")


if __name__ == "__main__":
    main()
