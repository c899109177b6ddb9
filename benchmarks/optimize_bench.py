"""``dnnkit optimize`` on models where plain full int8 misses a 1-point goal (issue 10, part 6a/6c).

Each model is trained briefly on learnable synthetic data, then ``dnnkit.optimize`` searches
TFLite and ONNX candidates for ``--max-degradation`` (default 0.01). Printed per model and target:
the all-int8 attempt (agreement, degradation, verdict), the chosen candidate (layers kept float,
size, batch-1 p50 latency) and the fp16 candidate, with the same-run ratios chosen/int8 and
chosen/fp16. Why int8 hurts each model:

- ``masked_attention``: token ids padded with 0 and ``Embedding(mask_zero=True)``: Keras adds -1e9 to
  the masked attention logits; one int8 scale cannot hold -1e9 and the real logits (they become 0).
- ``raw_features``: a ``Normalization`` layer inside the model and raw features whose scales differ
  50x and offsets reach +-100: one per-tensor int8 scale on the input erases the small features
  before the model can normalize them (TFLite quantizes the input; onnxruntime quantizes only
  Conv/MatMul/Gemm, so its Sub/Mul stay float and ONNX int8 is not hurt).

    python benchmarks/optimize_bench.py [--models masked_attention raw_features] [--objective fastest] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the masked-attention model of test_jobs_fallback_selective
MODELS = ("masked_attention", "raw_features")


def raw_features():
    """(model, data): the keras-io structured-data pattern, a Normalization layer adapted on raw features."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    n, held = 6000, 2000
    x = (rng.normal(size=(n, 12)) * rng.uniform(1, 50, 12) + rng.uniform(-100, 100, 12)).astype("float32")
    z = (x - x.mean(0)) / x.std(0)
    y = ((z[:, 0] + z[:, 3] - z[:, 5]) > 0).astype("int32") + (z[:, 7] > 1).astype("int32")
    keras.utils.set_random_seed(0)
    norm = keras.layers.Normalization()
    norm.adapt(x[:-held])
    inp = keras.Input((12,), name="features")
    h = keras.layers.Dense(256, activation="relu")(norm(inp))
    h = keras.layers.Dense(256, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(3, name="logits")(h))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:-held], y[:-held], epochs=20, verbose=0)
    return model, {"x_train": x[:-held], "y_train": y[:-held], "x_test": x[-held:], "y_test": y[-held:]}


def masked_attention():
    """(model, data): tests/test_jobs_fallback_selective.py's model with a 2000-token vocabulary, so that
    the weights (the embedding) dominate the file as in a real text model."""
    from test_jobs_fallback_selective import _masked_attention

    return _masked_attention(vocabulary=2000, n=3600, train=2000)


def _summary(manifest: dict) -> list[dict]:
    opt = manifest["optimize"]
    rows = {r["name"]: r for r in opt["candidates"]}
    out = []
    for target, int8, fp16 in (("tflite", "tflite_int8", "tflite_fp16"), ("onnx", "onnx_int8", None)):
        if int8 not in rows:
            continue
        chosen = next((rows[n] for t, n in opt["chosen"].items() if t == target), None)
        repaired = next((r for r in rows.values() if r["name"].startswith(f"{int8}~float")), None)
        out.append({"target": target, "int8": rows[int8], "fallback": repaired, "fp16": rows.get(fp16),
                    "chosen": chosen, "closest": opt["closest"].get(target)})
    return out


def _fmt(r: dict | None) -> str:
    if r is None:
        return "-"
    deg = "-" if r["degradation"] is None else f"{r['degradation']:+.4f}"
    agr = "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.4f}"
    p50 = "-" if r["latency_p50_ms"] is None else f"{r['latency_p50_ms']:.4f} ms"
    return f"{r['name']} {r['status']} agree {agr} drop {deg} {r['bytes'] / 1024:.1f} KB p50 {p50}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    parser.add_argument("--max-degradation", type=float, default=0.01)
    parser.add_argument("--objective", default="smallest", choices=("smallest", "fastest"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    import dnnkit

    base = Path(args.out or tempfile.mkdtemp(prefix="optimize-bench-"))
    results = {}
    for name in args.models:
        model, data = globals()[name]()
        start = time.perf_counter()
        manifest = dnnkit.optimize(model, out_dir=base / name, data=data, target="both", max_degradation=args.max_degradation,
                                   objective=args.objective)
        seconds = time.perf_counter() - start
        results[name] = {"seconds": round(seconds, 1), "status": manifest["status"], "targets": _summary(manifest)}
        print(f"\n{name}: optimize {manifest['status']} in {seconds:.0f} s (goal: drop <= {args.max_degradation:g})")
        for t in results[name]["targets"]:
            print(f"  {t['target']:6s} all-int8: {_fmt(t['int8'])}")
            if t["fallback"]:
                print(f"  {t['target']:6s} fallback: {_fmt(t['fallback'])} ({t['fallback']['float_layers']} "
                      f"layers float)")
            print(f"  {t['target']:6s} chosen:   {_fmt(t['chosen'])}"
                  + (f" ({t['chosen']['float_layers']} layers float)" if t["chosen"] else f"; closest {t['closest']}"))
            if t["fp16"]:
                print(f"  {t['target']:6s} fp16:     {_fmt(t['fp16'])}")
            for label, a, b in (("fallback / all-int8", t["fallback"], t["int8"]),
                                ("chosen / all-int8", t["chosen"], t["int8"]), ("chosen / fp16", t["chosen"], t["fp16"])):
                if a and b and a["latency_p50_ms"] and b["latency_p50_ms"]:
                    print(f"  {t['target']:6s} {label + ':':20s} size {a['bytes'] / b['bytes']:.2f}x, "
                          f"p50 {a['latency_p50_ms'] / b['latency_p50_ms']:.2f}x")
    (base / "optimize_bench.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nresults: {base / 'optimize_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
