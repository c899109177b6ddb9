"""dnnkit optimize's ONNX int8 against NNCF's accuracy-controlled quantization (issue 10, part 6b).

Same model, same ONNX fp32 file (dnnkit's converter), same calibration inputs (1000 from the
training split), same labelled test split as the validation set, same ``max_drop`` (0.01,
absolute). NNCF's ``quantize_with_accuracy_control`` reverts the ops it ranks most harmful to
float until the validation accuracy drop is at most ``max_drop`` (a point estimate); dnnkit's
``optimize`` keeps the layers onnxruntime's ``qdq_loss_debug`` ranks worst float until the artifact
verifies (agreement with Keras >= 0.98 and accuracy drop <= 0.01, both decided by one-sided 95 %
bounds at a Bonferroni-corrected confidence). NNCF's result is then judged by dnnkit's checks too.
Printed per model: accuracy, weighted ops (Conv/MatMul/Gemm) left float, size, batch-1 p50
latency in onnxruntime, search seconds, and the same-run ratios.

Also printed, to explain a gap: NNCF's plain ``nncf.quantize`` (no accuracy control) with its default preset
(PERFORMANCE) with and without bias correction (``disable_bias_correction``), and with preset MIXED (asymmetric
activations) with fast and with full bias correction (``fast_bias_correction=False``: NNCF's data-driven
``BiasCorrection``, the one that rescues MobileNetV3 in NNCF's own figures), against dnnkit's all-int8 first
attempt: the accuracy, agreement and weighted ops left float of each. ``--no-accuracy-control`` prints only
these (the search takes ~100 min on EfficientNetB0 here).

NNCF is not a dnnkit dependency: ``pip install -e '.[bench]'`` (nncf 3.4.0; it needs no other
version of onnx/onnxruntime/numpy than dnnkit pins).

    python benchmarks/optimize_nncf.py [--models EfficientNetB0 MobileNetV3Small] [--no-accuracy-control] [--out DIR]

``--from DIR [DIR ...]`` takes each model from a ``benchmarks/byo_matrix.py`` output folder instead of training it
again: its reference model and data, its fp32 ONNX file (what NNCF quantizes) and its ``onnx_int8`` artifact (dnnkit's
row, as the matrix verified it; its search seconds are the matrix's ladder and fallback stages).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
WEIGHTED = ("Conv", "ConvTranspose", "MatMul", "Gemm")


# ops a quantized tensor passes through with its values on the same grid (Pad with zeros: 0.0 is the zero point;
# MaxPool: max commutes with dequantization). NNCF quantizes before them; counting them as float made 4 of
# MobileNetV3Small's and MobileNetV2's depthwise convs (after a Pad) and ResNet50's two convs after its MaxPool look
# float in NNCF's files (the "4 of 54" of issue 10's note).
SHAPE_ONLY = ("Reshape", "Unsqueeze", "Squeeze", "Transpose", "Flatten", "Identity", "Pad", "MaxPool")


def float_weighted_ops(model) -> tuple[int, int]:
    """(weighted ops not running in int8, weighted ops): a weighted op is int8 when its activation and
    its weight both come from a DequantizeLinear, possibly through shape-only ops (NNCF places its
    QDQ pairs before tf2onnx's Reshape/Unsqueeze; onnxruntime's right at the op)."""
    produced_by = {o: n for n in model.graph.node for o in n.output}

    def dequantized(name: str) -> bool:
        node = produced_by.get(name)
        while node is not None and node.op_type in SHAPE_ONLY:
            node = produced_by.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    ops = [n for n in model.graph.node if n.op_type in WEIGHTED]
    return sum(not (dequantized(n.input[0]) and dequantized(n.input[1])) for n in ops), len(ops)


def p50_ms(session, x, runs=200, warmup=20) -> float:
    name = session.get_inputs()[0].name
    for i in range(warmup):
        session.run(None, {name: x[i % len(x)][None]})
    times = []
    for i in range(runs):
        start = time.perf_counter()
        session.run(None, {name: x[i % len(x)][None]})
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def predict(session, x, batch=256) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i:i + batch]})[0] for i in range(0, len(x), batch)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=["EfficientNetB0", "MobileNetV3Small"])
    parser.add_argument("--no-accuracy-control", action="store_true",
                        help="only the plain nncf.quantize rows (bias correction on/off)")
    parser.add_argument("--max-drop", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--out", default=None)
    parser.add_argument("--from", dest="from_dirs", nargs="*", default=None,
                        help="byo_matrix.py output folders holding the models (no training, no dnnkit run)")
    args = parser.parse_args()
    try:
        import nncf
    except ImportError:
        print("nncf is not installed: pip install -e '.[bench]'")
        return 2
    import onnx
    import onnxruntime as ort

    import dnnkit
    from byo_matrix import build
    from dnnkit.verification.criteria import agreement_check, degradation_check
    from dnnkit.config.recipe import recipe_from_dict

    base = Path(args.out or tempfile.mkdtemp(prefix="optimize-nncf-"))
    results = {}
    for name in args.models:
        if args.from_dirs:
            folder = next(Path(d) / name for d in args.from_dirs if (Path(d) / name / "manifest.json").is_file())
            model, data, manifest, best, dnnkit_s = from_matrix(folder)
            fp32_path = folder / "artifacts" / "onnx_fp32.onnx"
        else:
            model, data = build(name, args.epochs)
        x_test, y_test = data["x_test"], np.asarray(data["y_test"])
        ref_logits = model.predict(x_test, verbose=0)
        ref_classes = ref_logits.argmax(-1)
        ref_correct = ref_classes == y_test

        if not args.from_dirs:
            start = time.perf_counter()
            manifest = dnnkit.optimize(model, out_dir=base / name / "dnnkit", data=data, target="onnx",
                                       max_degradation=args.max_drop)
            dnnkit_s = time.perf_counter() - start
            rows = {r["name"]: r for r in manifest["optimize"]["candidates"]}
            int8_rows = [r for n, r in rows.items() if n.startswith("onnx_int8")]
            best = next((r for r in int8_rows if r["status"] == "verified"), int8_rows[-1])
            fp32_dir = base / name / "fp32"
            dnnkit.export(model, recipe_from_dict({"name": "fp32", "artifacts": [
                {"name": "onnx_fp32", "format": "onnx", "precision": "fp32"}]}), fp32_dir, data=data)
            fp32_path = fp32_dir / "artifacts" / "onnx_fp32.onnx"
        fp32 = onnx.load(str(fp32_path))
        input_name = fp32.graph.input[0].name
        order = np.random.default_rng(0).permutation(len(data["x_train"]))[:1000]
        calibration = nncf.Dataset([data["x_train"][i:i + 1] for i in order], lambda item: {input_name: item})
        validation = nncf.Dataset(list(range(len(x_test))))  # items: test-split indices

        def validate(candidate, items):
            index = np.fromiter(items, dtype=np.int64)
            session = ort.InferenceSession(candidate.SerializeToString(), providers=["CPUExecutionProvider"])
            correct = predict(session, x_test[index]).argmax(-1) == y_test[index]
            return float(correct.mean()), [float(c) for c in correct]

        plain = {}
        mixed = nncf.QuantizationPreset.MIXED
        for label, keywords in (
                ("bias correction", {}),
                ("no bias correction", {"advanced_parameters": nncf.AdvancedQuantizationParameters(
                    disable_bias_correction=True)}),
                ("MIXED, fast bias correction", {"preset": mixed, "fast_bias_correction": True}),
                ("MIXED, full bias correction", {"preset": mixed, "fast_bias_correction": False})):
            start = time.perf_counter()
            try:
                q = nncf.quantize(fp32, calibration, subset_size=1000, **keywords)
            except Exception as exc:  # noqa: BLE001 - a recipe NNCF cannot run on this graph is a row too
                plain[label] = {"error": f"{type(exc).__name__}: {str(exc)[:200]}",
                                "seconds": round(time.perf_counter() - start, 1)}
                continue
            session = ort.InferenceSession(q.SerializeToString(), providers=["CPUExecutionProvider"])
            classes = predict(session, x_test).argmax(-1)
            plain[label] = {"accuracy": float((classes == y_test).mean()),
                            "drop": float(ref_correct.mean() - (classes == y_test).mean()),
                            "top1_agreement": float((classes == ref_classes).mean()),
                            "float_weighted_ops": float_weighted_ops(q)[0],
                            "seconds": round(time.perf_counter() - start, 1)}
        first = best if args.from_dirs else next(r for r in int8_rows if "~" not in r["name"])
        entry = next((e for e in manifest["artifacts"] if e["name"] == first.get("entry")), {})
        rung = ((entry.get("conversion") or {}).get("ladder") or {}).get("chosen") or "plain int8"
        results[name] = {"plain": plain, "dnnkit_first": {**first, "rung": rung}}
        print(f"\n{name}: every weighted op int8 (reference accuracy {ref_correct.mean():.4f})")
        print(f"  dnnkit (onnxruntime quantize_static, ladder rung: {rung}): drop {first['degradation']:+.4f}, "
              f"agreement {first['top1_agreement']:.4f}")
        for label, row in plain.items():
            if "error" in row:
                print(f"  nncf.quantize, {label}: {row['error']} ({row['seconds']} s)", flush=True)
                continue
            print(f"  nncf.quantize, {label}: drop {row['drop']:+.4f}, agreement {row['top1_agreement']:.4f}, "
                  f"{row['float_weighted_ops']} weighted ops float ({row['seconds']} s)", flush=True)
        if args.no_accuracy_control:
            save(base, results)
            continue

        start = time.perf_counter()
        quantized = nncf.quantize_with_accuracy_control(
            fp32, calibration, validation, validate, max_drop=args.max_drop, drop_type=nncf.DropType.ABSOLUTE,
            subset_size=1000)
        nncf_s = time.perf_counter() - start
        path = base / name / "nncf_int8.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(quantized, str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        classes = predict(session, x_test).argmax(-1)
        agreement = agreement_check(ref_classes, classes, 0.98)
        drop = degradation_check(agreement, ref_correct, classes == y_test, args.max_drop)
        left, total = float_weighted_ops(quantized)
        nncf_row = {"accuracy": float((classes == y_test).mean()), "reference_accuracy": float(ref_correct.mean()),
                    "top1_agreement": agreement["value"], "agreement_verdict": agreement["verdict"],
                    "drop": drop["value"], "drop_ci": drop["ci"], "drop_verdict": drop["verdict"],
                    "float_weighted_ops": left, "weighted_ops": total, "bytes": path.stat().st_size,
                    "p50_ms": p50_ms(session, x_test), "seconds": round(nncf_s, 1)}
        fp32_session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
        if args.from_dirs:  # the matrix's p50 came from another run: time dnnkit's file beside NNCF's, as they are
            mine = ort.InferenceSession(str(folder / "artifacts" / "onnx_int8.onnx"),
                                        providers=["CPUExecutionProvider"])
            best = {**best, "latency_p50_ms": p50_ms(mine, x_test)}
        results[name] |= {"dnnkit": {**best, "seconds": round(dnnkit_s, 1),
                                    "reference_accuracy": manifest["reference"]["metrics"].get("accuracy"),
                                    "weighted_ops": total,
                                    "chosen": (manifest.get("optimize") or {}).get("chosen", best["name"])},
                         "nncf": nncf_row, "fp32": {"bytes": fp32_path.stat().st_size,
                                                    "p50_ms": p50_ms(fp32_session, x_test)}}
        d, n, f = results[name]["dnnkit"], nncf_row, results[name]["fp32"]
        print(f"\n{name} (reference accuracy {n['reference_accuracy']:.4f}; {total} weighted ops; "
              f"max_drop {args.max_drop:g})")
        p50 = "-" if d["latency_p50_ms"] is None else f"{d['latency_p50_ms']:.3f}"
        agree = "-" if d["top1_agreement"] is None else f"{d['top1_agreement']:.4f}"
        print(f"  dnnkit {d['name']}: {d['status']}, drop {d['degradation']:+.4f}, agreement {agree}, "
              f"{d['float_layers']} of {total} weighted ops float, {d['bytes'] / 1e6:.2f} MB, p50 {p50} ms, "
              f"optimize {d['seconds']} s (chosen: {d['chosen']})")
        print(f"  nncf: drop {n['drop']:+.4f} (95% CI {n['drop_ci'][0]:+.4f}..{n['drop_ci'][1]:+.4f}: "
              f"{n['drop_verdict']}), agreement {n['top1_agreement']:.4f} ({n['agreement_verdict']} at 0.98), "
              f"{left} of {total} weighted ops float, {n['bytes'] / 1e6:.2f} MB, p50 {n['p50_ms']:.3f} ms, "
              f"search {n['seconds']} s")
        print(f"  fp32: {f['bytes'] / 1e6:.2f} MB, p50 {f['p50_ms']:.3f} ms")
        if d.get("latency_p50_ms"):
            print(f"  dnnkit / nncf: size {d['bytes'] / n['bytes']:.2f}x, p50 {d['latency_p50_ms'] / n['p50_ms']:.2f}x, "
                  f"search time {d['seconds'] / max(n['seconds'], 1e-9):.2f}x", flush=True)
        save(base, results)
    save(base, results)
    return 0


def from_matrix(folder: Path) -> tuple:
    """A byo_matrix.py model folder: ``(model, data, manifest, dnnkit's onnx_int8 row, its search seconds)``."""
    import keras

    manifest = json.loads((folder / "manifest.json").read_text())
    model = keras.models.load_model(folder / "reference" / "model.keras", compile=False)
    with np.load(folder / "reference" / "data.npz") as d:
        data = {k: d[k] for k in d}
    entry = next(e for e in manifest["artifacts"] if e["name"] == "onnx_int8")
    fb = (entry.get("conversion") or {}).get("selective_fallback") or {}
    accuracy, reference = (entry.get("metrics") or {}).get("accuracy"), manifest["reference"]["metrics"]["accuracy"]
    row = {"name": entry["name"], "entry": entry["name"], "status": entry["status"], "bytes": entry["bytes"],
           "latency_p50_ms": (entry.get("latency_ms") or {}).get("p50"),
           "degradation": None if accuracy is None else reference - accuracy,
           "top1_agreement": (entry.get("parity") or {}).get("top1_agreement"),
           "float_layers": len(fb.get("float_layers") or []) if fb.get("chosen") else 0}
    timings = manifest.get("timings") or {}
    return model, data, manifest, row, round(timings.get("ladder_s", 0) + timings.get("selective_fallback_s", 0), 1)


def save(base: Path, results: dict) -> None:
    """Written after every model: a long run stopped part way keeps the models it finished."""
    (base / "optimize_nncf.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {base / 'optimize_nncf.json'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
