"""The float fallback, both kinds: a conversion that failed tried once more with what it may keep in float
(:func:`retry_config`), and an int8 artifact that converts but fails its value checks repaired by keeping its
most harmful layers float (:func:`selective_fallback`).

The selective fallback: the runtime's own debugger ranks the quantized layers by their quantization error (TFLite:
``tf.lite.experimental.QuantizationDebugger``; onnxruntime: ``qdq_loss_debug``), then the
artifact is converted again with the worst 1, 2, 4, ... layers kept in float (TFLite
``denylisted_nodes``, onnxruntime ``nodes_to_exclude``), at most half of them and at most twice the
all-int8 file's size. Each candidate is verified as every artifact is, each verdict at confidence
``1 - 0.05 / m`` for ``m`` artifacts tried (Bonferroni: picking the first that passes must not make
a chance pass likelier). The one with the fewest float layers that verifies replaces the artifact;
the manifest records the ranking, every candidate tried and the layers that stayed float, with their
measured error (NNCF's accuracy-control idea, with the runtimes' debuggers as the ranking).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any

from dnnkit.formats.common import has_recurrent_layers
from dnnkit.manifest.record import apply_check
from dnnkit.config.recipe import ArtifactConfig, Recipe
from dnnkit.verification.criteria import VALUE_CHECKS  # what more float layers can repair
from dnnkit.verification.reference import Reference
from dnnkit.workers.checks import check_item, verify_artifacts
from dnnkit.workers.convert import convert_artifacts


def retry_config(art: ArtifactConfig, model: Any) -> ArtifactConfig | None:
    """The artifact as it is tried again after its conversion failed, or ``None`` when no fallback exists.

    Full-integer TFLite: recurrent layers unrolled (the calibrator crashes on WHILE loops: LSTM, GRU,
    ConvLSTM2D) and ops without an int8 kernel kept float (``TFLITE_BUILTINS`` beside
    ``TFLITE_BUILTINS_INT8``); the artifact stays verified as quantized, and its float ops are listed.
    """
    if art.format != "tflite" or not art.full_integer or (art.float_fallback and art.unroll_recurrent):
        return None
    recurrent = bool(getattr(model, "layers", None)) and has_recurrent_layers(model)
    return dataclasses.replace(art, float_fallback=True, unroll_recurrent=art.unroll_recurrent or recurrent)


RANKED_BY = {"tflite": "tf.lite.experimental.QuantizationDebugger: per-layer SQNR of each quantized op's output",
             "onnx": "onnxruntime.quantization.qdq_loss_debug: per-node SQNR of its quantized activations and weights"}


FALLBACK_DIR = ".fallback"


# the parts of an entry's ``conversion`` that record a search (kept when a candidate replaces the file)
SEARCH_RECORDS = ("first_attempt", "quantization_ladder", "selective_fallback")


FIRST_STAGE = 3  # candidates (1, 2 and 4 float layers) tried before the rest


# a candidate whose float layers more than double the all-int8 file is no longer the int8 artifact the
# recipe asked for (measured: ConvNeXtTiny TFLite verified with 128 of 454 layers float at 105 MB, 3.7x
# its 28.6 MB all-int8 file and 94 % of fp32): it is recorded, not adopted
MAX_SIZE_GROWTH = 2.0


def needs_fallback(entry: dict[str, Any], art: ArtifactConfig) -> bool:
    """Whether ``entry`` (a verified-or-not int8 artifact) gets a selective float fallback: it was
    converted, and every failed or undecided check is a value check."""
    problems = entry.get("failures", []) + entry.get("inconclusive", [])
    return (art.selective_fallback and art.precision == "int8" and not art.float_layers
            and bool(entry.get("converted")) and entry.get("status") in ("failed", "inconclusive")
            and bool(problems) and all(p.get("check") in VALUE_CHECKS for p in problems))


def schedule(layers: int) -> list[int]:
    """How many of the worst layers each candidate keeps float: 1, 2, 4, ... up to half of ``layers``
    (none for a single quantized layer: all-float is not an int8 artifact)."""
    cap = layers // 2
    counts, k = [], 1
    while k < cap:
        counts.append(k)
        k *= 2
    return [*counts, cap] if cap else []


def main_values(entry: dict[str, Any]) -> dict[str, Any]:
    """The value checks' figures of a verification result, per check (first output only)."""
    checks = entry.get("checks") or {}
    return {name: round(float(checks[name]["value"]), 4) for name in VALUE_CHECKS
            if isinstance(checks.get(name), dict) and "value" in checks[name]}


