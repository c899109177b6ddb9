"""Microcontroller budgets (issue 27, part 2): the ``[device]`` table and ``--device`` flag, the verdict's
arithmetic, its place in the manifest's verdict, and ``optimize``'s arena and device goals."""

from __future__ import annotations

import copy

import pytest

from conftest import cli, error_lines
from dnnkit.config.device import PROFILES, Device, device_from
from dnnkit.config.goals import Goals, goals_from
from dnnkit.config.recipe import recipe_from_dict
from dnnkit.errors import SpecError
from dnnkit.manifest.table import budget_lines
from dnnkit.manifest.verdict import decide
from dnnkit.optimization.choice import choose, judge
from dnnkit.verification.budget import budget

KIB = 1024
TINY = Device("tiny", ram_kb=8, flash_kb=32, runtime_flash_kb=16, runtime_ram_kb=1)


def _fit(*, flash=10_000, estimate=2_000, io=300, measured=None, missing=()):
    fit = {"flash_bytes": flash, "arena_estimate_bytes": estimate, "io_bytes": io,
           "tflm_unsupported_ops": list(missing)}
    if measured is not None:
        fit["tflm"] = {"status": "ran", "arena": {"smallest_arena_size": measured, "head": estimate,
                                                  "tail": measured - estimate}}
    return fit


def test_budget_adds_the_stated_overheads_and_says_by_how_much():
    b = budget(_fit(measured=5_000), TINY)
    assert b["arena_source"] == "measured"
    assert b["flash"] == {"need_bytes": 10_000 + 16 * KIB, "have_bytes": 32 * KIB,
                          "margin_bytes": 32 * KIB - 10_000 - 16 * KIB, "model_bytes": 10_000,
                          "runtime_bytes": 16 * KIB}
    assert b["ram"]["need_bytes"] == 5_000 + 300 + KIB and b["ram"]["margin_bytes"] == 8 * KIB - 6_324
    assert b["verdict"] == "fits" and "flash 6.2 KiB spare, RAM 1.8 KiB spare" == b["reason"]
    # one byte more arena than the RAM left: does not fit, by exactly that byte
    over = budget(_fit(measured=8 * KIB - 300 - KIB + 1), TINY)
    assert over["verdict"] == "does_not_fit" and over["ram"]["margin_bytes"] == -1
    assert over["reason"] == "RAM 0.0 KiB over (8.0 KiB of 8.0 KiB)"
    big = budget(_fit(flash=40 * KIB, measured=5_000), TINY)
    assert big["verdict"] == "does_not_fit" and big["reason"].startswith("flash 24.0 KiB over (56.0 KiB of 32.0 KiB)")


def test_budget_without_tflm_uses_the_estimate_and_says_so_and_missing_kernels_never_fit():
    b = budget(_fit(), TINY)
    assert b["arena_source"] == "estimate" and b["ram"]["arena_bytes"] == 2_000
    assert b["verdict"] == "fits" and b["reason"].endswith("(RAM from the arena estimate)")  # TFLM never ran
    modelled = budget({**_fit(), "tflm_arena_estimate_bytes": 4_000}, TINY)  # the plan + TFLM's modelled tail
    assert modelled["arena_source"] == "estimate" and modelled["ram"]["arena_bytes"] == 4_000
    tflm_failed = _fit(estimate=3_000)
    tflm_failed["tflm"] = {"status": "crashed", "reason": "TFLM process killed by SIGSEGV"}
    assert budget(tflm_failed, TINY)["ram"]["arena_bytes"] == 3_000
    missing = budget(_fit(measured=100, missing=("REDUCE_PROD",)), TINY)
    assert missing["verdict"] == "does_not_fit" and missing["reason"] == "TFLite Micro has no kernel for REDUCE_PROD"
    unknown = budget({"flash_bytes": 10, "error": "ValueError: damaged"}, TINY)
    assert unknown["verdict"] == "unknown" and unknown["reason"] == "ValueError: damaged"


