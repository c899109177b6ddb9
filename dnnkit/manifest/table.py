"""Manifest -> a terminal table (artifact, size, accuracy, parity, latency, status)."""

from __future__ import annotations

from typing import Any

from dnnkit.core.heads import is_value
from dnnkit.manifest.generation import generation_lines


def size_text(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1024:.1f} KB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MB"


def parity_text(entry: dict[str, Any]) -> str:
    parity = entry.get("parity") or {}
    if not parity:
        return "-"
    if entry.get("checked_as") == "quantized" and parity.get("top1_agreement") is not None:
        return f"agree {parity['top1_agreement']:.3f}"
    if entry.get("checked_as") == "quantized" and parity.get("sqnr_db") is not None:
        return f"sqnr {parity['sqnr_db']:.1f} dB"
    return f"diff {parity['max_abs_diff']:.1e}"


def main_metric(ref: dict[str, Any]) -> str | None:
    """The metric a table shows: accuracy (classifiers) or RMSE (regression); with several outputs,
    the first labelled output's, as ``NAME/metric``; ``None`` when no output has labels."""
    if ref["head"] != "multi":
        return "rmse" if is_value(ref["head"]) else "accuracy"
    for out in ref.get("outputs") or []:
        if out.get("labelled") and out["head"] != "features":
            return f"{out['name']}/" + ("rmse" if is_value(out["head"]) else "accuracy")
    return None


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return lines


def optimize_table(opt: dict[str, Any]) -> list[str]:
    """The candidates of ``dnnkit optimize``: figures, goals met, Pareto front, the pick."""
    g = opt["goals"]
    wanted = [f"degradation <= {g['max_degradation']:g}"]
    if g.get("max_size_kb") is not None:
        wanted.append(f"size <= {g['max_size_kb']:g} KB")
    if g.get("max_latency_ms") is not None:
        wanted.append(f"p50 <= {g['max_latency_ms']:g} ms")
    if g.get("max_arena_kb") is not None:
        wanted.append(f"TFLite arena <= {g['max_arena_kb']:g} KiB")
    if g.get("device"):
        wanted.append(f"TFLite fits {g['device']['name']} ({g['device']['ram_kb']:g} KiB RAM, "
                      f"{g['device']['flash_kb']:g} KiB flash)")
    lines = [f"optimize: {', '.join(wanted)}; objective {g['objective']}; target {g['target']}"]
    rows = [("candidate", "size", "degradation", "agreement", "p50 ms", "status", "goals missed", "pareto")]
    for r in opt["candidates"]:
        missed = [k for k, v in (r.get("goals") or {}).items() if v is False]
        rows.append((("* " if r.get("chosen") else "  ") + r["name"], size_text(r.get("bytes")),
                     "-" if r.get("degradation") is None else f"{r['degradation']:+.4f}",
                     "-" if r.get("top1_agreement") is None else f"{r['top1_agreement']:.4f}",
                     "-" if r.get("latency_p50_ms") is None else f"{r['latency_p50_ms']:.3f}",
                     r["status"], ", ".join(missed) or "-",
                     {True: "yes", False: "no", None: "-"}[r.get("pareto")]))
    lines += _columns(rows)
    paths = {r["name"]: r.get("path") for r in opt["candidates"]}
    for target, name in opt.get("chosen", {}).items():
        lines.append(f"CHOSEN {target}: {name}" + (f" ({paths[name]})" if paths.get(name) else ""))
    for folder, status in (opt.get("folders") or {}).items():
        lines.append(f"{folder}/: the chosen artifacts of the compressed model (own manifest): {status}")
    for p in (opt.get("passes") or {}).get("records", []):
        lines.append(f"passes/ candidates: after {p['type']}, degradation {p['degradation']:+.4f} from the original")
    for target, names in opt.get("closest", {}).items():
        lines.append(f"NO {target} CANDIDATE meets every goal; closest: {', '.join(names) or 'none converted'}")
    return lines


# A SLOWER line needs a difference that timing noise does not make: a quarter more and 0.01 ms more (the p50s of
# a 0.03 ms model differ by a few percent between two runs of the same file).
SLOWER_RATIO, SLOWER_MS = 1.25, 0.01


def slower_than_fp32(artifacts: list[dict[str, Any]]) -> list[str]:
    """A line per quantized artifact whose batch-1 p50 is clearly above its fp32 twin's (same format)."""
    p50 = {(e["format"], e["precision"]): (e.get("latency_ms") or {}).get("p50") for e in artifacts}
    lines = []
    for e in artifacts:
        mine, fp32 = (e.get("latency_ms") or {}).get("p50"), p50.get((e["format"], "fp32"))
        if (e["precision"] != "fp32" and mine and fp32 and mine >= SLOWER_RATIO * fp32
                and mine - fp32 >= SLOWER_MS):
            lines.append(f"SLOWER {e['name']}: batch-1 p50 {mine:.3f} ms vs {fp32:.3f} ms for {e['format']} fp32 "
                         f"({mine / fp32:.2f}x) on this CPU")
    return lines