def selective_fallback(entries: list[dict[str, Any]], artifacts: dict[str, ArtifactConfig], recipe: Recipe,
                       ref: Reference, *, model_path: Path, out: Path, representative: Any,
                       metadata: dict[str, Any], unsafe: bool, fake_quant: bool, verbose: bool = False) -> None:
    """Try the selective fallback on every entry that :func:`needs_fallback`; updates them in place.

    A replaced artifact keeps its name, path and precision; its ``options.float_layers`` lists
    what stayed float (``dnnkit verify`` re-checks that file), ``fallbacks`` gains
    ``selective_float`` and ``conversion.selective_fallback`` records the search. An artifact no
    candidate repairs stays as it was, its reason extended with what was tried.
    """
    todo = {e["name"]: e for e in entries if needs_fallback(e, artifacts[e["name"]])}
    if not todo:
        return
    arts = {name: artifacts[name] for name in todo}
    log = out / "logs" / "convert.log"
    if verbose:
        print(f"ranking layers of {len(todo)} int8 artifacts for a selective float fallback ...", flush=True)
    ranks = convert_artifacts(model_path, list(arts.values()), out / "artifacts", representative,
                              timeouts={n: recipe.timeout(a) for n, a in arts.items()}, metadata=metadata,
                              unsafe=unsafe, log_path=log, attempt="rank",
                              item_extra={n: {"task": "rank"} for n in arts})
    candidates: dict[str, list[tuple[int, ArtifactConfig]]] = {}
    files: dict[str, dict[str, Any]] = {}
    records: dict[str, dict[str, Any]] = {}
    rankings: dict[str, list[dict[str, Any]]] = {}
    for name, art in arts.items():
        result, entry = ranks.get(name, {}), todo[name]
        ranking = result.get("info", {}).get("ranking") if result.get("status") == "done" else None
        records[name] = {"ranked_by": RANKED_BY[art.format], "seconds": {"ranking": result.get("seconds")},
                         "first_attempt": {"status": entry["status"], "reason": entry.get("failure_reason"),
                                           "bytes": entry.get("bytes"),
                                           "latency_p50_ms": (entry.get("latency_ms") or {}).get("p50"),
                                           **main_values(entry)}}
        if not ranking:
            records[name]["error"] = f"ranking failed: {result.get('reason') or 'no quantized layers'}"
            continue
        records[name].update(quantized_layers=len(ranking), worst_layers=ranking[:10])
        rankings[name] = ranking
        candidates[name] = []
        counts = schedule(len(ranking))
        if not counts:
            records[name]["error"] = (f"{len(ranking)} quantized layer: keeping it float leaves no int8 layer "
                                      "(at most half may stay float)")
        else:
            records[name]["tried"] = []
        for k in counts:
            # the pick is the first of the artifact's own candidates (1, or dnnkit optimize's) and
            # len(counts) more to pass: each verdict at 1 - 0.05 / that
            nodes = [n for r in ranking[:k] for n in r.get("nodes", [r["name"]])]
            variant = dataclasses.replace(art, name=f"{name}~float{k}", selective_fallback=False,
                                          float_layers=tuple(dict.fromkeys(nodes)),
                                          candidates=art.candidates + len(counts))
            candidates[name].append((k, variant))
            files[variant.name] = {"filename": f"{FALLBACK_DIR}/{name}/float{k}/{art.filename}"}
    for stage in (slice(0, FIRST_STAGE), slice(FIRST_STAGE, None)):
        # the fewest float layers first: later candidates only for the artifacts still failing
        pending = {name: pairs[stage] for name, pairs in candidates.items() if not records[name].get("chosen")}
        variants = [v for pairs in pending.values() for _, v in pairs]
        if not variants:
            break
        if verbose:
            print(f"converting and verifying {len(variants)} selective-fallback candidates ...", flush=True)
        converted = convert_artifacts(model_path, variants, out / "artifacts", representative,
                                      timeouts={v.name: recipe.timeout(v) for v in variants}, metadata=metadata,
                                      unsafe=unsafe, log_path=log, item_extra=files)
        checked = verify_artifacts(
            [check_item(v.name, out / "artifacts" / files[v.name]["filename"], v.to_dict(), fake_quant=fake_quant)
             for v in variants if converted.get(v.name, {}).get("status") == "done"],
            ref, recipe, log_path=out / "logs" / "verify.log")
        for name, pairs in pending.items():
            for k, variant in pairs:
                conv = converted.get(variant.name, {})
                result = checked.get(variant.name)
                row: dict[str, Any] = {"float_layers": k, "conversion_seconds": conv.get("seconds")}
                if result is None:
                    row.update(status="failed", reason=f"conversion failed: {conv.get('reason')}")
                else:
                    row.update(status=result["status"], bytes=result.get("bytes"), **main_values(result))
                records[name]["tried"].append(row)
                limit = MAX_SIZE_GROWTH * (records[name]["first_attempt"].get("bytes") or 0)
                if result is not None and result["status"] == "verified" and limit and (result.get("bytes") or 0) > limit:
                    row["status"] = "too_large"
                    row["reason"] = (f"verified, but {result['bytes']} bytes > {MAX_SIZE_GROWTH:g} x the all-int8 file "
                                     f"({int(limit)})")
                if not records[name].get("chosen") and row["status"] == "verified":
                    _adopt(todo[name], arts[name], (k, variant, conv, result), records[name], rankings[name], out,
                           files)
    for name, record in records.items():
        entry = todo[name]
        entry.setdefault("conversion", {})["selective_fallback"] = record
        if not record.get("chosen"):
            tried = record.get("tried") or []
            what = (f"not verified with up to {tried[-1]['float_layers']} of {record['quantized_layers']} layers float"
                    if tried else record.get("error", "no candidate"))
            entry["failure_reason"] = f"{entry.get('failure_reason')}; selective float fallback: {what}"
    shutil.rmtree(out / "artifacts" / FALLBACK_DIR, ignore_errors=True)


