"""Why an int8 ONNX artifact can be slower than its fp32 twin, and what the alternatives measure:
per model, batch-1 p50 latency (1 thread, as dnnkit's table) of fp32 and of static int8 in
onnxruntime's QDQ format (dnnkit's default: QuantizeLinear/DequantizeLinear pairs around float ops,
fused into int8 kernels by the graph optimizer) and in the QOperator format (QLinearConv,
QLinearMatMul ... written directly), each at the graph optimization levels basic, extended and all.
Ratios are to fp32 at the same level.

    python benchmarks/int8_latency.py [--specs digits_mlp digits_cnn] [--runs 2000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
LEVELS = ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


def p50(session, feed: dict, runs: int) -> float:
    for _ in range(50):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", nargs="+", default=["digits_mlp", "digits_cnn"])
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from dnnkit.config.model import load_spec
    from dnnkit.data.load import load_data
    from dnnkit.formats.onnx import QUANTIZED_OPS, _reader, write_onnx
    from dnnkit.training.run import train

    print(f"onnxruntime {ort.__version__}, batch 1, 1 thread, p50 of {args.runs} runs (microseconds)")
    print(f"{'spec':14s} {'graph level':22s} {'fp32':>7s} {'QDQ':>7s} {'QDQ/fp32':>8s} {'QOperator':>9s} "
          f"{'QOp/fp32':>8s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.specs:
            spec = load_spec(ROOT / "models" / f"{name}.toml")
            run = train(spec, Path(tmp) / name)
            data = load_data(spec)
            calib = data.x_train[:100].astype(np.float32)
            fp32 = os.path.join(tmp, f"{name}.onnx")
            write_onnx(run.model, fp32, opset=17, metadata={})
            paths = {"fp32": fp32}
            for fmt in ("QDQ", "QOperator"):
                paths[fmt] = os.path.join(tmp, f"{name}_{fmt}.onnx")
                quantize_static(fp32, paths[fmt], _reader(run.model, calib), quant_format=getattr(QuantFormat, fmt),
                                per_channel=True, reduce_range=True, activation_type=QuantType.QInt8,
                                weight_type=QuantType.QInt8, op_types_to_quantize=QUANTIZED_OPS)
            x = data.x_test[:1].astype(np.float32)
            for level in LEVELS:
                row = {}
                for kind, path in paths.items():
                    options = ort.SessionOptions()
                    options.intra_op_num_threads = 1
                    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
                    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
                    row[kind] = p50(session, {session.get_inputs()[0].name: x}, args.runs)
                print(f"{name:14s} {level:22s} {row['fp32']:7.1f} {row['QDQ']:7.1f} {row['QDQ'] / row['fp32']:8.2f} "
                      f"{row['QOperator']:9.1f} {row['QOperator'] / row['fp32']:8.2f}", flush=True)
    print("dnnkit writes QDQ and runs it at ORT_ENABLE_ALL (onnxruntime's default and its recommended format).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
