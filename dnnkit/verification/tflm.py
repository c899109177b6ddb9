"""TensorFlow Lite Micro as a fourth runtime: a ``.tflite`` file run in TFLM's own interpreter (``pip install
tflite-micro``: the reference kernels a microcontroller build compiles), in a child process of its own so that a
crash or a hang costs this check only, with the arena it really allocates.

The child loads the file with a generous arena, reads TFLM's ``RecordingMicroAllocator`` report (total, head:
the activation plan, tail: persistent buffers and structs), then searches for the smallest ``arena_size`` that
allocates (what a firmware's ``tensor_arena[]`` must hold), and runs the first inputs in TFLM and in LiteRT's
reference kernels (``OpResolverType.BUILTIN_REF``), recording how many output quanta apart they are. Where both
use the same reference integer arithmetic they agree within one quantum (a requantization rounded the other way;
measured: equal on MobileNetV2 and the digits CNN); TFLM's int8 LOGISTIC and TANH are implemented differently
(the unrolled digits GRU and LSTM: 5 and 4 quanta), and LiteRT's optimized and XNNPACK kernels drift further
through a deep network (5-6 quanta on MobileNetV2, same top-1). So the distance is a recorded figure, and the
criterion is the artifact's own: TFLM's top-1 agreement with Keras on these inputs, judged by the same rule
(a decisive fail fails the artifact; with few inputs an inconclusive one is recorded).

    python -m dnnkit.verification.tflm MODEL.tflite INPUTS.npz OUT.npz   (the child; used by :func:`tflm_check`)
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from typing import Any

import numpy as np

from dnnkit.core.heads import is_class
from dnnkit.core.metrics import predicted_classes
from dnnkit.verification.criteria import agreement_check

TFLM_INPUTS = 200  # inputs run in TFLM per artifact: its reference kernels take ~14 ms per MobileNetV2 input here
FLOAT_INPUTS = 20  # for a float (or hybrid) file: TFLM's float reference kernels are far slower than its int8 ones
FLOAT_MAX_BYTES = 16 << 20  # a float file larger than any microcontroller's flash (16 MiB of QSPI) is not run
TIMEOUT_S = 300.0  # at most; and at most TIMEOUT_SHARE of the artifact's own verification timeout
TIMEOUT_SHARE = 0.4
# Ops TFLM has kernels for but does not run here: its WHILE never returned on the series GRU's fp32 file (Keras's
# recurrent loop; measured over 300 s for 48 steps, which LiteRT runs in 0.3 ms). dnnkit's int8 files unroll it.
NOT_RUN_OPS = frozenset({"WHILE"})
START_ARENA = 64 << 20
ALIGN = 16


def available() -> str | None:
    """``None`` when the TFLM interpreter can be imported, else why not."""
    if importlib.util.find_spec("tflite_micro") is None:
        return ("tflite-micro is not installed (its wheels are built for x86_64 Linux only: "
                "pip install tflite-micro)")
    return None


def tflm_check(path: str | os.PathLike[str], x: np.ndarray | dict[str, np.ndarray],
               limit: int = TFLM_INPUTS, timeout: float = TIMEOUT_S) -> tuple[dict[str, Any], list[np.ndarray]]:
    """Run ``path`` in TFLM and in LiteRT's reference kernels (in a child process) and compare them.

    Args:
        path: the ``.tflite`` file.
        x: float rows to run, one at a time (at most ``limit`` are used), quantized as the file's inputs say: an
            array for a one-input file, else a dict by the inputs' signature names.
        limit: the most rows run.
        timeout: seconds the child may take (a hang becomes ``timeout``).

    Returns:
        ``(facts, outputs)``: ``facts`` is ``{"status": "ran"|"failed"|"crashed"|"timeout"|"unavailable", "reason",
        "arena": {"total", "head", "tail", "smallest_arena_size"}, "inputs", "vs_litert_reference": per output
        ``{"max_quanta"}`` (integer outputs) or ``{"max_abs_diff"}`` (float ones), "within_one_quantum"}``;
        ``outputs``: TFLM's outputs, dequantized, in the signature's output order (empty unless it ran).
    """
    missing = available()
    if missing:
        return {"status": "unavailable", "reason": missing}, []
    if isinstance(x, dict) and len(x) == 1:
        x = next(iter(x.values()))
    feed = {k: np.asarray(v)[:limit] for k, v in x.items()} if isinstance(x, dict) else {"": np.asarray(x)[:limit]}
    n_rows = min(len(v) for v in feed.values())
    with tempfile.TemporaryDirectory(prefix="dnnkit-tflm-") as tmp:
        source, result = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(source, **{f"in:{k}": v for k, v in feed.items()})
        try:
            proc = subprocess.run([sys.executable, "-m", "dnnkit.verification.tflm", str(path), source, result],
                                  capture_output=True, timeout=min(timeout, TIMEOUT_S), text=True)
        except subprocess.TimeoutExpired:
            return {"status": "timeout", "reason": f"TFLM did not finish within {min(timeout, TIMEOUT_S):g} s"}, []
        if proc.returncode != 0 or not os.path.isfile(result):
            if proc.returncode < 0:
                return {"status": "crashed",
                        "reason": f"TFLM process killed by {signal.Signals(-proc.returncode).name}"}, []
            lines = [line for line in (proc.stderr or "").splitlines() if line.strip()]
            return {"status": "failed", "reason": (lines[-1] if lines else f"exit {proc.returncode}")[:300]}, []
        with np.load(result) as got:
            report = json.loads(str(got["report"]))
            if report.get("error"):
                return {"status": "failed", "reason": report["error"], "arena": report.get("arena")}, []
            count = report["outputs"]
            tflm = [got[f"tflm{k}"] for k in range(count)]
            litert = [got[f"ref{k}"] for k in range(count)]
            outputs = [got[f"deq{k}"] for k in range(count)]
    comparison = []
    for mine, ref in zip(tflm, litert):
        if np.issubdtype(mine.dtype, np.integer):
            steps = int(np.max(np.abs(mine.astype(np.int64) - ref.astype(np.int64)))) if mine.size else 0
            comparison.append({"max_quanta": steps})
        else:
            comparison.append({"max_abs_diff": float(np.max(np.abs(mine - ref))) if mine.size else 0.0})
    within = all(c.get("max_quanta", 0) <= 1 for c in comparison)
    return {"status": "ran", "arena": report["arena"], "inputs": int(n_rows), "output_names": report["output_names"],
            "vs_litert_reference": comparison, "within_one_quantum": within}, outputs


def tflm_facts(path: str | os.PathLike[str], ref: Any, fit: dict[str, Any], min_agreement: float,
               z: float, *, full_integer: bool = True, timeout: float = TIMEOUT_S / TIMEOUT_SHARE) -> dict[str, Any]:
    """What ``device_fit["tflm"]`` records of a ``.tflite`` file: :func:`tflm_check` on the reference's inputs
    (:data:`TFLM_INPUTS` of a full-integer file, :data:`FLOAT_INPUTS` of another, which is not run at all over
    :data:`FLOAT_MAX_BYTES`), the estimate of :mod:`dnnkit.verification.device_fit` over the measured arena, and
    TFLM's top-1 agreement with Keras on those inputs (one classification output), judged as the artifact's own
    agreement is (``min_agreement``, one-sided bound at ``z``: ``agreement_with_keras.verdict``). ``timeout``: the
    artifact's verification timeout, of which the TFLM child gets :data:`TIMEOUT_SHARE` (a hang there must not
    cost the artifact its verdict)."""
    if fit.get("tflm_unsupported_ops"):
        missing = ", ".join(fit["tflm_unsupported_ops"])
        return {"status": "skipped", "reason": f"TFLite Micro has no kernel for {missing}"}
    hanging = sorted(NOT_RUN_OPS & set(fit.get("ops") or ()))
    if hanging:
        return {"status": "skipped", "reason": f"{', '.join(hanging)}: TFLite Micro's kernel did not return on "
                                               "Keras's recurrent loop (measured); not run"}
    size = os.path.getsize(path)
    if not full_integer and size > FLOAT_MAX_BYTES:
        return {"status": "skipped", "reason": f"a {size / 2**20:.1f} MiB float file: larger than a "
                                               f"microcontroller's flash ({FLOAT_MAX_BYTES >> 20} MiB)"}
    facts, outputs = tflm_check(path, ref.x, TFLM_INPUTS if full_integer else FLOAT_INPUTS, TIMEOUT_SHARE * timeout)
    arena = facts.get("arena") or {}
    if arena.get("head") and fit.get("arena_estimate_bytes"):
        facts["estimate_over_head"] = round(fit["arena_estimate_bytes"] / arena["head"], 3)
        facts["estimate_over_total"] = round(fit["arena_estimate_bytes"] / arena["total"], 3)
    if arena.get("smallest_arena_size") and fit.get("tflm_arena_estimate_bytes"):
        facts["tflm_estimate_over_smallest"] = round(fit["tflm_arena_estimate_bytes"]
                                                     / arena["smallest_arena_size"], 3)
    names = facts.get("output_names") or []
    if len(outputs) != len(ref.outputs):
        return facts
    if sorted(names) == sorted(ref.output_names):  # the signature's order to the reference's
        outputs = [outputs[names.index(n)] for n in ref.output_names]
    checks = []
    for head, expected, got in zip(ref.heads, ref.outputs, outputs):
        if is_class(head) and got.shape[1:] == expected.shape[1:]:
            n = len(got)
            checks.append(agreement_check(predicted_classes(head, expected[:n]), predicted_classes(head, got),
                                          min_agreement, z))
    if checks:  # several classification outputs: the one furthest below its limit speaks for the file
        check = min(checks, key=lambda c: (c["verdict"] != "fail", c["value"]))
        facts["top1_agreement_with_keras"] = check["value"]
        facts["agreement_with_keras"] = {k: check[k] for k in ("value", "n", "ci", "limit", "verdict")}
    return facts


_ALLOCATION = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def _allocations(interpreter: Any) -> dict[str, int]:
    """TFLM's own report (printed by C++ to file descriptor 2 once the interpreter has run), parsed."""
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        os.dup2(capture.fileno(), 2)
        try:
            interpreter.print_allocations()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    return {k: int(v) for k, v in _ALLOCATION.findall(text)}


