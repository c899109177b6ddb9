"""Does a ``.tflite`` file fit a microcontroller's budget? From the facts :mod:`dnnkit.verification.device_fit`
and :mod:`dnnkit.verification.tflm` recorded about it, against a :class:`~dnnkit.config.device.Device`:

- flash = the file's bytes + the device's stated TFLite Micro code size (``runtime_flash_kb``);
- RAM = the tensor arena + one copy each of the input and the output the application fills and reads (at
  batch 1) + the stated interpreter objects (``runtime_ram_kb``). The arena is TFLite Micro's *measured*
  smallest ``arena_size`` that allocates where the file ran in it, else the estimate of the activation plan
  plus TFLM's persistent tail, modelled (0.94-1.08 of the measured arena on the matrix's files): such a verdict
  says ``estimate``.

A file with an op TFLite Micro has no kernel for, or one TFLite Micro fails to run (it refuses hybrid int8 and
fp16-weight files), does not fit any device, whatever its size.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from dnnkit.config.device import Device

KIB = 1024


def arena_bytes(fit: dict[str, Any]) -> tuple[int | None, str]:
    """The arena a firmware must allocate for a file and where the figure comes from: ``measured`` (TFLM's
    smallest arena that allocates), ``estimate`` (the activation plan + TFLM's modelled persistent tail,
    :func:`dnnkit.verification.device_fit.device_fit`), or ``(None, "unknown")``."""
    tflm = fit.get("tflm") or {}
    arena = tflm.get("arena") or {}
    if tflm.get("status") == "ran" and arena.get("smallest_arena_size"):
        return int(arena["smallest_arena_size"]), "measured"
    for key in ("tflm_arena_estimate_bytes", "arena_estimate_bytes"):  # a manifest before the first: the plan only
        if fit.get(key) is not None:
            return int(fit[key]), "estimate"
    return None, "unknown"


def budget(fit: dict[str, Any], device: Device) -> dict[str, Any]:
    """The budget verdict of one file's device-fit facts on ``device``.

    Returns:
        ``{"device", "verdict": "fits"|"does_not_fit"|"unknown", "reason", "arena_source", "flash": {"need_bytes",
        "have_bytes", "margin_bytes", "model_bytes", "runtime_bytes"}, "ram": {"need_bytes", "have_bytes",
        "margin_bytes", "arena_bytes", "io_bytes", "runtime_bytes"}}``; a negative margin is how much too big.
    """
    record: dict[str, Any] = {"device": device.name}
    flash_have, ram_have = round(device.flash_kb * KIB), round(device.ram_kb * KIB)
    runtime_flash, runtime_ram = round(device.runtime_flash_kb * KIB), round(device.runtime_ram_kb * KIB)
    model = fit.get("flash_bytes")
    if model is not None:
        need = int(model) + runtime_flash
        record["flash"] = {"need_bytes": need, "have_bytes": flash_have, "margin_bytes": flash_have - need,
                           "model_bytes": int(model), "runtime_bytes": runtime_flash}
    arena, source = arena_bytes(fit)
    record["arena_source"] = source
    if arena is not None:
        io = int(fit.get("io_bytes") or 0)
        need = arena + io + runtime_ram
        record["ram"] = {"need_bytes": need, "have_bytes": ram_have, "margin_bytes": ram_have - need,
                         "arena_bytes": arena, "io_bytes": io, "runtime_bytes": runtime_ram}
    missing = fit.get("tflm_unsupported_ops") or []
    tflm = fit.get("tflm") or {}
    over = [f"{what} {_kib(-r['margin_bytes'])} over ({_kib(r['need_bytes'])} of {_kib(r['have_bytes'])})"
            for what, r in (("flash", record.get("flash")), ("RAM", record.get("ram")))
            if r is not None and r["margin_bytes"] < 0]
    if missing:
        record.update(verdict="does_not_fit", reason=f"TFLite Micro has no kernel for {', '.join(missing)}")
    elif tflm.get("status") in ("failed", "crashed"):  # its kernels refuse the file (a hybrid int8 one, fp16 weights)
        record.update(verdict="does_not_fit", reason=f"TFLite Micro could not run it ({tflm['status']}: "
                                                     f"{tflm.get('reason')})")
    elif over:
        record.update(verdict="does_not_fit", reason="; ".join(over))
    elif "flash" not in record or "ram" not in record:
        record.update(verdict="unknown", reason=fit.get("error") or "the file's size or arena was not measured")
    else:
        spare = (f"flash {_kib(record['flash']['margin_bytes'])} spare, RAM {_kib(record['ram']['margin_bytes'])} "
                 f"spare")
        why = f": TFLite Micro {tflm['status']}" if tflm.get("status") else ""
        record.update(verdict="fits", reason=spare + (f" (RAM from the arena estimate{why})" if source == "estimate"
                                                      else ""))
    return record


def apply_budgets(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """Judge every TFLite artifact of a manifest by its ``device`` section (the recipe's ``[device]``), in place:
    each entry's ``device_fit["budget"]``, and the section's ``fits`` (verified artifacts that fit).

    Returns:
        The ``device`` section, or ``None`` when the manifest has none.
    """
    section = manifest.get("device")
    if not section:
        return None
    device = Device(**{f.name: section[f.name] for f in fields(Device) if f.name in section})
    fits = []
    for entry in manifest.get("artifacts") or []:
        fit = entry.get("device_fit")
        if entry.get("format") != "tflite" or not fit:
            continue
        fit["budget"] = budget(fit, device)
        if fit["budget"]["verdict"] == "fits" and entry.get("status") == "verified":
            fits.append(entry["name"])
    section["fits"] = fits
    return section


def _kib(n: int) -> str:
    return f"{n / KIB:.1f} KiB"
