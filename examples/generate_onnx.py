"""Generate with a causal LM's ONNX step file, the way a server loop does: nothing but onnxruntime and NumPy.
The file takes Hugging Face Optimum's names (input_ids, position_ids, past_key_values.{i}.key/.value in;
logits, present.{i}.key/.value out) with a fixed-capacity cache written at position_ids.

    dnnkit run models/reverse_lm.toml --out runs/reverse
    python examples/generate_onnx.py runs/reverse --digits 31415      # -> 51413
"""

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort

EOS, SEP = 11, 12  # the reverse task's end and "=" tokens; digit d is token d + 1


def generate(path: str, prompt: list[int], max_new: int = 16) -> list[int]:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    past = {i.name: np.zeros(i.shape, np.float32) for i in session.get_inputs() if i.name.startswith("past_")}
    capacity = next(iter(past.values())).shape[2]
    outputs = [o.name for o in session.get_outputs()]
    ids, positions, new = np.array([prompt], np.int32), np.arange(len(prompt))[None], []
    pos = len(prompt)
    while True:
        got = dict(zip(outputs, session.run(outputs, {"input_ids": ids, "position_ids": positions.astype(np.int32),
                                                      **past})))
        token = int(np.argmax(got["logits"][0, -1]))
        new.append(token)
        if token == EOS or len(new) >= max_new or pos >= capacity:
            return new
        past = {name.replace("present", "past_key_values"): v for name, v in got.items() if name.startswith("present")}
        ids, positions, pos = np.array([[token]], np.int32), np.array([[pos]]), pos + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="a dnnkit output folder of a causal_lm model")
    parser.add_argument("--digits", default="31415", help="the reverse task's prompt")
    args = parser.parse_args()
    path = Path(args.out) / "artifacts" / "generation" / "decoder_step.onnx"
    answer = generate(str(path), [int(d) + 1 for d in args.digits] + [SEP])
    print(f"{args.digits} -> {''.join(str(t - 1) for t in answer if 1 <= t <= 10)} (tokens {answer})")


if __name__ == "__main__":
    main()
