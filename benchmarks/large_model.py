"""Large-model export: a 224x224 ResNet50 (23.6 M parameters, random weights, softmax head) through
export/all.toml (calibration: at most --images training images); prints each artifact's conversion and verification
seconds and peak resident memory (each in its own process), the parent's peak and the wall time.

    python benchmarks/large_model.py [--out DIR] [--images N] [--recipe export/all.toml]
    python benchmarks/large_model.py --compare [--out DIR]

With --compare it runs itself and benchmarks/large_model_hand.py (the same conversions written by
hand, one process) as timed subprocesses, then each hand-written step in its own process, and prints
the wall-time ratio, the CPU time of each (what the checks add: the wall time dnnkit's work needs at
the least on this machine's cores) and dnnkit's largest process peak against the largest hand-written
step's.

The images carry no labels: float artifacts are checked element-wise and quantized ones by top-1
agreement with the Keras model (a random network's near-uniform scores make that a hard test).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="large-model")
    parser.add_argument("--images", type=int, default=164)
    parser.add_argument("--recipe", default=str(ROOT / "export" / "all.toml"))
    parser.add_argument("--compare", action="store_true", help="against the hand-written script (see above)")
    args = parser.parse_args()
    if args.compare:
        return compare(args)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    import dnnkit

    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=10)
    x = np.random.default_rng(0).uniform(0, 255, (args.images, 224, 224, 3)).astype("float32")
    start = time.perf_counter()
    manifest = dnnkit.export(model, args.recipe, args.out, data=(x, None))
    wall = time.perf_counter() - start
    print(f"ResNet50 224x224, {manifest['reference']['params']:,} parameters, {args.images} images: "
          f"{wall:.1f} s, status {manifest['status']}")
    print(f"{'artifact':22s} {'convert s':>9s} {'peak MB':>8s} {'verify s':>9s} {'peak MB':>8s}  status")
    for e in manifest["artifacts"]:
        c, v = e.get("conversion") or {}, e.get("verification") or {}
        print(f"{e['name']:22s} {c.get('seconds') or 0:9.1f} {c.get('peak_rss_mb') or 0:8.0f} "
              f"{v.get('seconds') or 0:9.1f} {v.get('peak_rss_mb') or 0:8.0f}  {e['status']}")
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"parent peak RSS {parent:.0f} MB (model built and exported from this process); "
          f"manifest: {Path(args.out) / 'manifest.json'}")
    print(json.dumps({"wall_s": round(wall, 1), "parent_peak_rss_mb": round(parent)}))
    return 0


def compare(args: argparse.Namespace) -> int:
    import subprocess

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = Path(args.out)

    cpu: dict[str, float] = {}

    def timed(argv: list[str], name: str = "") -> tuple[float, str]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[name] = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return time.perf_counter() - start, done.stdout

    hand = str(ROOT / "benchmarks" / "large_model_hand.py")
    hand_wall, _ = timed([sys.executable, hand, str(out / "hand"), "--images", str(args.images)], "hand")
    ours_wall, text = timed([sys.executable, __file__, "--out", str(out / "dnnkit"), "--images", str(args.images),
                             "--recipe", args.recipe], "dnnkit")
    print(text.strip())
    manifest = json.loads((out / "dnnkit" / "manifest.json").read_text())
    peaks = {"parent": json.loads(text.strip().splitlines()[-1])["parent_peak_rss_mb"]}
    for e in manifest["artifacts"]:
        for stage in ("conversion", "verification"):
            peaks[f"{e['name']} {stage}"] = (e.get(stage) or {}).get("peak_rss_mb") or 0
    worst = max(peaks, key=peaks.get)
    steps = {}
    for step in ("saved_model", "tflite_fp32", "tflite_fp16", "tflite_dynamic_int8", "tflite_int8", "onnx_fp32",
                 "onnx_int8"):
        _, line = timed([sys.executable, hand, str(out / "hand_steps"), "--step", step, "--images", str(args.images)])
        steps[step] = json.loads(line.strip().splitlines()[-1])["peak_rss_mb"]
    biggest = max(steps, key=steps.get)
    print("\nhand-written steps, each in its own process, peak RSS MB: "
          + ", ".join(f"{k} {v}" for k, v in steps.items()))
    print(f"wall: dnnkit (build + export + verify) {ours_wall:.1f} s, hand-written (build + convert + run) "
          f"{hand_wall:.1f} s, ratio {ours_wall / hand_wall:.2f}x")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    stages = manifest.get("timings") or {}
    print(f"CPU (user + sys, every process): dnnkit {cpu['dnnkit']:.0f} s, hand-written {cpu['hand']:.0f} s, "
          f"ratio {cpu['dnnkit'] / cpu['hand']:.2f}x; on {cores} cores dnnkit's work needs at least "
          f"{cpu['dnnkit'] / cores:.0f} s of wall time ({cpu['dnnkit'] / cores / hand_wall:.2f}x the hand-written "
          f"wall), the hand-written script uses {cpu['hand'] / hand_wall:.2f} of its {cores} cores")
    print("dnnkit stages (s): " + ", ".join(f"{k[:-2]} {v:.1f}" for k, v in stages.items()
                                           if k.endswith("_s") and isinstance(v, (int, float))))
    if stages.get("cpu_s"):  # the export's own processes (the benchmark's model building is outside it)
        print("dnnkit export CPU by process (s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages["cpu_s"].items()))
    print(f"peak RSS: dnnkit's largest process {peaks[worst]:.0f} MB ({worst}), hand-written's largest step "
          f"{steps[biggest]} MB ({biggest}), ratio {peaks[worst] / steps[biggest]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
