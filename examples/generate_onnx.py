"""Generate with a causal LM's ONNX step file, the way a server loop does: nothing but onnxruntime and NumPy.
The file takes Hugging Face Optimum's names: input_ids, position_ids and the state in, logits and the new
state out. A Transformer's state is its KV cache (past_key_values.{i}.key/.value in, present.{i}.key/.value
out), of a fixed capacity and written at position_ids, and its step takes any number of tokens; an RNN's state
is past_state.{i}.h (and .c for an LSTM) in, present_state.{i}.h/.c out, and its step takes one token.

    dnnkit run models/reverse_lm.toml --out runs/reverse          # or models/reverse_gru_lm.toml
    python examples/generate_onnx.py runs/reverse --digits 31415      # -> 51413
"""

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort

EOS, SEP = 11, 12  # the reverse task's end and "=" tokens; digit d is token d + 1


def past_name(present: str) -> str:
    """The input a ``present...`` output goes back into."""
    head, rest = present.split(".", 1)
    return {"present": "past_key_values", "present_state": "past_state"}[head] + "." + rest


def generate(path: str, prompt: list[int], max_new: int = 16) -> list[int]:
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    past = {n: np.zeros(i.shape, np.float32) for n, i in inputs.items() if n.startswith("past_")}
    kv = [v for n, v in past.items() if n.startswith("past_key_values")]
    capacity = kv[0].shape[2] if kv else len(prompt) + max_new  # an RNN's state has no positions to fill
    one_at_a_time = inputs["input_ids"].shape[1] == 1
    outputs = [o.name for o in session.get_outputs()]

    def step(ids: list[int], first: int) -> np.ndarray:
        nonlocal past
        feed = {"input_ids": np.array([ids], np.int32),
                "position_ids": np.arange(first, first + len(ids), dtype=np.int32)[None], **past}
        got = dict(zip(outputs, session.run(outputs, feed)))
        past = {past_name(n): v for n, v in got.items() if n.startswith("present")}
        return got["logits"][0, -1]

    if one_at_a_time:
        for pos, token in enumerate(prompt):
            logits = step([token], pos)
    else:
        logits = step(prompt, 0)
    new, pos = [], len(prompt)
    while True:
        token = int(np.argmax(logits))
        new.append(token)
        if token == EOS or len(new) >= max_new or pos >= capacity:
            return new
        logits, pos = step([token], pos), pos + 1


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
