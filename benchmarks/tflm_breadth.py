"""TensorFlow Lite Micro across the matrix's int8 files (issue 27, part 5).

For each export folder under the given ``benchmarks/byo_matrix.py`` output folders (``DIR/MODEL/manifest.json``),
each full-integer TFLite artifact (int8, 16x8) is loaded in TFLite Micro's interpreter in a child process
(:func:`dnnkit.verification.tflm.tflm_check`) and run on the first ``--inputs`` rows of the folder's test split
(``reference/data.npz``). Printed per file: whether TFLM runs it (or the ops it lacks, or how it failed), its
measured arena (smallest ``arena_size`` that allocates; head and tail), dnnkit's two estimates beside it (the
greedy activation plan, over TFLM's head; the plan + TFLM's modelled persistent tail, over the smallest arena) and
LiteRT's own arena span, TFLM's distance from LiteRT's reference kernels in output quanta,
and TFLM's top-1 agreement with LiteRT's default kernels (the ones the artifact was verified with) on the same
rows. A JSON file with every figure is written beside the table.

    python benchmarks/tflm_breadth.py --from DIR [DIR ...] [--inputs 50] [--out tflm_breadth.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="dirs", nargs="+", required=True, help="byo_matrix.py output folders")
    parser.add_argument("--inputs", type=int, default=50, help="test rows run per file (TFLM runs reference code)")
    parser.add_argument("--out", default="tflm_breadth.json")
    args = parser.parse_args()

    from int8_hard_tflite import run_tflite

    from dnnkit.config.device import PROFILES, RUNTIME_FLASH_KB
    from dnnkit.verification.budget import budget
    from dnnkit.verification.device_fit import device_fit
    from dnnkit.verification.tflm import available, tflm_check

    if available():
        print(available())
        return 2
    results = []
    for manifest_path in sorted(p for d in args.dirs for p in Path(d).glob("*/manifest.json")):
        folder = manifest_path.parent
        manifest = json.loads(manifest_path.read_text())
        for entry in manifest["artifacts"]:
            if entry["format"] != "tflite" or entry["precision"] not in ("int8", "int16x8"):
                continue
            path = folder / entry["path"]
            if not path.is_file():
                continue
            row = {"model": folder.name, "artifact": entry["name"], "status_in_matrix": entry["status"],
                   "bytes": path.stat().st_size}
            fit = device_fit(path)
            row.update(estimate=fit["arena_estimate_bytes"], tflm_estimate=fit["tflm_arena_estimate_bytes"],
                       litert_span=fit["interpreter_arena_bytes"], ops=len(fit["ops"]))
            with np.load(folder / "reference" / "data.npz", allow_pickle=False) as data:
                x = data["x_test"][:args.inputs].astype(np.float32) if "x_test" in data else {
                    k.split("/", 1)[1]: data[k][:args.inputs].astype(np.float32)
                    for k in data if k.startswith("x_test/")} or None
            start = time.perf_counter()
            if fit["tflm_unsupported_ops"]:
                row.update(tflm="skipped", reason="no TFLM kernel for " + ", ".join(fit["tflm_unsupported_ops"]))
            elif x is None:
                row.update(tflm="skipped", reason="no test split in reference/data.npz")
            else:
                facts, outputs = tflm_check(path, x, args.inputs)
                row["tflm"] = facts["status"]
                judged = {name: budget({**fit, "tflm": facts}, device) for name, device in PROFILES.items()}
                row["fits"] = [name for name, b in judged.items() if b["verdict"] == "fits"]
                row["ram_need"] = next(iter(judged.values())).get("ram", {}).get("need_bytes")
                if facts["status"] == "ran":
                    a = facts["arena"]
                    row.update(arena_total=a["total"], arena_head=a["head"], arena_tail=a["tail"],
                               smallest_arena=a["smallest_arena_size"],
                               max_quanta_vs_litert_ref=max((c.get("max_quanta", 0)
                                                             for c in facts["vs_litert_reference"]), default=0))
                    if not isinstance(x, dict):  # several inputs: the distance from LiteRT's reference kernels only
                        lite = run_tflite(path, x[:len(outputs[0])])[0]  # LiteRT's default kernels, dequantized
                        if lite.ndim == 2 and lite.shape[-1] > 1:
                            row["top1_tflm_vs_litert"] = float((lite.argmax(-1) == outputs[0].argmax(-1)).mean())
                        row["max_abs_tflm_vs_litert"] = float(np.max(np.abs(lite - outputs[0])))
                else:
                    row["reason"] = facts.get("reason")
            row["seconds"] = round(time.perf_counter() - start, 1)
            results.append(row)
            print(json.dumps(row), flush=True)
    print("\nmodel / artifact | TFLM | smallest arena B (head + tail) | plan estimate / head | arena estimate / "
          "smallest | LiteRT span / smallest | quanta vs LiteRT ref | top-1 TFLM vs LiteRT | flash KiB, RAM KiB "
          "needed | fits (profiles)")
    for r in results:
        if r["tflm"] != "ran":
            print(f"{r['model']} / {r['artifact']} | {r['tflm']}: {r.get('reason')} | - | - | - | - | - | - | - | -")
            continue
        top1 = f"{r['top1_tflm_vs_litert']:.3f}" if "top1_tflm_vs_litert" in r else "-"
        print(f"{r['model']} / {r['artifact']} | ran | {r['smallest_arena']} ({r['arena_head']} + {r['arena_tail']}) | "
              f"{r['estimate'] / r['arena_head']:.2f} | {r['tflm_estimate'] / r['smallest_arena']:.2f} | "
              f"{r['litert_span'] / r['smallest_arena']:.2f} | {r['max_quanta_vs_litert_ref']} | {top1} | "
              f"{r['bytes'] / 1024 + RUNTIME_FLASH_KB:.0f}, {r['ram_need'] / 1024:.0f} | "
              f"{', '.join(r['fits']) or 'none'}")
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"\n{len(results)} files; {sum(r['tflm'] == 'ran' for r in results)} ran in TFLM; results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