# A reduced-precision file is LARGER when it is half as large again and 16 KiB more (a few hundred bytes of a
# tiny model's quantization parameters are not news; an unrolled LSTM's 8x is)
LARGER_RATIO, LARGER_BYTES = 1.5, 16 * 1024


def larger_than_float(manifest: dict[str, Any]) -> list[str]:
    """A line per reduced-precision artifact larger than its fp32 twin (same format), or than the reference model
    where there is none, with the cause where the manifest knows it (recurrent layers unrolled)."""
    arts = manifest["artifacts"]
    fp32 = {e["format"]: e.get("bytes") for e in arts if e["precision"] == "fp32"}
    lines = []
    for e in arts:
        base = fp32.get(e["format"])
        than = f"{e['format']} fp32" if base else "the reference model"
        base = base or manifest["reference"].get("bytes")
        if (e["precision"] == "fp32" or not e.get("bytes") or not base or e["bytes"] < LARGER_RATIO * base
                or e["bytes"] - base < LARGER_BYTES):
            continue
        steps = [f for f in e.get("fallbacks") or [] if "unroll" in str(f)]
        why = "; recurrent layers unrolled: the cell's ops once per time step" if steps else ""
        lines.append(f"LARGER {e['name']}: {size_text(e['bytes'])}, {e['bytes'] / base:.1f}x {than}'s "
                     f"{size_text(base)}{why}")
    return lines


TIME_STAGES = (("train_s", "training"), ("passes_s", "compression passes"), ("reference_s", "reference outputs"),
               ("conversions_s", "conversions"), ("verifications_s", "checks"),
               ("overlap_s", "checks during conversions"),
               ("ladder_s", "quantization ladder"), ("selective_fallback_s", "selective fallback"), ("latency_s", "timing"),
               ("generation_s", "generation artifacts"), ("report_s", "report"))


def time_line(timings: dict[str, Any] | None) -> list[str]:
    """``TIME 14.1 s: training 4.7, conversions 2.7, ...; CPU 21.0 s (parent 9.1, converter 8.3, verifier
    3.6)`` (stages over 0.05 s; CPU: user + system seconds of each process)."""
    if not timings or "wall_s" not in timings:
        return []
    parts = [f"{label} {timings[key]:.1f}" for key, label in TIME_STAGES if (timings.get(key) or 0) >= 0.05]
    cpu = timings.get("cpu_s") or {}
    used = f"; CPU {sum(cpu.values()):.1f} s (" + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()) + ")" if cpu else ""
    return [f"TIME {timings['wall_s']:.1f} s: " + ", ".join(parts) + used + " (manifest timings)"]


def search_lines(artifacts: list[dict[str, Any]]) -> list[str]:
    """What the int8 search did for each artifact it ran on: the ladder's rungs with their agreement
    (``LADDER``), and a selective float fallback taken (``FALLBACK``)."""
    lines = []
    for e in artifacts:
        conversion = e.get("conversion") or {}
        ladder = conversion.get("quantization_ladder") or {}
        if ladder.get("tried"):
            first = ladder.get("first_attempt") or {}
            was = f"all-int8 {first['top1_agreement']:.4f}; " if "top1_agreement" in first else ""
            tried = ", ".join(f"{r['rung']} " + (f"{r['top1_agreement']:.4f}" if "top1_agreement" in r else "")
                              + f" {r['status']}" for r in ladder["tried"])
            took = f"took {ladder['chosen']}" if ladder.get("chosen") else "no rung verified"
            lines.append(f"LADDER {e['name']}: {took} ({was}{tried})")
        fb = conversion.get("selective_fallback") or {}
        if fb.get("chosen"):
            first = fb["first_attempt"]
            was = f", agreement {first['top1_agreement']:.4f} all-int8" if "top1_agreement" in first else ""
            lines.append(f"FALLBACK {e['name']}: {len(fb['float_layers'])} of {fb['quantized_layers']} quantized "
                         f"layers kept float (selective fallback{was})")
    return lines


def tflm_lines(artifacts: list[dict[str, Any]]) -> list[str]:
    """One ``tflm`` line per artifact run in TensorFlow Lite Micro: its measured arena beside the estimate, how
    far it is from LiteRT's reference kernels, its top-1 agreement with Keras; or why it did not run."""
    lines = []
    for e in artifacts:
        t = (e.get("device_fit") or {}).get("tflm")
        if not t:
            continue
        if t.get("status") != "ran":
            lines.append(f"tflm {e['name']}: {t.get('status')} ({t.get('reason')})")
            continue
        a = t["arena"]
        quanta = max((c.get("max_quanta", 0) for c in t.get("vs_litert_reference", [])), default=0)
        agree = (f", top-1 agreement with Keras {t['top1_agreement_with_keras']:.3f}"
                 if "top1_agreement_with_keras" in t else "")
        estimate = f"; plan estimate {t['estimate_over_head']:.2f}x head" if "estimate_over_head" in t else ""
        if "tflm_estimate_over_smallest" in t:
            estimate += f", arena estimate {t['tflm_estimate_over_smallest']:.2f}x"
        lines.append(f"tflm {e['name']}: arena {a['smallest_arena_size']} B (head {a['head']} + tail {a['tail']}"
                     f"{estimate}), {quanta} quanta from LiteRT's reference kernels{agree} "
                     f"({t['inputs']} inputs)")
    return lines


