"""Way 3 - serving: export ONNX, lay it out as a Triton model repository, then do what a service
does: an onnxruntime session that reads the model's metadata (labels, task, normalization), and the
request a Triton client would send, built with tritonclient's request objects and checked against
the repository's config.pbtxt (no server is started).

    python examples/serve_onnx.py [--out runs/example-serve]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-serve")
    args = parser.parse_args()
    out = Path(args.out)
    import onnxruntime as ort
    import tritonclient.grpc as triton
    from google.protobuf import text_format
    from sklearn.datasets import load_digits
    from tritonclient.grpc import model_config_pb2

    import dnnkit

    manifest = dnnkit.run(ROOT / "models" / "digits_mlp.toml", ROOT / "export" / "server-onnx.toml", out, epochs=5)
    manifest = dnnkit.package(out, "triton", model_name="digits", max_batch_size=32)
    record = manifest["package"]["triton"]
    repo = out / record["path"]
    print(f"Triton repository {repo}: {', '.join(record['files'])} ({record['artifact']}, {record['status']})")

    # an onnxruntime service: the session and the metadata inside the file
    session = ort.InferenceSession(str(repo / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) if v[:1] in "[{" else v for k, v in session.get_modelmeta().custom_metadata_map.items()}
    norm = meta["input_normalization"]["pipeline"]
    digits = load_digits()
    raw, truth = digits.data[-64:], digits.target[-64:]
    batch = (raw * norm["scale"] + norm["offset"]).astype(np.float32)
    scores = session.run(None, {session.get_inputs()[0].name: batch})[0]
    predicted = [meta["labels"][i] for i in scores.argmax(-1)]
    right = sum(p == str(t) for p, t in zip(predicted, truth))
    print(f"onnxruntime: task {meta['task']}, {len(meta['labels'])} labels, dnnkit {meta['dnnkit_version']}; "
          f"{right} of {len(truth)} right")

    # the request a Triton client sends, checked against the config the server would load
    config = text_format.Parse((repo / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    spec_in, spec_out = config.input[0], config.output[0]
    first = batch[:16]  # one request: at most max_batch_size samples
    request = triton.InferInput(spec_in.name, list(first.shape), "FP32")
    request.set_data_from_numpy(first)
    wanted = triton.InferRequestedOutput(spec_out.name, class_count=3)  # Triton's top-3 with labels.txt names
    tensor = request._get_tensor()
    ok = (tensor.name == spec_in.name and list(tensor.shape[1:]) == list(spec_in.dims)
          and tensor.shape[0] <= config.max_batch_size and model_config_pb2.DataType.Name(spec_in.data_type) ==
          "TYPE_" + tensor.datatype and wanted._get_tensor().name == spec_out.name)
    print(f"Triton request: input {tensor.name} {tensor.datatype} {list(tensor.shape)} -> output {spec_out.name} "
          f"(top 3 from {spec_out.label_filename}); matches config.pbtxt: {ok}")
    return 0 if ok and record["status"] == "verified" and right >= 0.8 * len(truth) else 1


if __name__ == "__main__":
    sys.exit(main())
