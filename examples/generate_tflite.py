"""Generate with a causal LM's TFLite step file, the way a phone app does: nothing but the LiteRT interpreter
and NumPy. One `prefill` call over the prompt (right-padded; a padded slot's input_pos is -1, so it writes
nothing), then one `decode` call per token, the state passed back in each time: a Transformer's KV cache
(kv_cache_k_{i}, kv_cache_v_{i}) or an RNN's h_{i} (and c_{i}).

    dnnkit run models/reverse_lm.toml --out runs/reverse          # or models/reverse_gru_lm.toml
    python examples/generate_tflite.py runs/reverse --digits 31415      # -> 51413
"""

import argparse
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

EOS, SEP = 11, 12  # the reverse task's end and "=" tokens; digit d is token d + 1


def generate(path: str, prompt: list[int], max_new: int = 16) -> list[int]:
    interpreter = Interpreter(model_path=path)
    prefill = interpreter.get_signature_runner("prefill")
    decode = interpreter.get_signature_runner("decode")
    inputs = prefill.get_input_details()
    capacity = int(inputs["tokens"]["shape"][1])
    state = {name: np.zeros(d["shape"], np.float32) for name, d in inputs.items() if name not in ("tokens", "input_pos")}
    tokens = np.zeros((1, capacity), np.int32)
    tokens[0, :len(prompt)] = prompt
    positions = np.where(np.arange(capacity) < len(prompt), np.arange(capacity), -1).astype(np.int32)[None]
    out = prefill(tokens=tokens, input_pos=positions, **state)
    token, pos, new = int(np.argmax(out["logits"][0, len(prompt) - 1])), len(prompt), []
    while True:
        new.append(token)
        if token == EOS or len(new) >= max_new or pos >= capacity:
            return new
        state = {k: v for k, v in out.items() if k != "logits"}
        out = decode(tokens=np.array([[token]], np.int32), input_pos=np.array([[pos]], np.int32), **state)
        token, pos = int(np.argmax(out["logits"][0, 0])), pos + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="a dnnkit output folder of a causal_lm model")
    parser.add_argument("--digits", default="31415", help="the reverse task's prompt")
    args = parser.parse_args()
    path = Path(args.out) / "artifacts" / "generation" / "decoder_fp32.tflite"
    prompt = [int(d) + 1 for d in args.digits] + [SEP]
    answer = generate(str(path), prompt)
    print(f"{args.digits} -> {''.join(str(t - 1) for t in answer if 1 <= t <= 10)} (tokens {answer})")


if __name__ == "__main__":
    main()
