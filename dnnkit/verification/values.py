"""The value checks of one artifact output against the reference: float parity (float artifacts),
top-1 agreement, accuracy drop, RMSE ratio or SQNR (quantized ones), each judged by
:mod:`dnnkit.verification.criteria`; and the parity summary the manifest shows."""

from __future__ import annotations

from typing import Any

import numpy as np

from dnnkit.core.heads import STEP_CLASS_HEADS, is_class, is_value
from dnnkit.core.metrics import labelled_steps, predicted_classes
from dnnkit.core.parity import float_parity
from dnnkit.config.recipe import ArtifactConfig, Recipe
from dnnkit.verification.criteria import (FAIL, INCONCLUSIVE, PASS, agreement_check, degradation_check, failure,
                                          inputs_needed, rmse_ratio_check, sqnr_check, z_for)
from dnnkit.verification.reference import Reference


def calibration(ref: Reference, art: ArtifactConfig, recipe: Recipe, k: int = 0) -> float:
    """The model-calibrated allowance of a float artifact's output ``k``: fp16_factor x the
    fp16-weight error (fp16 only; one figure per output when there are several)."""
    error = ref.fp16_weight_error
    if isinstance(error, list):
        error = error[k]
    if art.precision != "fp16" or art.quantized or error is None:
        return 0.0
    return recipe.verify.fp16_factor * error


def check_values(ref: Reference, k: int, out: np.ndarray, art: ArtifactConfig, recipe: Recipe, quantized: bool,
                 failures: list[dict[str, Any]], inconclusive: list[dict[str, Any]]) -> dict[str, Any]:
    """The value checks of output ``k``; returns its ``checks`` section."""
    checks: dict[str, Any] = {}
    head, expected, y = ref.heads[k], ref.outputs[k], ref.labels[k]
    where = f"output {ref.output_names[k]}: " if ref.multi_output else ""
    extra = {"output": ref.output_names[k]} if ref.multi_output else {}
    classifier = is_class(head)
    atol, rtol = recipe.atol(art), recipe.rtol(art)
    calibrated = calibration(ref, art, recipe, k)
    scale = float(np.max(np.abs(expected))) if np.size(expected) else 0.0
    discarded = None
    if calibrated and calibrated >= scale:
        # An allowance as large as the outputs themselves would pass any output, zeros included.
        discarded, calibrated = calibrated, 0.0
    parity = float_parity(expected, out, atol, rtol, calibrated)
    checks["float_parity"] = {**parity, "atol": atol, "rtol": rtol, "calibrated": calibrated, "n": int(len(out)),
                              "verdict": ("pass" if parity["ok"] else "fail") if not quantized else "not_applied"}
    if discarded is not None:
        checks["float_parity"]["calibration_discarded"] = {
            "allowance": discarded, "why": f"fp16-weight allowance {discarded:.3g} >= output scale {scale:.3g}: "
                                           "it would pass any output, so only atol + rtol x scale applies"}
    if not quantized and not parity["ok"]:
        more = f", fp16-weight allowance {calibrated:.3g}" if calibrated else ""
        failures.append(failure("float_parity", f"{where}max abs diff {parity['max_abs_diff']:.3g} > atol {atol:g} + "
                                f"rtol {rtol:g} x output scale {parity['scale']:.3g}{more} = {parity['allowed']:.3g}",
                                parity["max_abs_diff"], parity["allowed"], **extra))

    def judge(name: str, result: dict[str, Any], what: str) -> None:
        if art.candidates > 1:
            result["confidence"] = round(1.0 - 0.05 / art.candidates, 5)  # one-sided, per verdict
        checks[name] = result
        lo, hi = result["ci"]
        text = (f"{where}{what} {result['value']:.4f} (n={result['n']}, 95% CI {lo:.4f}..{hi:.4f}) vs limit "
                f"{result['limit']:g}")
        if result["verdict"] == FAIL:
            failures.append(failure(name, text, result["value"], result["limit"], n=result["n"], ci=result["ci"],
                                    **extra))
        elif result["verdict"] == INCONCLUSIVE:
            inconclusive.append(failure(name, f"n too small: {text}; {_needs(name, result, z)}", result["value"],
                                        result["limit"], n=result["n"], ci=result["ci"], **extra))

    n = ref.n_test
    z = z_for(art.candidates)  # stricter when the artifact is the pick of several candidates
    if classifier:
        # per step for a tagging head: every step of every input counts once (padding steps too: the
        # artifact must compute the model's function there as well)
        ref_cls = predicted_classes(head, expected).reshape(-1)
        art_cls = predicted_classes(head, out).reshape(-1)
        agreement = agreement_check(ref_cls, art_cls, recipe.min_agreement(art), z)
        if not quantized and parity["ok"] and agreement["verdict"] == INCONCLUSIVE and \
                agreement["value"] >= agreement["limit"]:
            # a float artifact within the float tolerance computes the model's function: its few inputs cannot
            # decide agreement statistically, and need not (a class flips only at a near-tie, which parity bounds)
            agreement.update(verdict=PASS, decided_by="float_parity")
        judge("top1_agreement", agreement, "top-1 agreement")
        if quantized and y is not None:
            if head in STEP_CLASS_HEADS:
                y, ref_n, art_n = labelled_steps(y, predicted_classes(head, expected[:n]),
                                                 predicted_classes(head, out[:n]))
            else:
                y = np.asarray(y).reshape(-1)
                ref_n, art_n = ref_cls[:n], art_cls[:n]
            drop = degradation_check(checks["top1_agreement"], ref_n == y, art_n == y,
                                     recipe.max_degradation(art), z)
            judge("accuracy_drop", drop, "accuracy drop")
    elif quantized and is_value(head) and y is not None:
        judge("rmse_ratio", rmse_ratio_check(y, expected[:n], out[:n], recipe.max_degradation(art), z=z),
              "RMSE ratio")
    elif quantized:
        judge("sqnr_db", sqnr_check(expected, out, recipe.verify.min_sqnr_db), "SQNR (dB)")
    return checks