def _child(path: str, source: str, result: str) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tflite_micro.python.tflite_micro import runtime

    def load(size: int) -> Any:
        return runtime.Interpreter.from_file(path, arena_size=size)

    report: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    try:
        interpreter = load(START_ARENA)
        reference = Interpreter(model_path=path, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        ins, outs = reference.get_input_details(), reference.get_output_details()
        for k, detail in enumerate(ins):  # batch 1, the shapes TFLM allocated
            shape = [int(v) for v in interpreter.get_input_details(k)["shape"]]
            reference.resize_tensor_input(detail["index"], shape)
            interpreter.set_input(np.zeros(shape, detail["dtype"]), k)
        reference.allocate_tensors()
        interpreter.invoke()  # the report covers what invoking allocates too
        arena = _allocations(interpreter)
        high = arena["total"]
        while high < START_ARENA and not _allocates(load, high):
            high = min(2 * high, START_ARENA)  # START_ARENA allocated above
        low = arena.get("head", 0)  # the activation plan alone: less than everything
        while high - low > ALIGN:
            mid = (low + high) // 2 // ALIGN * ALIGN
            if mid <= low:
                break
            low, high = (low, mid) if _allocates(load, mid) else (mid, high)
        report["arena"] = {**arena, "smallest_arena_size": high}
        in_order, out_order, report["output_names"] = _signature_order(reference, ins, outs)
        with np.load(source) as given:
            feed = [given[f"in:{name}"] for name in in_order]
        got: dict[str, list[np.ndarray]] = {}
        for r in range(min(len(v) for v in feed)):
            for k, detail in enumerate(ins):
                value = feed[k][r][None]
                dtype = np.dtype(detail["dtype"])
                if np.issubdtype(dtype, np.integer) and np.issubdtype(value.dtype, np.floating):
                    scale, zero = _quantization(interpreter.get_input_details(k))
                    info = np.iinfo(dtype)
                    value = np.clip(np.round(value / scale + zero), info.min, info.max)
                value = value.astype(dtype)
                interpreter.set_input(value, k)
                reference.set_tensor(detail["index"], value)
            interpreter.invoke()
            reference.invoke()
            for j, k in enumerate(out_order):  # j: the signature's order, k: the subgraph's
                mine = np.array(interpreter.get_output(k))
                o_scale, o_zero = _quantization(interpreter.get_output_details(k))
                got.setdefault(f"tflm{j}", []).append(mine[0])
                got.setdefault(f"ref{j}", []).append(reference.get_tensor(outs[k]["index"])[0])
                got.setdefault(f"deq{j}", []).append(
                    (mine[0].astype(np.float32) - o_zero) * o_scale if np.issubdtype(mine.dtype, np.integer)
                    else mine[0])
        arrays = {k: np.stack(v) for k, v in got.items()}
        report["outputs"] = len(outs)
    except Exception as exc:  # noqa: BLE001 - recorded, not raised: the parent reports it
        report["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    np.savez(result, report=json.dumps(report), **arrays)


def _signature_order(interpreter: Any, ins: list[dict[str, Any]],
                     outs: list[dict[str, Any]]) -> tuple[list[str], list[int], list[str]]:
    """The signature name of each subgraph input (in the subgraph's order, as TFLM numbers them; ``""`` for a
    file with one input), the subgraph index of each signature output in the signature's order, and those
    outputs' names (none without a signature)."""
    signature = interpreter._get_full_signature_list().get("serving_default")
    if not signature:
        if len(ins) != 1:
            raise ValueError(f"{len(ins)} inputs and no serving_default signature to name them")
        return [""], list(range(len(outs))), []
    by_index = {index: name for name, index in signature["inputs"].items()}
    in_order = [by_index[d["index"]] for d in ins] if len(ins) > 1 else [""]
    position = {d["index"]: k for k, d in enumerate(outs)}
    return in_order, [position[i] for i in signature["outputs"].values()], list(signature["outputs"])


def _quantization(detail: dict[str, Any]) -> tuple[float, int]:
    """TFLM's per-tensor ``(scale, zero_point)`` of an I/O tensor (``(1, 0)`` for a float one)."""
    params = detail.get("quantization_parameters") or {}
    scales, zeros = params.get("scales", []), params.get("zero_points", [])
    if len(scales) and float(scales[0]):
        return float(scales[0]), int(zeros[0])
    return 1.0, 0


def _allocates(load: Any, size: int) -> bool:
    """Whether an interpreter with a ``size``-byte arena allocates, tried in a forked process: TFLM raises on
    most arenas too small but crashes on some (measured: SIGSEGV in the interpreter's constructor for the
    digits MLP), and a crash there says the same as a refusal."""
    pid = os.fork()
    if pid == 0:  # the probe: quiet, and gone without running any cleanup of the parent's
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)
        try:
            load(size)
            code = 0
        except BaseException:  # noqa: BLE001
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


if __name__ == "__main__":
    _child(*sys.argv[1:4])