def _adopt(entry: dict[str, Any], art: ArtifactConfig, chosen: tuple[int, ArtifactConfig, dict[str, Any], dict],
           record: dict[str, Any], ranking: list[dict[str, Any]], out: Path, files: dict[str, dict[str, Any]]) -> None:
    """Put the chosen candidate's file in the artifact's place and its verification in the entry."""
    k, variant, conv, result = chosen
    record["chosen"] = True
    record["float_layers"] = ranking[:k]
    adopt(entry, art, variant, conv, result, out / "artifacts" / files[variant.name]["filename"], out,
          "selective_float")


def adopt(entry: dict[str, Any], art: ArtifactConfig, variant: ArtifactConfig, conv: dict[str, Any],
          result: dict[str, Any], source: Path, out: Path, fallback: str) -> None:
    """Replace an artifact by a verified candidate (a ladder rung or a float fallback): its file at ``source``
    moved to the artifact's path, its options (under the artifact's name), conversion record and verification
    into ``entry``, ``fallback`` added to the entry's fallbacks."""
    target = out / entry["path"]
    side = source.with_name(source.name + ".data")
    if side.is_file():  # ONNX external data: its name inside the model is the artifact's own
        os.replace(side, target.with_name(target.name + ".data"))
    os.replace(source, target)
    entry["options"] = dataclasses.replace(variant, name=art.name, selective_fallback=art.selective_fallback).to_dict()
    entry["fallbacks"] = list(dict.fromkeys([*conv.get("info", {}).get("fallbacks", []), fallback]))
    # what describes the file is the candidate's; the record of how it was found stays
    kept = {k: v for k, v in entry.get("conversion", {}).items() if k in SEARCH_RECORDS}
    entry["conversion"] = {**kept, "seconds": conv.get("seconds"), "peak_rss_mb": conv.get("peak_rss_mb"),
                           **conv.get("info", {})}
    apply_check(entry, result)  # (a verified result brings its own metadata)
