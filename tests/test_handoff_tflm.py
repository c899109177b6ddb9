"""The firmware hand-off (issue 27, parts 2-3): `dnnkit package OUT --layout tflm` writes the C source a TFLite
Micro project compiles; the copy is compiled and read back, and must be the artifact byte for byte; the
resolver registers exactly the model's ops; the header's arena allocates in TFLM and its I/O quantization is
the file's. And the recipe's [device] budget judged on the same export, at the measured figures."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest

from conftest import cli, digits_dense
from dnnkit.config.device import PROFILES

RECIPE = {"name": "firmware",
          "artifacts": [{"name": "tflite_fp32", "format": "tflite", "precision": "fp32"},
                        {"name": "tflite_int8", "format": "tflite", "precision": "int8", "io": "int8"},
                        {"name": "tflite_dynamic_int8", "format": "tflite", "precision": "dynamic_int8"}],
          "device": {"profile": "cortex-m4"}}


@pytest.fixture(scope="module")
def firmware(tmp_path_factory):
    """A digits classifier exported to fp32 and int8 (int8 input and output) TFLite files for a Cortex-M4, then
    packaged for TFLite Micro."""
    import dnnkit
    from dnnkit.config.recipe import recipe_from_dict

    model, x, y = digits_dense(epochs=3)
    out = tmp_path_factory.mktemp("firmware") / "out"
    dnnkit.export(model, recipe_from_dict(RECIPE), out,
                  data={"x_train": x[:1400], "y_train": y[:1400], "x_test": x[1400:], "y_test": y[1400:],
                        "class_names": [f"digit \"{i}\"" for i in range(10)]})
    return out, dnnkit.package(out, "tflm", model_name="digits")


def _defines(text):
    return dict(re.findall(r"#define (DNNKIT_\w+) (.+)", text))


def test_the_c_array_compiles_back_to_the_artifacts_bytes_and_the_resolver_lists_exactly_its_ops(firmware):
    from ai_edge_litert.interpreter import Interpreter

    from dnnkit.handoff.tflm import parse_array
    from dnnkit.verification.tflm_ops import TFLM_ADD_METHODS

    out, manifest = firmware
    record = manifest["package"]["tflm"]
    entry = next(e for e in manifest["artifacts"] if e["name"] == "tflite_int8")
    assert record["status"] == "verified" and record["artifact"] == "tflite_int8"  # the one TFLM ran first
    compilers = [c for c in ("c++", "g++", "clang++", "cc", "gcc") if shutil.which(c)]  # the parse path: below
    assert record["read_back"].startswith("compiled with" if compilers else "parsed from"), record["read_back"]
    assert record["same_bytes_as_artifact"]
    assert record["sha256"] == entry["sha256"]
    assert record["parity"]["top1_agreement"] == entry["parity"]["top1_agreement"]  # same bytes, same inputs
    folder = out / "firmware" / "tflm" / "digits"
    assert sorted(p.name for p in folder.iterdir()) == ["micro_op_resolver.h", "model_data.cc", "model_data.h"]
    data = (out / entry["path"]).read_bytes()
    assert parse_array(folder / "model_data.cc") == data
    ops = []
    for op in Interpreter(model_path=str(out / entry["path"]))._get_ops_details():
        if op["op_name"] not in ops:
            ops.append(op["op_name"])
    resolver = (folder / "micro_op_resolver.h").read_text()
    calls = re.findall(r"resolver\.(Add\w+)\(\)", resolver)
    assert calls == [TFLM_ADD_METHODS[op] for op in ops] and len(set(calls)) == len(calls)
    assert "FULLY_CONNECTED" in ops and "AddFullyConnected" in calls
    assert f"constexpr unsigned int kDnnkitOpCount = {len(ops)};" in resolver
    source = (folder / "model_data.cc").read_text()
    assert 'const char* const g_model_labels[DNNKIT_NUM_LABELS] = {\n    "digit \\"0\\"",' in source


def test_the_headers_quantization_is_the_files_and_its_arena_allocates_in_tflm(firmware):
    from ai_edge_litert.interpreter import Interpreter
    from tflite_micro.python.tflite_micro import runtime

    out, manifest = firmware
    entry = next(e for e in manifest["artifacts"] if e["name"] == "tflite_int8")
    defines = _defines((out / "firmware" / "tflm" / "digits" / "model_data.h").read_text())
    interpreter = Interpreter(model_path=str(out / entry["path"]))
    (inp,), (outp,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert inp["dtype"] == np.int8 and outp["dtype"] == np.int8
    assert float(defines["DNNKIT_INPUT0_SCALE"].rstrip("f")) == pytest.approx(inp["quantization"][0], rel=1e-6)
    assert int(defines["DNNKIT_INPUT0_ZERO_POINT"].strip("()")) == inp["quantization"][1]
    assert float(defines["DNNKIT_OUTPUT0_SCALE"].rstrip("f")) == pytest.approx(outp["quantization"][0], rel=1e-6)
    assert int(defines["DNNKIT_OUTPUT0_ZERO_POINT"].strip("()")) == outp["quantization"][1]
    assert (defines["DNNKIT_INPUT0_ELEMENTS"], defines["DNNKIT_OUTPUT0_ELEMENTS"]) == ("64", "10")
    assert defines["DNNKIT_NUM_LABELS"] == "10" and defines["DNNKIT_MODEL_DATA_LEN"] == f"{entry['bytes']}u"
    arena = manifest["package"]["tflm"]["firmware"]["arena"]
    measured = entry["device_fit"]["tflm"]["arena"]["smallest_arena_size"]
    assert arena["smallest_bytes"] == measured and int(defines["DNNKIT_TENSOR_ARENA_SIZE"]) == arena["allocate_bytes"]
    assert arena["allocate_bytes"] >= measured + arena["headroom_bytes"] and arena["allocate_bytes"] % 16 == 0
    tflm = runtime.Interpreter.from_file(str(out / entry["path"]), arena_size=arena["allocate_bytes"])
    tflm.set_input(np.zeros([1, 64], np.int8), 0)
    tflm.invoke()
    assert np.asarray(tflm.get_output(0)).shape == (1, 10)


def test_a_damaged_copy_fails_verify_and_an_op_tflm_lacks_is_refused(firmware, tmp_path, monkeypatch):
    import dnnkit.handoff.tflm as handoff
    from dnnkit.errors import SpecError
    from dnnkit.jobs.package import package

    out = tmp_path / "copy"
    shutil.copytree(firmware[0], out)
    source = out / "firmware" / "tflm" / "digits" / "model_data.cc"
    text = source.read_text()
    first = text.index("0x", text.index("g_model_data[]"))
    source.write_text(text[:first] + ("0x01" if text[first:first + 4] != "0x01" else "0x02") + text[first + 4:])
    result = cli("verify", str(out))
    assert result.returncode == 1, result.stdout + result.stderr
    line = next(l for l in result.stdout.splitlines() if l.startswith("package tflm"))
    assert "FAILED (sha256 mismatch" in line, result.stdout
    shutil.rmtree(out / "firmware")
    result = cli("package", str(out), "--layout", "tflm", "--artifact", "nope")
    assert result.returncode == 2 and "package.artifact: expected one of the tflite artifacts" in result.stderr
    assert "Traceback" not in result.stderr and not (out / "firmware").exists()
    methods = {k: v for k, v in handoff.TFLM_ADD_METHODS.items() if k != "FULLY_CONNECTED"}
    monkeypatch.setattr(handoff, "TFLM_ADD_METHODS", methods)
    with pytest.raises(SpecError, match="package.layout: tflm needs every op in TensorFlow Lite Micro; tflite_int8 "
                                        "uses FULLY_CONNECTED, which it has no kernel for"):
        package(out, "tflm")
    assert not any((out / "firmware" / "tflm").glob("*/model_data.cc"))


def test_parsing_refuses_an_array_whose_length_disagrees(tmp_path):
    from dnnkit.handoff.tflm import parse_array

    path = tmp_path / "model_data.cc"
    path.write_text("const unsigned char g_model_data[] = {\n    0x01, 0x02,\n};\n"
                    "const unsigned int g_model_data_len = 3u;\n")
    with pytest.raises(ValueError, match="2 bytes in the array, g_model_data_len says 3"):
        parse_array(path)


def test_the_export_is_judged_by_the_device_at_its_measured_figures(firmware):
    """The budget's RAM need is the measured arena + I/O + the stated runtime: a device with one byte less RAM
    than the int8 file needs fails the manifest, one with exactly that much passes."""
    from dataclasses import asdict

    from dnnkit.manifest.verdict import decide

    out, manifest = firmware
    assert manifest["device"]["name"] == "cortex-m4" and manifest["device"]["fits"] == ["tflite_fp32", "tflite_int8"]
    fp32, _, hybrid = (e["device_fit"] for e in manifest["artifacts"])
    assert fp32["budget"]["arena_source"] == "measured" and fp32["tflm"]["inputs"] == 20  # a float file runs too
    # TFLite Micro has no hybrid (int8 weights, float activations) kernels: small as it is, it fits no device
    assert hybrid["tflm"]["status"] == "failed" and hybrid["budget"]["verdict"] == "does_not_fit"
    assert hybrid["budget"]["reason"].startswith("TFLite Micro could not run it (failed: ")
    entry = next(e for e in manifest["artifacts"] if e["name"] == "tflite_int8")
    ram = entry["device_fit"]["budget"]["ram"]
    assert ram["arena_bytes"] == entry["device_fit"]["tflm"]["arena"]["smallest_arena_size"]
    assert ram["io_bytes"] == 64 + 10  # int8 input and output, batch 1
    need = ram["need_bytes"]
    only_int8 = {**json.loads(json.dumps(manifest)), "package": {}}
    only_int8["artifacts"] = [e for e in only_int8["artifacts"] if e["name"] == "tflite_int8"]
    exact = replace(PROFILES["cortex-m4"], name="exact", ram_kb=need / 1024)
    only_int8["device"] = {**asdict(exact), "required": True}
    assert decide(only_int8)["status"] == "verified"
    only_int8["device"] = {**asdict(replace(exact, name="short", ram_kb=(need - 1) / 1024)), "required": True}
    failed = decide(only_int8)
    assert failed["status"] == "failed" and "RAM 0.0 KiB over" in failed["failures"][-1]["message"]
    report = (out / "report.html").read_text()
    assert "device budget" in report and "Budget: <b>cortex-m4</b>" in report
    arena = manifest["package"]["tflm"]["firmware"]["arena"]["allocate_bytes"]
    assert f"<td>arena {arena} B, 1 ops, compiled with" in report or f"<td>arena {arena} B, 1 ops, parsed" in report


def test_without_a_compiler_the_array_is_parsed_back(firmware, monkeypatch):
    import dnnkit.handoff.tflm as handoff

    out, manifest = firmware
    folder = out / "firmware" / "tflm" / "digits"
    entry = next(e for e in manifest["artifacts"] if e["name"] == "tflite_int8")
    monkeypatch.setattr(handoff.shutil, "which", lambda name: None)
    data, how = handoff.read_back(folder)
    assert how == "parsed from model_data.cc (no C compiler found)"
    assert data == (out / entry["path"]).read_bytes()