def test_device_profiles_and_custom_numbers_read_from_a_recipe_and_the_flag():
    recipe = recipe_from_dict({"name": "r", "artifacts": [{"name": "t", "format": "tflite", "precision": "int8"}],
                               "device": {"profile": "nano33ble", "ram_kb": 200}})
    assert (recipe.device.name, recipe.device.ram_kb, recipe.device.flash_kb) == ("nano33ble", 200, 1024)
    assert "with custom numbers" in recipe.device.description
    assert device_from("esp32-s3") == PROFILES["esp32-s3"]
    custom = device_from("name=board,ram_kb=192,flash_kb=768,runtime_flash_kb=0")
    assert (custom.name, custom.ram_kb, custom.flash_kb, custom.runtime_flash_kb) == ("board", 192, 768, 0)
    for value, message in (
            ("cortex-m9", "--device: device.profile: expected one of cortex-m4, nano33ble, cortex-m7, esp32-s3, "
                          "rp2040 (or key=value pairs such as ram_kb=192,flash_kb=768), got 'cortex-m9'"),
            ("ram_kb=abc,flash_kb=1", '--device: device.ram_kb: expected a number > 0, got "abc"'),
            ("ram_kb=64", "--device: device.flash_kb: expected a number of KiB"),
            ("ram_kb=1,flash_kb=2,sram=3", "--device: device.sram: unknown key"),
            ("ram_kb=0,flash_kb=2", "--device: device.ram_kb: expected a number > 0, got 0")):
        with pytest.raises(SpecError) as err:
            device_from(value)
        assert str(err.value).startswith(message), str(err.value)
    with pytest.raises(SpecError, match="target: expected 'tflite' or 'both' with a device"):
        goals_from({"target": "onnx", "max_arena_kb": "64"})


def test_cli_bad_device_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    for args in (["export", "no.keras", "--recipe", "mobile", "--out", str(out), "--data", "digits",
                  "--device", "ram_kb=-3,flash_kb=64"],
                 ["optimize", "no.keras", "--out", str(out), "--device", "arduino"]):
        result = cli(*args)
        lines = error_lines(result.stderr)
        assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        assert "device." in lines[0] and not out.exists()


def _manifest(device: Device, *, required=True):
    from dataclasses import asdict

    entries = [{"name": "tflite_int8", "format": "tflite", "precision": "int8", "status": "verified",
                "device_fit": _fit(measured=5_000)},
               {"name": "tflite_fp32", "format": "tflite", "precision": "fp32", "status": "verified",
                "device_fit": _fit(flash=40_000, estimate=4_000)},
               {"name": "onnx_fp32", "format": "onnx", "precision": "fp32", "status": "verified"}]
    return {"artifacts": entries, "recipe": {"name": "r"}, "device": {**asdict(device), "required": required}}


def test_a_required_device_fails_the_manifest_only_when_no_verified_tflite_artifact_fits():
    fits = decide(_manifest(TINY))
    assert fits["status"] == "verified" and fits["device"]["fits"] == ["tflite_int8"]
    assert fits["artifacts"][1]["device_fit"]["budget"]["reason"].startswith("flash")
    lines = budget_lines(fits)
    assert lines[0].startswith("device tiny tflite_int8: FITS (flash 25.8 of 32.0 KiB, RAM 6.2 of 8.0 KiB; "
                               "arena measured)")
    assert lines[1].startswith("device tiny tflite_fp32: DOES NOT FIT")
    small = Device("small", ram_kb=4, flash_kb=32, runtime_flash_kb=16, runtime_ram_kb=1)
    failed = decide(_manifest(small))
    assert failed["status"] == "failed" and failed["device"]["fits"] == []
    (device_failure,) = [f for f in failed["failures"] if f["check"] == "device"]
    assert device_failure["message"].startswith("device small: no verified TFLite artifact fits (tflite_int8 "
                                                "verified, does not fit: RAM")
    optimized = decide(_manifest(small, required=False))  # optimize's own goals judge it
    assert optimized["status"] == "verified" and optimized["device"]["fits"] == []


def _row(name, target="tflite", bytes_=1000, arena=None, verdict=None):
    row = {"name": name, "target": target, "status": "verified", "bytes": bytes_, "latency_p50_ms": 1.0,
           "degradation": 0.0, "top1_agreement": None, "float_layers": 0, "reason": None, "entry": name,
           "arena_bytes": arena}
    if verdict:
        row["budget"] = {"verdict": verdict, "reason": "-"}
    return row


def test_optimize_chooses_by_the_arena_and_the_device_and_onnx_rows_are_not_judged_by_them():
    rows = [_row("tflite_fp32", bytes_=4000, arena=3000, verdict="fits"),
            _row("tflite_int8", bytes_=1000, arena=9000, verdict="does_not_fit"),
            _row("onnx_int8", target="onnx", bytes_=900)]
    goals = Goals(target="both", max_arena_kb=4, device=TINY)
    judge(rows, goals)
    assert [r["goals"]["arena"] for r in rows] == [True, False, None]
    assert [r["goals"]["device"] for r in rows] == [True, False, None]
    assert choose(rows, goals)["chosen"] == {"tflite": "tflite_fp32", "onnx": "onnx_int8"}
    no_fit = copy.deepcopy(rows)
    no_fit[0]["budget"]["verdict"] = "unknown"
    judge(no_fit, Goals(target="tflite", device=TINY))
    picked = choose(no_fit, Goals(target="tflite", device=TINY))
    assert picked["met"] is False and picked["closest"]["tflite"][0] in ("tflite_fp32", "tflite_int8")