def budget_lines(manifest: dict[str, Any]) -> list[str]:
    """One line per TFLite artifact judged by the recipe's ``[device]`` budget: fits or not, by how much."""
    device = manifest.get("device")
    if not device:
        return []
    lines = []
    for e in manifest["artifacts"]:
        b = (e.get("device_fit") or {}).get("budget")
        if not b:
            continue
        need = [f"{what} {r['need_bytes'] / 1024:.1f} of {r['have_bytes'] / 1024:.1f} KiB"
                for what, r in (("flash", b.get("flash")), ("RAM", b.get("ram"))) if r]
        arena = f"; arena {b['arena_source']}" if b.get("ram") else ""
        lines.append(f"device {device['name']} {e['name']}: {b['verdict'].replace('_', ' ').upper()} "
                     f"({', '.join(need)}{arena}): {b['reason']}")
    return lines


def table(manifest: dict[str, Any]) -> str:
    """Render the manifest as a fixed-width table, one line per artifact, failures below."""
    ref = manifest["reference"]
    metric = main_metric(ref)
    ref_value = (ref.get("metrics") or {}).get(metric) if metric else None
    rows = [("artifact", "format", "precision", "size", metric or "metric", "parity", "p50 ms", "status")]
    kind = "saved_model" if str(ref.get("model", "")).endswith("saved_model") else "keras"
    rows.append((f"{kind} (reference)", kind, "fp32", size_text(ref.get("bytes")),
                 "-" if ref_value is None else f"{ref_value:.4f}", "-", "-", "reference"))
    for e in manifest["artifacts"]:
        m = (e.get("metrics") or {}).get(metric) if metric else None
        lat = (e.get("latency_ms") or {}).get("p50")
        rows.append((e["name"], e["format"], e["precision"], size_text(e.get("bytes")),
                     "-" if m is None else f"{m:.4f}", parity_text(e),
                     "-" if lat is None else f"{lat:.3f}", e["status"].upper()))
    lines = _columns(rows)
    if manifest.get("optimize"):
        lines += ["", *optimize_table(manifest["optimize"]), ""]
    failed = [e for e in manifest["artifacts"] if e["status"] != "verified"]
    lines += search_lines(manifest["artifacts"])
    lines += tflm_lines(manifest["artifacts"])
    lines += budget_lines(manifest)
    for e in failed:
        lines.append(f"{e['status'].upper()} {e['name']}: {e.get('failure_reason')}")
    if manifest.get("passes"):
        lines.append("")
    for i, p in enumerate(manifest.get("passes", []), start=1):
        acc = p["metrics_after"].get(metric) if metric else None
        lines.append(f"pass {i} {p['type']}: {metric or 'metric'} {'-' if acc is None else f'{acc:.4f}'}, "
                     f"params {p['params']}, "
                     f"degradation {p['degradation']:+.4f} ({'ok' if p['goal_met'] else 'GOAL MISSED'})")
    lines += slower_than_fp32(manifest["artifacts"])
    lines += larger_than_float(manifest)
    lines += [f"WARNING reference: {w}" for w in manifest["reference"].get("warnings") or []]
    for line in (manifest.get("goals") or {}).get("missed", []):
        lines.append(f"GOAL MISSED {line}")
    for layout, rec in (manifest.get("package") or {}).items():
        what = (f"arena {rec['firmware']['arena']['allocate_bytes']} B, {len(rec['firmware']['ops'])} ops, "
                f"{rec.get('read_back')}" if rec.get("firmware") else f"version {rec['version']}")
        lines.append(f"package {layout}: {rec['artifact']} -> {rec['path']} ({what}): "
                     + (rec["status"].upper() + (f" ({rec['failure_reason']})" if rec.get("failure_reason") else "")))
    lines += generation_lines(manifest.get("generation"))
    lines += time_line(manifest.get("timings"))
    n_ok = len(manifest["artifacts"]) - len(failed)
    n_inc = sum(e["status"] == "inconclusive" for e in manifest["artifacts"])
    lines.append(f"{n_ok} of {len(manifest['artifacts'])} artifacts verified"
                 + (f", {n_inc} inconclusive (n too small)" if n_inc else "")
                 + f"; status: {manifest['status']}")
    return "\n".join(lines)
