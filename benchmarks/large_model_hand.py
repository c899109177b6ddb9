"""The hand-written counterpart of benchmarks/large_model.py: the same 224x224 ResNet50 (random
weights, seed 0) and images, converted to every artifact of export/all.toml with the libraries
directly, each run once on the test images; no checks, no manifest.

    python benchmarks/large_model_hand.py OUT [--step NAME] [--images N]

Without --step every step runs in this one process (the wall time large_model.py is compared with);
with --step only that one (for its own peak resident memory: prints ``peak_rss_mb``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

STEPS = ["saved_model", "tflite_fp32", "tflite_fp16", "tflite_dynamic_int8", "tflite_int8", "onnx_fp32",
         "onnx_int8"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--step", choices=STEPS)
    parser.add_argument("--images", type=int, default=164)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    start = time.perf_counter()
    import keras
    import numpy as np
    import tensorflow as tf

    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(0)
    model = keras.applications.ResNet50(weights=None, input_shape=(224, 224, 3), classes=10)
    x = np.random.default_rng(0).uniform(0, 255, (args.images, 224, 224, 3)).astype("float32")
    calib, test = x[:100], x[-32:]
    sm = os.path.join(args.out, "saved_model")
    steps = [args.step] if args.step else STEPS
    if any(s.startswith("tflite") for s in steps) and not os.path.isdir(sm):
        model.export(sm, format="tf_saved_model", verbose=False)  # what the TFLite converter starts from
    for step in steps:
        if step == "saved_model":
            model.export(sm, format="tf_saved_model", verbose=False)
            tf.saved_model.load(sm).signatures["serving_default"](tf.constant(test))
        elif step.startswith("tflite"):
            from ai_edge_litert.interpreter import Interpreter

            conv = tf.lite.TFLiteConverter.from_saved_model(sm)
            if step != "tflite_fp32":
                conv.optimizations = [tf.lite.Optimize.DEFAULT]
            if step == "tflite_fp16":
                conv.target_spec.supported_types = [tf.float16]
            if step == "tflite_int8":
                conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
                conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            path = os.path.join(args.out, f"{step}.tflite")
            with open(path, "wb") as f:
                f.write(conv.convert())
            it = Interpreter(model_path=path)
            d = it.get_input_details()[0]
            it.resize_tensor_input(d["index"], list(test.shape))
            it.allocate_tensors()
            it.set_tensor(d["index"], test)
            it.invoke()
        else:
            import onnxruntime as ort
            import tf2onnx
            from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

            fp32 = os.path.join(args.out, "model.onnx")
            if step == "onnx_fp32" or not os.path.isfile(fp32):
                spec = (tf.TensorSpec((None, 224, 224, 3), tf.float32, name="inputs"),)
                tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=fp32)
            path = fp32
            if step == "onnx_int8":
                name = ort.InferenceSession(fp32, providers=["CPUExecutionProvider"]).get_inputs()[0].name

                class Reader(CalibrationDataReader):
                    def __init__(self) -> None:
                        self.items = iter([{name: calib[i:i + 1]} for i in range(len(calib))])

                    def get_next(self) -> dict | None:
                        return next(self.items, None)

                path = os.path.join(args.out, "model_int8.onnx")
                quantize_static(fp32, path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
            session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            session.run(None, {session.get_inputs()[0].name: test})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"steps": steps, "seconds": round(time.perf_counter() - start, 1), "peak_rss_mb": round(peak)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
