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
from typing import Any

import numpy as np

from dnnkit.core.generation import greedy, onnx_name, state_name
from dnnkit.verification.criteria import FAIL, PASS, agreement_check, degradation_check


def _tflite_step(path: str) -> tuple[Any, int, list[str]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=path)
    prefill, decode = interpreter.get_signature_runner("prefill"), interpreter.get_signature_runner("decode")
    width = int(prefill.get_input_details()["tokens"]["shape"][1])
    ops = sorted({d["op_name"] for d in interpreter._get_ops_details()})  # noqa: SLF001 - LiteRT's only op list

    def step(tokens: np.ndarray, pos: np.ndarray, caches: dict[str, np.ndarray]) -> tuple:
        out = (prefill if tokens.shape[1] > 1 else decode)(tokens=tokens, input_pos=pos, **caches)
        return out.pop("logits"), out
    return step, width, ops


def _onnx_step(path: str) -> tuple[Any, int | None, list[str]]:
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
        return got.pop("logits"), {state_name(k): v for k, v in got.items()}
    return step, axis if isinstance(axis, int) else None, ops


def _onnx_nodes(path: str) -> list[Any]:
    import onnx

    return list(onnx.load(path, load_external_data=False).graph.node)


def _saved_model_step(path: str) -> tuple[Any, int, list[str]]:
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    prefill, decode = loaded.signatures["prefill"], loaded.signatures["decode"]
    width = int(prefill.structured_input_signature[1]["tokens"].shape[1])

    def step(tokens: np.ndarray, pos: np.ndarray, caches: dict[str, np.ndarray]) -> tuple:
        out = (prefill if tokens.shape[1] > 1 else decode)(tokens=tf.constant(tokens), input_pos=tf.constant(pos),
                                                           **{k: tf.constant(v) for k, v in caches.items()})
        out = {k: v.numpy() for k, v in out.items()}
        return out.pop("logits"), out
    return step, width, []


LOOPS = {"WHILE", "Loop", "Scan"}  # TFLite's and ONNX's loop ops: a step graph holds none
SAMPLES = 5  # generations kept per artifact for the report

RUNNERS = {"tflite": _tflite_step, "onnx": _onnx_step, "saved_model": _saved_model_step}


def check_generation(fmt: str, precision: str, path: str, prompts: list[list[int]], reference: list[list[int]],
                     answers: list[list[int]], cache_shapes: dict[str, list[int]], capacity: int,
                     min_agreement: float, max_degradation: float) -> dict[str, Any]:
    """Decode every prompt through the artifact at ``path`` and judge it against Keras's tokens.

    Args:
        fmt, precision: the artifact's format and precision (fp32 must match exactly).
        prompts: the held-out prompts.
        reference: the tokens Keras generates for each (as many as its answer has).
        answers: the task's answers (the labelled next tokens).
        cache_shapes: each cache tensor's shape (batch 1).
        capacity: the cache's positions.
        min_agreement, max_degradation: the quantized artifact's limits.

    Returns:
        ``{"verdict", "prompts", "same_as_keras", "exact_match", "tokens_per_s", "failures", ...}``.
    """
    step, width, ops = RUNNERS[fmt](path)
    empty = {k: np.zeros(s, np.float32) for k, s in cache_shapes.items()}
    begin, generated = time.perf_counter(), []
    for prompt, ref in zip(prompts, reference):
        generated.append(greedy(step, dict(empty), prompt, capacity, max_new=len(ref), prefill_len=width))
    seconds = time.perf_counter() - begin
    tokens = sum(len(g) for g in generated)
    same = np.array([g == r for g, r in zip(generated, reference)])
    ref_right = np.array([r == a for r, a in zip(reference, answers)])
    art_right = np.array([g == a for g, a in zip(generated, answers)])
    result: dict[str, Any] = {
        "format": fmt, "precision": precision, "prompts": len(prompts), "same_as_keras": float(same.mean()),
        "exact_match": float(art_right.mean()), "keras_exact_match": float(ref_right.mean()),
        "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None, "ops": ops,
        "flex_ops": [o for o in ops if o.startswith("Flex")], "failures": [],
        "samples": [{"prompt": p, "generated": g} for p, g in zip(prompts[:SAMPLES], generated[:SAMPLES])]}
    mismatch = next((i for i, s in enumerate(same) if not s), None)
    if mismatch is not None:
        result["first_mismatch"] = {"prompt": prompts[mismatch], "keras": reference[mismatch],
                                    "artifact": generated[mismatch]}
    loops = sorted(set(ops) & LOOPS)
    if result["flex_ops"] or loops:
        result["failures"].append(f"ops outside the builtin set or a loop in the graph: {result['flex_ops'] + loops}")
    if precision == "fp32":
        if mismatch is not None:
            result["failures"].append(f"{int((~same).sum())} of {len(same)} sequences differ from Keras's (a float "
                                      f"artifact must match every token), first at prompt {prompts[mismatch]}")
    else:
        agreement = agreement_check(np.ones(len(same), int), same.astype(int), min_agreement)
        drop = degradation_check(agreement, ref_right, art_right, max_degradation)
        result["agreement"], result["exact_match_drop"] = agreement, drop
        for what, check in (("sequences as Keras's", agreement), ("exact-match drop", drop)):
            if check["verdict"] != PASS:
                lo, hi = check["ci"]
                result["failures"].append(f"{what} {check['value']:.4f} (n={check['n']}, 95% CI {lo:.4f}..{hi:.4f}) "
                                          f"vs limit {check['limit']:g}: {check['verdict']}")
    result["verdict"] = PASS if not result["failures"] else FAIL
    return result
