"""Generation speed on one CPU, same run, same model (a keras-hub GPT-2, random weights: speed does not depend on
them): dnnkit's cached step files against recomputing the whole prefix for every token, per runtime, at 16, 64
and 256 generated tokens; against keras-hub's own jit-compiled generate(); the memory of the cache; and what one
TFLite decode call costs as the cache's capacity grows.

    python benchmarks/generation_speed.py [--layers 4 --hidden 256 --heads 4] [--prompt 8] [--new 16 64 256]

Recomputing means what a runtime without a cache does: TFLite runs the prefill signature (the whole window, a
fixed width) once per token; onnxruntime runs the step graph (its token axis is dynamic) over the growing prefix
with an empty cache, as Hugging Face's use_cache=False does; Keras calls the model on the prefix (dnnkit's
reference, ``greedy_full``). Each figure is the median of --repeat runs after one warm-up. The loops call LiteRT's
SignatureRunner, which re-allocates on every call in TF 2.21: a phone app that sets the interpreter's tensors
directly is faster still.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def median_seconds(fn, repeat: int) -> float:
    fn()  # warm-up (keras-hub compiles here)
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--prompt", type=int, default=8)
    parser.add_argument("--new", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--capacities", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import keras_hub

    from dnnkit.builders.decoding import greedy_full, step_model
    from dnnkit.core.generation import greedy
    from dnnkit.formats.generation import export_decoders
    from dnnkit.verification.generation import RUNNERS

    keras.utils.set_random_seed(0)
    longest = max(args.prompt + max(args.new), max(args.capacities))
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=args.vocab, num_layers=args.layers,
                                             num_heads=args.heads, hidden_dim=args.hidden,
                                             intermediate_dim=4 * args.hidden, max_sequence_length=longest)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    model.compile(sampler="greedy")
    prompt = [int(t) for t in np.random.default_rng(0).integers(1, args.vocab, args.prompt)]
    capacity = args.prompt + max(args.new)
    print(f"GPT-2 (keras-hub, random weights): {args.layers} layers, hidden {args.hidden}, {args.heads} heads, "
          f"vocabulary {args.vocab}, {model.count_params():,} parameters; prompt {args.prompt} tokens; "
          f"cache capacity {capacity}; {os.cpu_count()} CPU cores; median of {args.repeat} runs\n")
    with tempfile.TemporaryDirectory() as tmp:
        names = ("decoder_tflite_fp32", "decoder_onnx_fp32", "decoder_tflite_dynamic_int8")
        made = export_decoders(model, Path(tmp) / "steps", names, capacity=capacity)
        runners = {n: RUNNERS[made[n]["format"]](made[n]["path"]) for n in names}
        empty = step_model(model, capacity).empty_cache(1)

        def cached(name: str, n: int):
            runner = runners[name]
            return lambda: greedy(runner.step, dict(empty), prompt, capacity, n, prefill_len=runner.width)

        def tflite_recompute(n: int):
            runner = runners["decoder_tflite_fp32"]

            def run() -> None:
                seq = list(prompt)
                for _ in range(n):  # the whole window once per token, no cache carried
                    seq.append(greedy(runner.step, dict(empty), seq, capacity, 1, prefill_len=runner.width)[0])
            return run

        def onnx_recompute(n: int):
            runner = runners["decoder_onnx_fp32"]

            def run() -> None:
                seq = list(prompt)
                for _ in range(n):  # the growing prefix, an empty cache each time
                    seq.append(greedy(runner.step, dict(empty), seq, capacity, 1, prefill_len=None)[0])
            return run

        def hub_generate(n: int):
            padded = np.zeros((1, args.prompt + n), np.int32)
            padded[0, :args.prompt] = prompt
            return lambda: model.generate({"token_ids": padded, "padding_mask": padded > 0}, stop_token_ids=None)

        def keras_recompute(n: int):
            return lambda: greedy_full(model, [prompt], n, steps=capacity)

        rows = [("TFLite fp32, cached (dnnkit decode)", lambda n: cached("decoder_tflite_fp32", n)),
                ("TFLite dynamic int8, cached", lambda n: cached("decoder_tflite_dynamic_int8", n)),
                ("TFLite fp32, recompute (prefill per token)", tflite_recompute),
                ("onnxruntime fp32, cached (dnnkit step)", lambda n: cached("decoder_onnx_fp32", n)),
                ("onnxruntime fp32, recompute (growing prefix)", onnx_recompute),
                ("keras-hub generate() (XLA, its own cache)", hub_generate),
                ("Keras, recompute (dnnkit's reference)", keras_recompute)]
        figures: dict[str, dict[int, float]] = {}
        print(f"{'tokens/s':46s}" + "".join(f"{n:>10d}" for n in args.new))
        for label, make in rows:
            figures[label] = {}
            for n in args.new:
                repeat = 1 if "Keras, recompute" in label and n > 64 else args.repeat
                figures[label][n] = n / median_seconds(make(n), repeat)
            print(f"{label:46s}" + "".join(f"{figures[label][n]:10.1f}" for n in args.new))
        print("\nsame-run ratios (tokens/s over tokens/s)")
        ratios = [("TFLite cached / TFLite recompute", "TFLite fp32, cached (dnnkit decode)",
                   "TFLite fp32, recompute (prefill per token)"),
                  ("onnxruntime cached / onnxruntime recompute", "onnxruntime fp32, cached (dnnkit step)",
                   "onnxruntime fp32, recompute (growing prefix)"),
                  ("TFLite cached / keras-hub generate()", "TFLite fp32, cached (dnnkit decode)",
                   "keras-hub generate() (XLA, its own cache)"),
                  ("onnxruntime cached / keras-hub generate()", "onnxruntime fp32, cached (dnnkit step)",
                   "keras-hub generate() (XLA, its own cache)")]
        for label, top, bottom in ratios:
            print(f"{label:46s}" + "".join(f"{figures[top][n] / figures[bottom][n]:10.2f}" for n in args.new))

        head_dim = args.hidden // args.heads
        cache_bytes = 2 * args.layers * args.heads * capacity * head_dim * 4
        weights = sum(int(np.prod(w.shape)) for w in model.weights) * 4
        print(f"\ncache memory: {2 * args.layers} tensors of (1, {args.heads}, {capacity}, {head_dim}) float32 = "
              f"{cache_bytes / 2**10:.1f} KiB per sequence ({cache_bytes / weights:.3f} of the weights' "
              f"{weights / 2**20:.2f} MiB), passed in and out of every call")

        print("\nTFLite decode cost against the allocated capacity (one decode call at position "
              f"{args.prompt}, fp32)")
        base = None
        for cap in args.capacities:
            made = export_decoders(model, Path(tmp) / f"cap{cap}", ("decoder_tflite_fp32",), capacity=cap)
            runner = RUNNERS["tflite"](made["decoder_tflite_fp32"]["path"])
            state = step_model(model, cap).empty_cache(1)
            token, pos = np.array([[prompt[-1]]], np.int32), np.array([[args.prompt]], np.int32)
            per_call = median_seconds(lambda: [runner.step(token, pos, state) for _ in range(50)], args.repeat) / 50
            base = base or per_call
            print(f"  capacity {cap:5d}: {per_call * 1e3:7.3f} ms per decode call ({per_call / base:.2f}x capacity "
                  f"{args.capacities[0]}'s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
