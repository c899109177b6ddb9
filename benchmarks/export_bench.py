"""Export benchmark: per shipped spec and artifact of export/all.toml, the size ratio to fp32
TFLite, parity, accuracy delta vs Keras and batch-1 latency ratio to fp32 TFLite; then the
wall time of `dnnkit run` against a minimal hand-written script doing the same train +
convert + run steps (same machine, same run, ratio).

    python benchmarks/export_bench.py [--specs digits_cnn digits_gru ...] [--out DIR] [--skip-wall] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = ["digits_mlp", "digits_cnn", "digits_lstm", "digits_gru", "digits_transformer"]

# The same steps as `dnnkit run` on the digits CNN with export/all.toml, written by hand
# with the libraries directly: train, write SavedModel / 4 TFLite / 2 ONNX, run each once
# on the test split. No checks beyond that, no manifest, no child processes.
HAND_WRITTEN = textwrap.dedent('''
    import os, sys, numpy as np
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import tensorflow as tf, keras, onnxruntime as ort
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from ai_edge_litert.interpreter import Interpreter
    from onnxruntime.quantization import quantize_static, QuantFormat, QuantType, CalibrationDataReader
    out = sys.argv[1]
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32").reshape(-1, 8, 8, 1)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1), name="inputs")
    h = inp
    for f in (32, 64):
        h = keras.layers.MaxPooling2D(2, padding="same")(keras.layers.Conv2D(f, 3, padding="same", activation="relu")(h))
        h = keras.layers.Dropout(0.1)(h)
    h = keras.layers.Dropout(0.1)(keras.layers.Dense(64, activation="relu")(keras.layers.Flatten()(h)))
    model = keras.Model(inp, keras.layers.Dense(10, name="logits")(h))
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(xtr, ytr, epochs=20, batch_size=32, validation_split=0.125, verbose=0)
    model.export(f"{out}/sm", format="tf_saved_model", verbose=False)
    def rep():
        for i in range(100):
            yield [xtr[i:i + 1]]
    for prec in ("fp32", "fp16", "dyn", "int8"):
        c = tf.lite.TFLiteConverter.from_saved_model(f"{out}/sm")
        if prec != "fp32":
            c.optimizations = [tf.lite.Optimize.DEFAULT]
        if prec == "fp16":
            c.target_spec.supported_types = [tf.float16]
        if prec == "int8":
            c.representative_dataset = rep
            c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            c.inference_input_type = c.inference_output_type = tf.int8
        open(f"{out}/{prec}.tflite", "wb").write(c.convert())
        it = Interpreter(model_path=f"{out}/{prec}.tflite")
        d, o = it.get_input_details()[0], it.get_output_details()[0]
        it.resize_tensor_input(d["index"], list(xte.shape)); it.allocate_tensors()
        xi = xte if prec != "int8" else np.round(xte / d["quantization"][0] + d["quantization"][1]).astype(np.int8)
        it.set_tensor(d["index"], xi); it.invoke(); it.get_tensor(o["index"])
    model.export(f"{out}/m.onnx", format="onnx", verbose=False)
    s = ort.InferenceSession(f"{out}/m.onnx", providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    class R(CalibrationDataReader):
        def __init__(self): self.it = iter([{name: xtr[i:i + 1]} for i in range(100)])
        def get_next(self): return next(self.it, None)
    quantize_static(f"{out}/m.onnx", f"{out}/q.onnx", R(), quant_format=QuantFormat.QDQ, per_channel=True)
    for f in ("m.onnx", "q.onnx"):
        ort.InferenceSession(f"{out}/{f}", providers=["CPUExecutionProvider"]).run(None, {name: xte})
    tf.saved_model.load(f"{out}/sm").signatures["serving_default"](tf.constant(xte))
''')


def artifact_table(specs: list[str], out: Path) -> None:
    from dnnkit.jobs.run import run

    header = (f"{'spec':<19} {'artifact':<20} {'size KB':>8} {'size/fp32':>9} {'parity':>14} "
              f"{'acc':>6} {'d acc':>7} {'p50 us':>8} {'lat/fp32':>8} {'status':>9}")
    print(header)
    print("-" * len(header))
    for name in specs:
        manifest = run(ROOT / "models" / f"{name}.toml", ROOT / "export" / "all.toml", out / name)
        ref = manifest["reference"]["metrics"]["accuracy"]
        arts = {e["name"]: e for e in manifest["artifacts"]}
        base = arts["tflite_fp32"]
        for e in manifest["artifacts"]:
            par = e.get("parity") or {}
            parity = (f"agree {par['top1_agreement']:.3f}" if e["precision"] in ("int8", "dynamic_int8")
                      else f"diff {par.get('max_abs_diff', float('nan')):.1e}")
            acc = e.get("metrics", {}).get("accuracy", float("nan"))
            p50 = e.get("latency_ms", {}).get("p50", float("nan"))
            print(f"{name:<19} {e['name']:<20} {e['bytes'] / 1024:>8.1f} {e['bytes'] / base['bytes']:>9.2f} "
                  f"{parity:>14} {acc:>6.3f} {acc - ref:>+7.3f} {p50 * 1000:>8.1f} "
                  f"{p50 / base['latency_ms']['p50']:>8.2f} {e['status']:>9}")
        print(f"{name:<19} {'(keras reference)':<20} accuracy {ref:.4f}")


def _timed(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, capture_output=True, cwd=cwd)
    return time.perf_counter() - start


def wall_times(repeats: int) -> None:
    """``dnnkit run`` and the hand-written script, alternately ``repeats`` times each: the median of
    the per-pair ratios (a pair runs back to back, so both see the same machine), and the stages of
    the last run's manifest."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    ratios, hands, ours = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "hand.py"
        script.write_text(HAND_WRITTEN)
        for i in range(repeats):
            hands.append(_timed([sys.executable, str(script), tmp], env))
            out = Path(tmp) / f"run{i}"
            ours.append(_timed([sys.executable, "-m", "dnnkit", "run", "--out", str(out)], env, cwd=ROOT))
            ratios.append(ours[-1] / hands[-1])
            print(f"pair {i + 1}: dnnkit run {ours[-1]:.1f} s, hand-written {hands[-1]:.1f} s, "
                  f"ratio {ratios[-1]:.2f}x", flush=True)
        timings = json.loads((out / "manifest.json").read_text())["timings"]
    print(f"\nwall time, digits CNN + export/all.toml ({repeats} pairs): dnnkit run median "
          f"{statistics.median(ours):.1f} s, hand-written train+convert+run median {statistics.median(hands):.1f} s, "
          f"median ratio {statistics.median(ratios):.2f}x")
    print("(dnnkit run also verifies every artifact: names, shapes, values, a second batch size, "
          "100-run latency and 1-vs-all-core throughput, op lists, and writes the manifest and report.html)")
    stages = {k: v for k, v in timings.items() if isinstance(v, (int, float))}
    print("last run's stages (manifest timings, s): " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()))
    for role, records in (timings.get("workers") or {}).items():
        for r in records:
            print(f"  {role} process: prestarted {r['prestarted']}, imports {r['import_s']} s, ready "
                  f"{r['ready_after_s']} s after its start, the job waited {r['waited_s']} s for it")
    if timings.get("cpu_s"):
        print("  CPU seconds (user + system) by process: "
              + ", ".join(f"{k} {v:.1f}" for k, v in timings["cpu_s"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", nargs="+", default=SPECS, choices=SPECS)
    parser.add_argument("--out", default=None, help="keep the exports here (default: a temp folder)")
    parser.add_argument("--skip-wall", action="store_true", help="skip the run vs hand-written timing")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of timed runs (default 3)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.out:
        artifact_table(args.specs, Path(args.out))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            artifact_table(args.specs, Path(tmp))
    if not args.skip_wall:
        wall_times(args.repeats)


if __name__ == "__main__":
    main()
