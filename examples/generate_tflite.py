"""Generate with a TFLite step file, the way a phone app does: nothing but the LiteRT interpreter and NumPy
(and the export's manifest.json, for the vocabulary). A language model: one `prefill` call over the prompt
(right-padded; a padded slot's input_pos is -1, so it writes nothing), then one `decode` call per token, the
state passed back in each time: a Transformer's KV cache (kv_cache_k_{i}, kv_cache_v_{i}) or an RNN's h_{i}
(and c_{i}). An encoder-decoder first runs `encode` over the source (encoder_hidden_states and an RNN decoder's
first state), then decodes from its start token the same way.

    dnnkit run models/reverse_lm.toml --out runs/reverse          # or reverse_gru_lm.toml
    python examples/generate_tflite.py runs/reverse --text 31415=      # -> 51413
    dnnkit run models/addition_lstm.toml --out runs/addition
    python examples/generate_tflite.py runs/addition --text 12+34      # -> 46
"""

import argparse
import json
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter


def generate(path: str, prompt: list[int], eos: int | None, source: list[int] | None = None) -> list[int]:
    interpreter = Interpreter(model_path=path)
    prefill = interpreter.get_signature_runner("prefill")
    decode = interpreter.get_signature_runner("decode")
    inputs = prefill.get_input_details()
    capacity = int(inputs["tokens"]["shape"][1])
    state = {name: np.zeros(d["shape"], np.float32) for name, d in inputs.items() if name not in ("tokens", "input_pos")}
    if source is not None:
        state.update(interpreter.get_signature_runner("encode")(source=np.array([source], np.int32)))
    tokens = np.zeros((1, capacity), np.int32)
    tokens[0, :len(prompt)] = prompt
    positions = np.where(np.arange(capacity) < len(prompt), np.arange(capacity), -1).astype(np.int32)[None]
    out = prefill(tokens=tokens, input_pos=positions, **state)
    token, pos, new = int(np.argmax(out["logits"][0, len(prompt) - 1])), len(prompt), []
    while True:
        new.append(token)
        if token == eos or pos >= capacity:
            return new
        state.update({k: v for k, v in out.items() if k != "logits"})
        out = decode(tokens=np.array([[token]], np.int32), input_pos=np.array([[pos]], np.int32), **state)
        token, pos = int(np.argmax(out["logits"][0, 0])), pos + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="a dnnkit output folder of a causal_lm or seq2seq model")
    parser.add_argument("--text", default="31415=", help="the prompt (a language model's) or source (a seq2seq's)")
    args = parser.parse_args()
    gen = json.loads((Path(args.out) / "manifest.json").read_text())["generation"]
    vocabulary, eos = gen["vocabulary"], gen["eos"]
    ids = [vocabulary.index(c) for c in args.text]  # one character per token in the built-in tasks
    source, prompt = None, ids
    if gen.get("source_steps"):
        source, prompt = ids + [gen["pad"]] * (gen["source_steps"] - len(ids)), [gen["decoder_start"]]
    answer = generate(str(Path(args.out) / "artifacts" / "generation" / "decoder_fp32.tflite"), prompt, eos, source)
    print(f"{args.text} -> {''.join(vocabulary[t] for t in answer if t != eos)} (tokens {answer})")


if __name__ == "__main__":
    main()
