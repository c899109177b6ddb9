"""Generation artifacts checked token for token: greedy decoding of held-out prompts driven through each
artifact in its own runtime (TensorFlow, the LiteRT interpreter, onnxruntime) by the same loop
(:func:`dnnkit.core.generation.greedy`), against the tokens Keras generates recomputing the whole prefix.

An fp32 artifact must give exactly Keras's sequences (rate 1.0; anything less fails). A reduced-precision one
(fp16, dynamic-range int8: its rounding may flip a near-tie between two tokens) is judged by how many sequences
it gives as Keras does (at least ``min_agreement``) and by the exact-match accuracy it loses against the task's
answers (at most ``max_degradation``), each at 95 % confidence.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from dnnkit.core.generation import Step, first_logits, greedy, onnx_name, state_name
from dnnkit.verification.criteria import FAIL, PASS, agreement_check, degradation_check


@dataclass
class Runner:
    """A step artifact opened in its runtime: ``step`` (see :data:`dnnkit.core.generation.Step`; the state it
    returns keeps what it was given and did not change, ``encoder_hidden_states``), the prefill's fixed width
    (``None``: any; 1: token by token), the graph's ops, and ``encode`` (source (1, S) -> the decoder's first
    state and ``encoder_hidden_states``) for an encoder-decoder."""

    step: Step
    width: int | None
    ops: list[str]
    encode: Callable[[np.ndarray], dict[str, np.ndarray]] | None = None


def _tflite(path: str, encoder_path: str | None = None) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    prefill, decode = interpreter.get_signature_runner("prefill"), interpreter.get_signature_runner("decode")
    width = int(prefill.get_input_details()["tokens"]["shape"][1])
    ops = sorted({d["op_name"] for d in interpreter._get_ops_details()})  # noqa: SLF001 - LiteRT's only op list

    def step(tokens: np.ndarray, pos: np.ndarray, caches: dict[str, np.ndarray]) -> tuple:
        out = (prefill if tokens.shape[1] > 1 else decode)(tokens=tokens, input_pos=pos, **caches)
        return out.pop("logits"), {**caches, **out}
    encode = None
    if "encode" in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner("encode")
        encode = lambda source: runner(source=source)  # noqa: E731
    return Runner(step, width, ops, encode)


def _onnx(path: str, encoder_path: str | None = None) -> Runner:
    """The ONNX step takes Optimum's names (:func:`dnnkit.core.generation.onnx_name`); a dynamic token axis
    takes the prompt unpadded, a fixed one of 1 (an RNN's step) token by token."""
    import onnxruntime as ort

    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    outputs = [o.name for o in session.get_outputs()]
    axis = next(i.shape[1] for i in session.get_inputs() if i.name == "input_ids")
    ops = sorted({n.op_type for n in _onnx_nodes(path)})

    def step(tokens: np.ndarray, pos: np.ndarray, caches: dict[str, np.ndarray]) -> tuple:
        feed = {"input_ids": tokens, "position_ids": pos, **{onnx_name(k, "in"): v for k, v in caches.items()}}
        got = dict(zip(outputs, session.run(outputs, feed)))
        return got.pop("logits"), {**caches, **{state_name(k): v for k, v in got.items()}}
    encode = None
    if encoder_path:
        encoder = ort.InferenceSession(encoder_path, providers=["CPUExecutionProvider"])
        ops = sorted(set(ops) | {n.op_type for n in _onnx_nodes(encoder_path)})
        names = [o.name for o in encoder.get_outputs()]
        encode = lambda source: {state_name(k): v for k, v in  # noqa: E731
                                 zip(names, encoder.run(names, {"input_ids": source}))}
    return Runner(step, axis if isinstance(axis, int) else None, ops, encode)


def _onnx_nodes(path: str) -> list[Any]:
    import onnx

    return list(onnx.load(path, load_external_data=False).graph.node)


def _saved_model(path: str, encoder_path: str | None = None) -> Runner:
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    prefill, decode = loaded.signatures["prefill"], loaded.signatures["decode"]
    width = int(prefill.structured_input_signature[1]["tokens"].shape[1])

    def step(tokens: np.ndarray, pos: np.ndarray, caches: dict[str, np.ndarray]) -> tuple:
        out = (prefill if tokens.shape[1] > 1 else decode)(tokens=tf.constant(tokens), input_pos=tf.constant(pos),
                                                           **{k: tf.constant(v) for k, v in caches.items()})
        out = {k: v.numpy() for k, v in out.items()}
        return out.pop("logits"), {**caches, **out}
    encode = None
    if "encode" in loaded.signatures:
        fn = loaded.signatures["encode"]
        encode = lambda source: {k: v.numpy() for k, v in fn(source=tf.constant(source)).items()}  # noqa: E731
    return Runner(step, width, [], encode)


LOOPS = {"WHILE", "Loop", "Scan"}  # TFLite's and ONNX's loop ops: a step graph holds none
SAMPLES = 5  # generations kept per artifact for the report

RUNNERS: dict[str, Callable[..., Runner]] = {"tflite": _tflite, "onnx": _onnx, "saved_model": _saved_model}


def start_state(runner: Runner, empty: dict[str, np.ndarray], prompt: list[int],
                source_steps: int) -> tuple[dict[str, np.ndarray], list[int]]:
    """The state to start from and the tokens to prefill: for an encoder-decoder, the prompt's first
    ``source_steps`` tokens encoded and its rest; else the empty state and the whole prompt."""
    if not source_steps:
        return dict(empty), prompt
    if runner.encode is None:
        raise ValueError("an encoder-decoder's step artifact has no encoder (an encode signature or encoder.onnx)")
    encoded = runner.encode(np.array([prompt[:source_steps]], np.int32))
    return {**empty, **{k: np.asarray(v) for k, v in encoded.items()}}, prompt[source_steps:]


def signature_parity(runner: Runner, empty: dict[str, np.ndarray], task: dict[str, Any]) -> dict[str, Any] | None:
    """The logits the artifact's prefill (and encode) and first decode give on the probe prompts, against the
    Keras step's (``task["probe_logits"]``): the largest difference and the float limit ``atol + rtol x
    max|logit|``. ``None`` where the task has no probes."""
    probes, want = task.get("probe_prompts") or [], task.get("probe_logits") or []
    if not probes:
        return None
    source_steps = int(task.get("source_steps") or 0)
    worst, scale = 0.0, 0.0
    for prompt, ref in zip(probes, want):
        state, decoder_prompt = start_state(runner, empty, prompt, source_steps)
        got = first_logits(runner.step, state, decoder_prompt, runner.width)
        ref = np.asarray(ref, np.float32)
        worst, scale = max(worst, float(np.abs(got - ref).max())), max(scale, float(np.abs(ref).max()))
    limit = float(task.get("atol", 1e-4)) + float(task.get("rtol", 1e-4)) * scale
    return {"prompts": len(probes), "max_diff": worst, "limit": limit, "verdict": PASS if worst <= limit else FAIL}


def check_generation(made: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    """Decode every prompt through the step artifact ``made`` and judge it against Keras's tokens.

    Args:
        made: the artifact: ``format``, ``precision`` (fp32 must match exactly), ``path`` (and
            ``encoder_path``, an encoder-decoder's ONNX encoder).
        task: ``prompts`` (held out; an encoder-decoder's: its source steps, then the decoder's first tokens),
            ``reference`` (the tokens Keras generates for each, as many as its answer has), ``answers`` (the
            labelled next tokens), ``cache_shapes`` (each state tensor's shape, batch 1), ``capacity`` (the
            decoder's positions), ``source_steps`` (0 for a language model), ``min_agreement`` and
            ``max_degradation`` (a reduced-precision artifact's limits).

    Returns:
        ``{"verdict", "prompts", "same_as_keras", "exact_match", "tokens_per_s", "failures", ...}``.
    """
    fmt, precision = made["format"], made["precision"]
    prompts, reference, answers = task["prompts"], task["reference"], task["answers"]
    runner = RUNNERS[fmt](made["path"], made.get("encoder_path"))
    ops = runner.ops
    empty = {k: np.zeros(s, np.float32) for k, s in task["cache_shapes"].items()}
    begin, generated = time.perf_counter(), []
    for prompt, ref in zip(prompts, reference):
        state, decoder_prompt = start_state(runner, empty, prompt, int(task.get("source_steps") or 0))
        generated.append(greedy(runner.step, state, decoder_prompt, task["capacity"], max_new=len(ref),
                                prefill_len=runner.width))
    seconds = time.perf_counter() - begin
    parity = signature_parity(runner, empty, task)
    if parity and precision != "fp32":  # recorded; a reduced-precision file is judged by its tokens
        parity = {k: v for k, v in parity.items() if k not in ("limit", "verdict")}
    tokens = sum(len(g) for g in generated)
    same = np.array([g == r for g, r in zip(generated, reference)])
    scored = answers is not None  # a model brought without a task (a keras-hub LM) is judged against Keras alone
    ref_right = np.array([r == a for r, a in zip(reference, answers)]) if scored else None
    art_right = np.array([g == a for g, a in zip(generated, answers)]) if scored else None
    result: dict[str, Any] = {
        "format": fmt, "precision": precision, "prompts": len(prompts), "same_as_keras": float(same.mean()),
        "exact_match": float(art_right.mean()) if scored else None,
        "keras_exact_match": float(ref_right.mean()) if scored else None,
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None, "ops": ops,
        "flex_ops": [o for o in ops if o.startswith("Flex")], "failures": [],
        "samples": [{"prompt": p, "generated": g} for p, g in zip(prompts[:SAMPLES], generated[:SAMPLES])],
        **({"signature_parity": parity} if parity else {})}
    mismatch = next((i for i, s in enumerate(same) if not s), None)
    if mismatch is not None:
        result["first_mismatch"] = {"prompt": prompts[mismatch], "keras": reference[mismatch],
                                    "artifact": generated[mismatch]}
    loops = sorted(set(ops) & LOOPS)
    if result["flex_ops"] or loops:
        result["failures"].append(f"ops outside the builtin set or a loop in the graph: {result['flex_ops'] + loops}")
    if precision == "fp32":
        if parity and parity["verdict"] != PASS:
            result["failures"].append(f"prefill/decode logits differ from the Keras step's by {parity['max_diff']:.3g} "
                                      f"(limit {parity['limit']:.3g}) on {parity['prompts']} prompts")
        if mismatch is not None:
            result["failures"].append(f"{int((~same).sum())} of {len(same)} sequences differ from Keras's (a float "
                                      f"artifact must match every token), first at prompt {prompts[mismatch]}")
    else:
        agreement = agreement_check(np.ones(len(same), int), same.astype(int), task["min_agreement"])
        result["agreement"] = agreement
        checks = [("sequences as Keras's", agreement)]
        if scored:
            result["exact_match_drop"] = degradation_check(agreement, ref_right, art_right, task["max_degradation"])
            checks.append(("exact-match drop", result["exact_match_drop"]))
        for what, check in checks:
            if check["verdict"] != PASS:
                lo, hi = check["ci"]
                result["failures"].append(f"{what} {check['value']:.4f} (n={check['n']}, 95% CI {lo:.4f}..{hi:.4f}) "
                                          f"vs limit {check['limit']:g}: {check['verdict']}")
    result["verdict"] = PASS if not result["failures"] else FAIL
    return result
