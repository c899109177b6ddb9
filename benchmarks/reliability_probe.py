"""Probes of an output folder from outside (issue 24, part A, and the folder items of part B): bad input,
faults, concurrency and tampering, each through the ``dnnkit`` command line as a user runs it.

    python benchmarks/reliability_probe.py [--work DIR] [--only NAME ...]

Each probe states what a correct answer is (an exit code; for errors one line on stderr and nothing
published; for folders a manifest that tells the truth) and is classed as

- clean: the answer expected,
- traceback: a Python traceback reached the terminal,
- wrong exit: another exit code (bad input is 2, a failed check 1, SIGTERM 143),
- misleading: a folder or an answer says "verified" of something that is not,
- not run: the machine cannot set the probe up (a tmpfs needs root).

Prints one line per probe and the counts (probes, clean, tracebacks, wrong exit codes, misleading). Exit 1 if any
probe is not clean.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
STRICT = ('name = "strict"\n[verify]\natol_fp16 = 1e-9\nrtol_fp16 = 0.0\nfp16_factor = 0.0\n'
          '[[artifacts]]\nname = "tflite_fp16"\nformat = "tflite"\nprecision = "fp16"\n')
ONNX = ('name = "onnx"\n[[artifacts]]\nname = "onnx_fp32"\nformat = "onnx"\nprecision = "fp32"\n')


def dnnkit(*args: str, cwd: Path = ROOT, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dnnkit", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=timeout)


def lines(stderr: str) -> list[str]:
    """dnnkit's own stderr lines (TensorFlow's C++ start-up chatter left out)."""
    return [ln for ln in stderr.splitlines() if ln.strip() and not ln.startswith(
        ("I0000", "W0000", "E0000", "WARNING: All log messages", "To enable the following"))]


def manifest(out: Path) -> dict | None:
    path = out / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else None


class Probes:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.rows: list[tuple[str, str, str]] = []
        self._model: Path | None = None
        self._other: Path | None = None
        self._verified: Path | None = None

    # fixtures, made once ------------------------------------------------------------------------------------------
    def model(self, other: bool = False) -> Path:
        """A small digits Dense classifier (``other``: a second, different one)."""
        attr = "_other" if other else "_model"
        if getattr(self, attr) is None:
            path = self.work / ("other.keras" if other else "model.keras")
            code = ("import keras, numpy as np, sys\nfrom sklearn.datasets import load_digits\n"
                    "d = load_digits(); x = (d.data / 16).astype('float32')\n"
                    f"keras.utils.set_random_seed({2 if other else 1})\n"
                    "m = keras.Sequential([keras.Input((64,), name='pixels'), keras.layers.Dense("
                    f"{24 if other else 32}, activation='relu'), keras.layers.Dense(10, name='logits')])\n"
                    "m.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True))\n"
                    "m.fit(x, d.target, epochs=3, verbose=0); m.save(sys.argv[1])\n")
            subprocess.run([sys.executable, "-c", code, str(path)], check=True, env=ENV, capture_output=True)
            setattr(self, attr, path)
        return getattr(self, attr)

    def verified(self) -> Path:
        """An export folder that verified (server ONNX fp32), copied by each probe that changes it."""
        if self._verified is None:
            recipe = self.work / "onnx.toml"
            recipe.write_text(ONNX)
            out = self.work / "verified"
            result = dnnkit("export", str(self.model()), "--recipe", str(recipe), "--data", "digits", "--out", str(out))
            assert result.returncode == 0, result.stdout + result.stderr
            self._verified = out
        return self._verified

    def copy(self, name: str) -> Path:
        dst = self.work / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(self.verified(), dst)
        return dst

    # classification -----------------------------------------------------------------------------------------------
    def record(self, name: str, result: subprocess.CompletedProcess | None, *, expect: int, one_line: bool = True,
               misleading: bool = False, note: str = "") -> None:
        if result is None:
            self.rows.append((name, "not run", note))
            return
        err = lines(result.stderr)
        if "Traceback (most recent call last)" in result.stdout + result.stderr:
            verdict = "traceback"
        elif misleading:
            verdict = "misleading"
        elif result.returncode != expect or (one_line and expect in (2, 143) and len(err) != 1):
            verdict = "wrong exit"
        else:
            verdict = "clean"
        detail = note or (err[-1][:150] if err else result.stdout.strip().splitlines()[-1][:150]
                          if result.stdout.strip() else "")
        self.rows.append((name, verdict, f"rc {result.returncode}: {detail}"))

    def bad_input(self, name: str, args: list[str], out: Path | None, fragment: str) -> None:
        """Bad input: exit 2, one line naming it, nothing written."""
        result = dnnkit(*args)
        written = out is not None and out.exists()
        wrong = fragment not in result.stderr
        self.record(name, result, expect=2, misleading=False,
                    note=("wrote into the output folder; " if written else "")
                    + (f"message lacks {fragment!r}; " if wrong else "") + " ".join(lines(result.stderr))[:150])
        if written or wrong:
            self.rows[-1] = (name, "wrong exit" if self.rows[-1][1] == "clean" else self.rows[-1][1], self.rows[-1][2])

    # the probes ---------------------------------------------------------------------------------------------------
    def verify_criteria_from_the_folder(self) -> None:
        """A strict export fails; loosening manifest.json's recorded criteria must not make it verified."""
        recipe = self.work / "strict.toml"
        recipe.write_text(STRICT)
        out = self.work / "strict"
        shutil.rmtree(out, ignore_errors=True)
        dnnkit("export", str(self.model()), "--recipe", str(recipe), "--data", "digits", "--out", str(out))
        m = manifest(out)
        m["recipe"]["verify"].update(atol_fp16=1.0, rtol_fp16=1.0)
        (out / "manifest.json").write_text(json.dumps(m))
        result = dnnkit("verify", str(out), "--recipe", str(recipe))
        self.record("verify --recipe strict after the manifest was loosened", result, expect=1,
                    misleading=manifest(out)["status"] == "verified")
        m = manifest(out)
        m["recipe"]["verify"].update(atol_fp16=1.0, rtol_fp16=1.0)
        (out / "manifest.json").write_text(json.dumps(m))
        result = dnnkit("verify", str(out))
        # the defaults pass this fp16 file honestly (atol_fp16 1e-3): what matters is that it says so
        self.record("verify (defaults) says which criteria it used", result, expect=0,
                    misleading="with dnnkit's default criteria" not in result.stdout + result.stderr)

    def two_writers(self) -> None:
        """Two exports of different models into one folder at once: one must be refused, naming the holder."""
        out = self.work / "shared"
        shutil.rmtree(out, ignore_errors=True)
        recipe = self.work / "onnx.toml"
        recipe.write_text(ONNX)
        args = ["export", "--recipe", str(recipe), "--data", "digits", "--out", str(out)]
        first = subprocess.Popen([sys.executable, "-m", "dnnkit", args[0], str(self.model()), *args[1:]],
                                 cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        second = dnnkit(args[0], str(self.model(other=True)), *args[1:], "--overwrite")
        stdout, stderr = first.communicate(timeout=900)
        m = manifest(out)
        mixed = m is None or m["status"] != "verified" or m["origin"]["source"].endswith("other.keras") if m else True
        self.record("a second writer while the first writes", second, expect=2,
                    misleading=first.returncode != 0 or mixed,
                    note=" ".join(lines(second.stderr))[:150] if "being written by pid" in second.stderr else
                    f"no refusal naming the holder: {' '.join(lines(second.stderr))[:120]}")
        if "being written by pid" not in second.stderr and self.rows[-1][1] == "clean":
            self.rows[-1] = (self.rows[-1][0], "wrong exit", self.rows[-1][2])

    def _interrupt(self, name: str, sig: int) -> tuple[Path, subprocess.CompletedProcess, bytes]:
        """Re-export into a copy of the verified folder with another recipe; send ``sig`` two seconds after its
        staging folder appears (mid-conversion)."""
        out = self.copy(name)
        before = (out / "manifest.json").read_bytes()
        proc = subprocess.Popen([sys.executable, "-m", "dnnkit", "export", str(self.model()), "--recipe", "all",
                                 "--data", "digits", "--out", str(out)], cwd=ROOT, env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        staging = out.parent / f".{out.name}.dnnkit-staging"
        deadline = time.monotonic() + 120
        while not staging.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=300)
        return out, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), before

    def _state(self, out: Path, before: bytes) -> str:
        """``previous`` (the folder as it was), ``new`` (the new export, complete), or what is wrong."""
        m = manifest(out)
        files = sorted(p.name for p in (out / "artifacts").iterdir()) if (out / "artifacts").is_dir() else []
        if m is not None and (out / "manifest.json").read_bytes() == before and files == ["onnx_fp32.onnx"]:
            return "previous"
        if m is not None and len(m["artifacts"]) == 7 and len(files) == sum(e["path"].startswith("artifacts/")
                                                                             for e in m["artifacts"]):
            return "new"
        return f"mixed: manifest {'absent' if m is None else len(m['artifacts'])} entries, artifacts/ {files}"

    def killed_reexport(self) -> None:
        """SIGKILL a re-export mid-conversion: the previous complete state stays, and verifies again."""
        out, _, before = self._interrupt("killed", signal.SIGKILL)
        state = self._state(out, before)
        again = dnnkit("verify", str(out))
        self.record("SIGKILL mid re-export, then verify", again, expect=0, misleading=state != "previous",
                    note=f"folder after the kill: {state}; verify rc {again.returncode}")

    def sigterm(self) -> None:
        out, result, before = self._interrupt("terminated", signal.SIGTERM)
        state = self._state(out, before)
        self.record("SIGTERM mid re-export", result, expect=143, misleading=state != "previous",
                    note=f"folder after SIGTERM: {state}; {' '.join(lines(result.stderr))[:120]}")

    def reference_gone(self) -> None:
        out = self.copy("noref")
        shutil.rmtree(out / "reference")
        result = dnnkit("verify", str(out))
        self.record("verify after reference/ was deleted", result, expect=1,
                    misleading=(manifest(out) or {}).get("status") == "verified")

    def foreign_folder(self) -> None:
        out = self.copy("foreign")
        self.bad_input("export of another model into an export folder", [
            "export", str(self.model(other=True)), "--recipe", "server-onnx", "--data", "digits", "--out", str(out)],
            None, "--overwrite")
        notes = self.work / "notes"
        shutil.rmtree(notes, ignore_errors=True)
        notes.mkdir()
        (notes / "notes.txt").write_text("mine")
        self.bad_input("export into a folder holding notes.txt", [
            "export", str(self.model()), "--recipe", "server-onnx", "--data", "digits", "--out", str(notes)],
            None, "notes.txt")

    def filesystems(self) -> None:
        self.bad_input("--out /proc/sys", ["export", str(self.model()), "--recipe", "server-onnx", "--data", "digits",
                                           "--out", "/proc/sys"], None, "/proc/sys")
        self.bad_input("--out /proc/x", ["export", str(self.model()), "--recipe", "server-onnx", "--data", "digits",
                                         "--out", "/proc/x"], None, "/proc")
        a_file = self.work / "a_file"
        a_file.write_text("x")
        self.bad_input("--out an existing file", ["export", str(self.model()), "--recipe", "server-onnx", "--data",
                                                  "digits", "--out", str(a_file)], None, "is a file")
        for name, size, ro in (("read-only filesystem", "64m", True), ("a disk with 64 KB free", "64k", False)):
            mnt = self.work / f"mnt_{size}"
            mnt.mkdir(exist_ok=True)
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                                     capture_output=True).returncode == 0
            if not mounted:
                self.record(name, None, expect=1, note="tmpfs cannot be mounted here (needs root)")
                continue
            try:
                out = mnt / "out"
                if ro:
                    shutil.copytree(self.verified(), out)
                    subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
                result = dnnkit("export", str(self.model()), "--recipe", "server-onnx", "--data", "digits",
                                "--out", str(out), *(["--overwrite"] if ro else []))
                err = lines(result.stderr)
                self.record(name, result, expect=2 if ro else 1, one_line=True,
                            misleading=result.returncode == 0,
                            note=f"{len(err)} line(s): {' '.join(err)[:140]}")
                if len(err) != 1 and self.rows[-1][1] == "clean":
                    self.rows[-1] = (name, "wrong exit", self.rows[-1][2])
            finally:
                subprocess.run(["umount", str(mnt)], capture_output=True)

    def bad_files(self) -> None:
        good = self.work / "good.npz"
        from sklearn.datasets import load_digits
        d = load_digits()
        np.savez(good, x_train=(d.data / 16).astype("float32"), y_train=d.target)
        cut = self.work / "truncated.npz"
        cut.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
        out = self.work / "o_npz"
        self.bad_input("a truncated .npz", ["export", str(self.model()), "--recipe", "server-onnx", "--data",
                                            str(cut), "--out", str(out)], out, "truncated.npz")
        spec = self.work / "huge.toml"
        spec.write_text((ROOT / "models" / "digits_mlp.toml").read_text().replace("units = [128, 64]",
                                                                                 "units = [100000000000, 64]"))
        out = self.work / "o_units"
        self.bad_input("units = [100000000000, 64]", ["run", str(spec), "--recipe", "server-onnx", "--out", str(out)],
                       out, "model.units")
        runs = self.work / "runs.toml"
        runs.write_text(ONNX.replace('name = "onnx"\n', 'name = "onnx"\n[verify]\nlatency_runs = 1e20\n'))
        out = self.work / "o_runs"
        self.bad_input("latency_runs = 1e20", ["export", str(self.model()), "--recipe", str(runs), "--data", "digits",
                                               "--out", str(out)], out, "latency_runs")
        for name, edit in (("config.json padded to 300 MB", lambda c: c + b" " * (300 << 20)),
                           ("units = 2e8 in config.json", lambda c: c.replace(b'"units": 32', b'"units": 200000000'))):
            path = self.work / f"{name.split()[0]}_{len(self.rows)}.keras"
            with zipfile.ZipFile(self.model()) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
                for member in src.namelist():
                    blob = src.read(member)
                    dst.writestr(member, edit(blob) if member == "config.json" else blob)
            out = self.work / f"o_{len(self.rows)}"
            self.bad_input(name, ["export", str(path), "--recipe", "server-onnx", "--data", "digits", "--out",
                                  str(out)], out, "config.json")
        out = self.work / "o_goal"
        self.bad_input("--max-degradation 5", ["optimize", str(self.model()), "--data", "digits", "--target", "tflite",
                                               "--max-degradation", "5", "--out", str(out)], out, "0.05")

    def recipes_by_name(self) -> None:
        with tempfile.TemporaryDirectory() as elsewhere:
            result = dnnkit("export", str(self.model()), "--recipe", "server-onnx", "--data", "digits", "--out",
                            str(Path(elsewhere) / "o"), cwd=Path(elsewhere))
            m = manifest(Path(elsewhere) / "o")
            names = [o["name"] for o in (m or {}).get("reference", {}).get("outputs", [])]
            self.record("--recipe server-onnx from another folder; names kept", result, expect=0,
                        misleading=names != ["logits"], note=f"output names {names}")

    def run(self, only: list[str]) -> None:
        probes: list[Callable[[], None]] = [self.bad_files, self.filesystems, self.foreign_folder,
                                            self.verify_criteria_from_the_folder, self.reference_gone,
                                            self.recipes_by_name, self.two_writers, self.killed_reexport, self.sigterm]
        for probe in probes:
            if only and probe.__name__ not in only:
                continue
            start = len(self.rows)
            try:
                probe()
            except Exception as exc:  # noqa: BLE001 - a probe that cannot run is reported, the others go on
                self.rows.append((probe.__name__, "not run", f"{type(exc).__name__}: {exc}"[:200]))
            for name, verdict, detail in self.rows[start:]:
                print(f"{verdict:<10} {name}: {detail}", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument("--only", nargs="*", default=[], help="probe methods to run (default: all)")
    args = p.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="dnnkit-probe-"))
    work.mkdir(parents=True, exist_ok=True)
    probes = Probes(work)
    probes.run(args.only)
    counts = {k: sum(1 for _, v, _ in probes.rows if v == k)
              for k in ("clean", "traceback", "wrong exit", "misleading", "not run")}
    print(f"probes {len(probes.rows)}: clean {counts['clean']}, tracebacks {counts['traceback']}, "
          f"wrong exit codes {counts['wrong exit']}, misleading \"verified\" {counts['misleading']}, "
          f"not run {counts['not run']}")
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if counts["clean"] == len(probes.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
