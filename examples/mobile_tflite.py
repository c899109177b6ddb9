"""Way 2 - mobile: export a full-int8 TFLite file and run it the way an app does, with the LiteRT
interpreter alone: labels and input normalization from the file's own metadata, the input quantized
with the tensor's scale and zero point, the int8 scores dequantized, top-1 class named.

    python examples/mobile_tflite.py [--out runs/example-mobile]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def classify(tflite_path: Path, raw_pixels: np.ndarray) -> list[str]:
    """What an app does with nothing but the .tflite file and raw 0..16 digit pixels."""
    from ai_edge_litert.interpreter import Interpreter

    from dnnkit.artifacts.metadata import read_tflite_metadata  # a JSON buffer: any flatbuffer reader works

    meta = read_tflite_metadata(tflite_path)
    scale = meta["input_normalization"]["pipeline"]["scale"]  # model input = raw * scale + offset
    offset = meta["input_normalization"]["pipeline"]["offset"]
    interpreter = Interpreter(model_path=str(tflite_path))
    runner = interpreter.get_signature_runner("serving_default")
    (in_name, in_detail), = runner.get_input_details().items()
    (out_name, out_detail), = runner.get_output_details().items()
    names = []
    for pixels in raw_pixels:
        x = pixels[None].astype(np.float32) * scale + offset
        q_scale, q_zero = in_detail["quantization"]
        if in_detail["dtype"] == np.int8:  # int8 I/O: quantize the input as the converter did
            x = np.clip(np.round(x / q_scale + q_zero), -128, 127).astype(np.int8)
        scores = runner(**{in_name: x})[out_name]
        o_scale, o_zero = out_detail["quantization"]
        if out_detail["dtype"] == np.int8:
            scores = (scores.astype(np.float32) - o_zero) * o_scale
        names.append(meta["labels"][int(np.argmax(scores))])
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-mobile")
    args = parser.parse_args()
    from sklearn.datasets import load_digits

    import dnnkit

    manifest = dnnkit.run(ROOT / "models" / "digits_mlp.toml", ROOT / "export" / "edge-int8.toml", args.out,
                          epochs=5)  # the main job: train, export, verify
    tflite = next(e for e in manifest["artifacts"] if e["format"] == "tflite" and e["precision"] == "int8")
    path = Path(args.out) / tflite["path"]
    digits = load_digits()
    raw, truth = digits.data[-50:], digits.target[-50:]  # raw 0..16 pixel counts, as a camera app would have
    names = classify(path, raw)
    correct = sum(name == str(t) for name, t in zip(names, truth))
    print(f"{path.name}: {path.stat().st_size / 1024:.1f} KB, {tflite['status']}; first five: {names[:5]}; "
          f"{correct} of {len(truth)} right")
    return 0 if tflite["status"] == "verified" and correct >= 0.8 * len(truth) else 1


if __name__ == "__main__":
    sys.exit(main())
