"""Generate with an ONNX step file, the way a server loop does: nothing but onnxruntime and NumPy (and the
export's manifest.json, for the vocabulary). The file takes Hugging Face Optimum's names: input_ids,
position_ids and the state in, logits and the new state out. A Transformer's state is its KV cache
(past_key_values.{i}.key/.value in, present.{i}.key/.value out), of a fixed capacity and written at
position_ids, and its step takes any number of tokens; an RNN's state is past_state.{i}.h (and .c for an LSTM)
in, present_state.{i}.h/.c out, and its step takes one token. An encoder-decoder has encoder.onnx beside it:
input_ids (the source) in, encoder_hidden_states (which every step reads) and an RNN decoder's first state out.

    dnnkit run models/reverse_lm.toml --out runs/reverse          # or reverse_gru_lm.toml
    python examples/generate_onnx.py runs/reverse --text 31415=      # -> 51413
    dnnkit run models/addition_lstm.toml --out runs/addition
    python examples/generate_onnx.py runs/addition --text 12+34      # -> 46
"""

import argparse
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort


def past_name(present: str) -> str:
    """The input a ``present...`` output goes back into."""
    head, rest = present.split(".", 1)
    return {"present": "past_key_values", "present_state": "past_state"}[head] + "." + rest


def generate(folder: Path, prompt: list[int], eos: int | None, source: list[int] | None = None,
             max_new: int = 16) -> list[int]:
    session = ort.InferenceSession(str(folder / "decoder_step.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    past = {n: np.zeros(i.shape, np.float32) for n, i in inputs.items() if n.startswith("past_")}
    if source is not None:
        encoder = ort.InferenceSession(str(folder / "encoder.onnx"), providers=["CPUExecutionProvider"])
        names = [o.name for o in encoder.get_outputs()]
        encoded = dict(zip(names, encoder.run(names, {"input_ids": np.array([source], np.int32)})))
        past.update({past_name(n) if n.startswith("present") else n: v for n, v in encoded.items()})
    kv = [v for n, v in past.items() if n.startswith("past_key_values")]
    capacity = kv[0].shape[2] if kv else len(prompt) + max_new  # an RNN's state has no positions to fill
    one_at_a_time = inputs["input_ids"].shape[1] == 1
    outputs = [o.name for o in session.get_outputs()]

    def step(ids: list[int], first: int) -> np.ndarray:
        feed = {"input_ids": np.array([ids], np.int32),
                "position_ids": np.arange(first, first + len(ids), dtype=np.int32)[None], **past}
        got = dict(zip(outputs, session.run(outputs, feed)))
        past.update({past_name(n): v for n, v in got.items() if n.startswith("present")})
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
        if token == eos or len(new) >= max_new or pos >= capacity:
            return new
        logits, pos = step([token], pos), pos + 1


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
    answer = generate(Path(args.out) / "artifacts" / "generation", prompt, eos, source)
    print(f"{args.text} -> {''.join(vocabulary[t] for t in answer if t != eos)} (tokens {answer})")


if __name__ == "__main__":
    main()