def _needs(name: str, result: dict[str, Any], z: float) -> str:
    """What an inconclusive verdict needs: how many inputs decide it at the observed rate, which inputs count,
    and how to accept it as it is."""
    accept = "or set [verify] accept_inconclusive = true to accept it"
    if name == "top1_agreement":
        n = inputs_needed(result["value"], result["limit"], z)
        count = f"about {n} inputs decide it at the observed rate" if n else "no input count decides it at this rate"
        return f"{count} (every input counts, unlabelled ones too: add x_test or x_val rows), {accept}"
    if name == "accuracy_drop" and "disagreement_rate" in result:
        rate = result["disagreement_rate"]
        n = inputs_needed(rate, result["limit"], z) if rate < result["limit"] else None
        count = f"about {n} inputs bound the disagreements under the limit" if n else \
            "more labelled test inputs decide the paired test"
        return f"{count} (unlabelled inputs count for that bound), {accept}"
    return f"more labelled test inputs decide it, {accept}"


def parity_scale(out: np.ndarray) -> float:
    """max |out| (0 for an empty array)."""
    return float(np.max(np.abs(out))) if out.size else 0.0


def parity_summary(checks: dict[str, Any], samples: int) -> dict[str, Any]:
    parity: dict[str, Any] = {"max_abs_diff": checks["float_parity"]["max_abs_diff"],
                              "max_rel_diff": checks["float_parity"]["max_rel_diff"],
                              "top1_agreement": checks.get("top1_agreement", {}).get("value"),
                              "samples": samples}
    for key in ("rmse_ratio", "sqnr_db"):
        if key in checks:
            parity[key] = checks[key]["value"]
    return parity
