"""dnnkit's TFLite int8 (quantization ladder) against ai-edge-quantizer on the same fp32 file (issue 26, part 3).

For each model of a ``benchmarks/byo_matrix.py`` output folder (its trained reference ``model.keras``, its data
``data.npz`` and its fp32 TFLite artifact), ai-edge-quantizer 0.10 quantizes dnnkit's ``tflite_fp32.tflite``
with its static recipes (``static_wi8_ai8`` with min/max ranges, with MSE ranges, with OCTAV ranges, and
``static_wi8_ai16``) calibrated on the same training-split inputs dnnkit calibrated on (the first ``samples``);
dnnkit's own int8 file is the matrix's ``tflite_int8.tflite`` (whatever rung verified it). Every file is run in
LiteRT on the same test split and compared with the Keras model: top-1 agreement, accuracy drop, ops left float,
size, batch-1 p50, and the search/quantization seconds (dnnkit: its manifest's ladder and fallback stages,
which search the TFLite and ONNX int8 files together, plus the first conversion).

ai-edge-quantizer is not a dnnkit dependency: ``pip install -e '.[bench]'``.

    python benchmarks/int8_hard_tflite.py --from BYO_OUT [--models EfficientNetB0 MobileNetV2 ConvNeXtTiny]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLOAT_TYPES = (np.float32, np.float16)


def run_tflite(path: Path, x: np.ndarray) -> tuple[np.ndarray, float, int]:
    """(outputs on ``x`` one input at a time, batch-1 p50 ms, ops computing in float)."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], [1, *x.shape[1:]])
    it.allocate_tensors()
    s_in, z_in = inp["quantization"]
    s_out, z_out = out["quantization"]
    outputs, times = [], []
    for row in x:
        value = row[None].astype(np.float32)
        if inp["dtype"] != np.float32:
            value = np.clip(np.round(value / s_in + z_in), np.iinfo(inp["dtype"]).min,
                            np.iinfo(inp["dtype"]).max).astype(inp["dtype"])
        it.set_tensor(inp["index"], value)
        start = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - start)
        y = it.get_tensor(out["index"])[0]
        outputs.append((y.astype(np.float32) - z_out) * s_out if out["dtype"] != np.float32 else y)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    float_ops = 0
    for op in it._get_ops_details():  # noqa: SLF001 - LiteRT has no public op graph
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):
            continue
        outs = [tensors[i]["dtype"] for i in op["outputs"] if i in tensors]
        float_ops += any(d in FLOAT_TYPES for d in outs)
    return np.array(outputs), float(np.median(times[len(times) // 10:]) * 1000), float_ops


def aeq_files(fp32: Path, calibration: np.ndarray, out: Path) -> dict[str, tuple[Path | None, float, str]]:
    """ai-edge-quantizer's files of ``fp32``: per recipe, (path or None, seconds, error)."""
    from ai_edge_quantizer import quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    from ai_edge_litert.interpreter import Interpreter

    signature = Interpreter(model_path=str(fp32)).get_signature_list()
    key = next(iter(signature))
    input_name = signature[key]["inputs"][0]
    samples = [{input_name: row[None].astype(np.float32)} for row in calibration]
    recipes = {"aeq static_wi8_ai8 minmax": recipe.static_wi8_ai8(),
               "aeq static_wi8_ai8 mse": recipe.static_wi8_ai8(AlgorithmName.MSE),
               "aeq static_wi8_ai8 octav": recipe.static_wi8_ai8(AlgorithmName.OCTAV),
               "aeq static_wi8_ai16": recipe.static_wi8_ai16(),
               "aeq wi8_ai8, SE/swish ops ai16": _pattern_recipe(recipe, "ai16"),
               "aeq wi8_ai8, SE/swish ops float": _pattern_recipe(recipe, "float")}
    files = {}
    out.mkdir(parents=True, exist_ok=True)
    for label, rp in recipes.items():
        path = out / (re.sub(r"[^A-Za-z0-9_.-]+", "_", label) + ".tflite")
        start = time.perf_counter()
        try:
            qt = quantizer.Quantizer(str(fp32), rp)
            calibrated = qt.calibrate({key: samples}) if qt.need_calibration else None
            qt.quantize(calibrated, enable_progress_report=False).export_model(str(path), overwrite=True)
            files[label] = (path, time.perf_counter() - start, "")
        except Exception as exc:  # noqa: BLE001 - the row records it
            files[label] = (None, time.perf_counter() - start, f"{type(exc).__name__}: {str(exc)[:200]}")
    return files


PATTERN_OPS = ("LOGISTIC", "MUL", "MEAN", "HARD_SWISH")  # the squeeze-excite gate and swish / hard-swish
INT16_PATTERN_OPS = PATTERN_OPS[:3]  # ai-edge-quantizer 0.10 has no int16 HARD_SWISH ("Unsupported op")


def _pattern_recipe(recipe: Any, kind: str) -> list[dict[str, Any]]:
    """ai-edge-quantizer's per-op protection by pattern: ``static_wi8_ai8`` with the squeeze-excite and swish
    ops (:data:`PATTERN_OPS`) given int16 activations (``ai16``) or left float (``float``); later entries of a
    recipe override earlier ones for the ops they name."""
    import copy

    rows = recipe.static_wi8_ai8()
    for op in INT16_PATTERN_OPS if kind == "ai16" else PATTERN_OPS:
        if kind == "ai16":
            rows.append({**copy.deepcopy(recipe.static_wi8_ai16()[0]), "operation": op})
        else:
            rows.append({"regex": ".*", "operation": op, "algorithm_key": "no_quantize",
                         "op_config": {"compute_precision": "FLOAT", "explicit_dequantize": False}})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="source", required=True, help="a benchmarks/byo_matrix.py --out folder")
    parser.add_argument("--models", nargs="*", default=["EfficientNetB0", "MobileNetV2", "ConvNeXtTiny"])
    parser.add_argument("--test", type=int, default=1000, help="test inputs run through every file")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    try:
        import ai_edge_quantizer  # noqa: F401
    except ImportError:
        print("ai-edge-quantizer is not installed: pip install -e '.[bench]'")
        return 2
    import keras

    base = Path(args.out or Path(args.source) / "int8_hard_tflite")
    base.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.models:
        folder = Path(args.source) / name
        manifest = json.loads((folder / "manifest.json").read_text())
        entries = {e["name"]: e for e in manifest["artifacts"]}
        mine = entries["tflite_int8"]
        data = np.load(folder / "reference" / "data.npz")
        x_test, y_test = data["x_test"][:args.test], np.asarray(data["y_test"][:args.test])
        model = keras.models.load_model(folder / "reference" / "model.keras")
        ref = model.predict(x_test, verbose=0).argmax(-1)
        ref_correct = ref == y_test
        calibration = data["x_train"][:mine["options"].get("samples") or 100]
        timings = manifest.get("timings") or {}
        rows = {}
        files: dict[str, tuple[Path | None, float | None, str]] = {}
        dnnkit_file = folder / mine["path"]
        if dnnkit_file.is_file():
            ladder = (mine.get("conversion") or {}).get("quantization_ladder") or {}
            label = f"dnnkit ({ladder.get('chosen') or 'plain int8'}, {mine['status']})"
            seconds = (mine.get("conversion") or {}).get("seconds")
            if ladder:  # the ladder and fallback stages search both formats' int8 files at once
                seconds = (seconds or 0) + (timings.get("ladder_s") or 0) + (timings.get("selective_fallback_s") or 0)
            files[label] = (dnnkit_file, seconds, "")
        else:
            files["dnnkit"] = (None, None, f"no tflite_int8 file ({mine['status']}: {mine.get('failure_reason')})")
        files["fp32"] = (folder / entries["tflite_fp32"]["path"], None, "")
        files.update(aeq_files(folder / entries["tflite_fp32"]["path"], calibration, base / name))
        print(f"\n{name}: reference accuracy {ref_correct.mean():.4f} on {len(x_test)} test inputs; "
              f"{len(calibration)} calibration inputs")
        for label, (path, seconds, error) in files.items():
            if path is None:
                rows[label] = {"error": error, "seconds": seconds}
                print(f"  {label}: failed ({error})")
                continue
            outputs, p50, float_ops = run_tflite(path, x_test)
            classes = outputs.argmax(-1)
            rows[label] = {"top1_agreement": float((classes == ref).mean()),
                           "drop": float(ref_correct.mean() - (classes == y_test).mean()),
                           "float_ops": float_ops, "bytes": path.stat().st_size, "p50_ms": p50,
                           "seconds": None if seconds is None else round(seconds, 1)}
            r = rows[label]
            secs = "-" if r["seconds"] is None else f"{r['seconds']} s"
            print(f"  {label}: agreement {r['top1_agreement']:.4f}, drop {r['drop']:+.4f}, {float_ops} float ops, "
                  f"{r['bytes'] / 1e6:.2f} MB, p50 {p50:.2f} ms, {secs}")
        results[name] = rows
    (base / "int8_hard_tflite.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults: {base / 'int8_hard_tflite.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
