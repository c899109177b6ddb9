"""The firmware hand-off: a TFLite artifact as the C source a TensorFlow Lite Micro project compiles.

    DEST/MODEL/model_data.h         the array's declaration, its length, the tensor arena to allocate, each
                                    input's and output's shape, type, scale and zero point, the labels
    DEST/MODEL/model_data.cc        the flatbuffer as a 16-byte-aligned ``const unsigned char[]`` (C++11 or C11)
    DEST/MODEL/micro_op_resolver.h  ``DnnkitRegisterOps()``: one ``Add*()`` call per builtin op the model uses,
                                    on a ``MicroMutableOpResolver`` sized to exactly those ops

The arena is TFLite Micro's own: the smallest ``arena_size`` that allocates, as the artifact's verification
measured it in the TFLM interpreter (:func:`dnnkit.verification.tflm.tflm_check`) on this 64-bit machine; a 32-bit
microcontroller's structs are no larger. Optimized kernels (CMSIS-NN, ESP-NN) may ask for scratch buffers the
reference kernels do not: ``DNNKIT_TENSOR_ARENA_SIZE`` adds ``ARENA_HEADROOM`` for them.

The copy is checked where it lies: the array is compiled with the system's C++ (or C) compiler into a program
that writes its bytes back (and checks the 16-byte alignment), or, with no compiler, parsed back from the
source; the bytes must have the artifact's sha256.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.errors import SpecError
from dnnkit.verification.budget import arena_bytes
from dnnkit.verification.tflm_ops import SOURCE, TFLM_ADD_METHODS

FILES = ("model_data.h", "model_data.cc", "micro_op_resolver.h")
ARENA_HEADROOM = 1024  # bytes on top of the measured arena, for optimized kernels' scratch buffers
ALIGN = 16
BYTES_PER_LINE = 12
COMPILE_LIMIT = 4 << 20  # model bytes compiled to check the copy; a larger array is parsed (a compiler takes minutes)


def write_tflm(source: Path, folder: Path, entry: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Write the three files for ``source`` (a ``.tflite`` artifact, its manifest ``entry``) into ``folder``.

    Returns:
        ``(files, record)``: the files written, and what they say (``ops``, ``resolver_methods``, ``arena``,
        ``inputs``/``outputs`` with their quantization, ``labels``).

    Raises:
        SpecError: the file uses an op TFLite Micro has no kernel for, or a custom op.
    """
    ops, inputs, outputs = _describe(source)
    missing = [op for op in ops if op not in TFLM_ADD_METHODS]
    if missing:
        raise SpecError(f"package.layout: tflm needs every op in TensorFlow Lite Micro; {entry['name']} uses "
                        f"{', '.join(missing)}, which it has no kernel for")
    arena = _arena(entry)
    labels = [str(label) for label in ((entry.get("metadata") or {}).get("labels") or [])]
    data = source.read_bytes()
    folder.mkdir(parents=True, exist_ok=True)
    origin = f"{entry['name']} ({source.name}, sha256 {entry.get('sha256')})"
    (folder / "model_data.h").write_text(_header(origin, len(data), arena, inputs, outputs, labels), encoding="utf-8")
    (folder / "model_data.cc").write_text(_source(origin, data, labels), encoding="utf-8")
    methods = [TFLM_ADD_METHODS[op] for op in ops]
    (folder / "micro_op_resolver.h").write_text(_resolver(origin, ops, methods), encoding="utf-8")
    return list(FILES), {"ops": ops, "resolver_methods": methods, "arena": arena,
                         "inputs": inputs, "outputs": outputs, "labels": len(labels)}


def read_back(folder: Path) -> tuple[bytes, str]:
    """The model bytes a firmware built from ``folder`` would hold, and how they were read: compiled with the
    system's C++ compiler (``c++``/``g++``/``clang++``), else its C compiler, and run; else (no compiler, or a
    model over :data:`COMPILE_LIMIT` bytes) parsed from the source.

    Raises:
        ValueError: the program fails, the array is not 16-byte aligned, or the source does not parse.
    """
    parsed = parse_array(folder / "model_data.cc")
    if len(parsed) > COMPILE_LIMIT:
        return parsed, f"parsed from model_data.cc ({len(parsed)} bytes: over {COMPILE_LIMIT} are not compiled)"
    for compiler, language in (("c++", "c++"), ("g++", "c++"), ("clang++", "c++"), ("cc", "c"), ("gcc", "c")):
        if shutil.which(compiler):
            return _compiled(folder, compiler, language), f"compiled with {compiler} ({language}) and run"
    return parsed, "parsed from model_data.cc (no C compiler found)"


def parse_array(path: Path) -> bytes:
    """The bytes of ``g_model_data`` as written in ``model_data.cc``, checked against ``g_model_data_len``."""
    text = path.read_text(encoding="utf-8")
    body = re.search(r"g_model_data\[\]\s*=\s*\{(.*?)\};", text, re.S)
    length = re.search(r"g_model_data_len\s*=\s*(\d+)u?;", text)
    if body is None or length is None:
        raise ValueError(f"{path.name}: no g_model_data array or g_model_data_len")
    data = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-fA-F]{2})", body.group(1)))
    if len(data) != int(length.group(1)):
        raise ValueError(f"{path.name}: {len(data)} bytes in the array, g_model_data_len says {length.group(1)}")
    return data


def _describe(source: Path) -> tuple[list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """The builtin ops the file uses (in first-use order) and its inputs and outputs at batch 1."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(source),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops: list[str] = []
    for op in interpreter._get_ops_details():
        if op["op_name"] not in ops:
            ops.append(str(op["op_name"]))

    def tensor(d: dict[str, Any]) -> dict[str, Any]:
        params = d.get("quantization_parameters") or {}
        scales, zeros = list(params.get("scales", [])), list(params.get("zero_points", []))
        shape = [1, *[int(v) for v in d["shape"][1:]]] if len(d["shape"]) else []
        return {"name": str(d["name"]), "shape": shape, "dtype": np.dtype(d["dtype"]).name,
                "scale": float(scales[0]) if len(scales) else 0.0, "zero_point": int(zeros[0]) if len(zeros) else 0}

    return ops, [tensor(d) for d in interpreter.get_input_details()], \
        [tensor(d) for d in interpreter.get_output_details()]


def _arena(entry: dict[str, Any]) -> dict[str, Any]:
    """The arena the firmware allocates: the one verification measured in TFLM for these very bytes (``dnnkit
    package`` verifies the folder first; a recipe's ``[package]`` runs after its export), else the estimate."""
    fit = entry.get("device_fit") or {}
    size, source = arena_bytes(fit)
    if size is None:
        raise SpecError(f"package.layout: tflm needs the arena of {entry['name']}, which was neither measured in "
                        f"TFLite Micro nor estimated")
    measured = ((fit.get("tflm") or {}).get("arena") or {}) if source == "measured" else {}
    how = ("measured in TFLite Micro" if measured else
           "ESTIMATED (not measured in TFLite Micro: the activation plan + its modelled persistent buffers)")
    allocate = -(-(int(size) + ARENA_HEADROOM) // ALIGN) * ALIGN
    return {"smallest_bytes": int(size), "allocate_bytes": allocate, "headroom_bytes": ARENA_HEADROOM,
            "source": how, **({k: measured[k] for k in ("head", "tail") if k in measured})}


def _c_string(text: str) -> str:
    """A C string literal of ``text``: quotes, backslashes and ``?`` (trigraphs) escaped, the rest of what is
    not printable ASCII as 3-digit octal UTF-8 bytes."""
    def char(c: str) -> str:
        if c in '"\\?':
            return "\\" + c
        if c.isascii() and c.isprintable():
            return c
        return "".join(f"\\{b:03o}" for b in c.encode("utf-8"))

    return '"' + "".join(char(c) for c in text) + '"'


def _header(origin: str, length: int, arena: dict[str, Any], inputs: list[dict[str, Any]],
            outputs: list[dict[str, Any]], labels: list[str]) -> str:
    lines = [f"// Generated by dnnkit from {origin}. Do not edit: run `dnnkit package OUT --layout tflm` again.",
             "#ifndef DNNKIT_MODEL_DATA_H_", "#define DNNKIT_MODEL_DATA_H_", "",
             "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
             "// The flatbuffer (16-byte aligned), and its length in bytes.",
             "extern const unsigned char g_model_data[];", "extern const unsigned int g_model_data_len;",
             f"#define DNNKIT_MODEL_DATA_LEN {length}u", "",
             f"// Tensor arena: {arena['smallest_bytes']} bytes {arena['source']}"
             + (f" (head {arena['head']} + tail {arena['tail']})" if "head" in arena else "")
             + f", + {arena['headroom_bytes']} for optimized kernels' scratch, rounded up to {ALIGN}.",
             f"#define DNNKIT_TENSOR_ARENA_SIZE {arena['allocate_bytes']}", ""]
    for kind, tensors in (("INPUT", inputs), ("OUTPUT", outputs)):
        lines.append(f"#define DNNKIT_NUM_{kind}S {len(tensors)}")
        for i, t in enumerate(tensors):
            zero = t["zero_point"]
            quant = (f"real = {t['scale']!r} * (q {'-' if zero >= 0 else '+'} {abs(zero)})" if t["scale"]
                     else "not quantized")
            lines.append(f"// {kind.lower()} {i} {t['name']!r}: {t['dtype']} {t['shape']}, {quant}")
            for key, value in ((f"{kind}{i}_SCALE", f"{t['scale']!r}f"),
                               (f"{kind}{i}_ZERO_POINT", f"({t['zero_point']})"),
                               (f"{kind}{i}_ELEMENTS", str(int(np.prod(t["shape"])) if t["shape"] else 1))):
                lines.append(f"#define DNNKIT_{key} {value}")
        lines.append("")
    lines += [f"// Class labels, in output order ({len(labels)}).", f"#define DNNKIT_NUM_LABELS {len(labels)}"]
    if labels:
        lines.append("extern const char* const g_model_labels[DNNKIT_NUM_LABELS];")
    lines += ["", "#ifdef __cplusplus", '}  // extern "C"', "#endif", "", "#endif  // DNNKIT_MODEL_DATA_H_", ""]
    return "\n".join(lines)


def _source(origin: str, data: bytes, labels: list[str]) -> str:
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + BYTES_PER_LINE]) for i in range(0, len(data), BYTES_PER_LINE)]
    lines = [f"// Generated by dnnkit from {origin}. Do not edit.", '#include "model_data.h"', "",
             "#if defined(__cplusplus)", f"#define DNNKIT_ALIGNED alignas({ALIGN})", "#else",
             f"#define DNNKIT_ALIGNED _Alignas({ALIGN})", "#endif", "",
             "DNNKIT_ALIGNED const unsigned char g_model_data[] = {", *(f"    {r}," for r in rows), "};",
             f"const unsigned int g_model_data_len = {len(data)}u;", ""]
    if labels:
        lines += ["const char* const g_model_labels[DNNKIT_NUM_LABELS] = {",
                  *(f"    {_c_string(label)}," for label in labels), "};", ""]
    return "\n".join(lines)


def _resolver(origin: str, ops: list[str], methods: list[str]) -> str:
    calls = [f"  if ((status = resolver.{m}()) != kTfLiteOk) return status;  // {op}" for op, m in zip(ops, methods)]
    return "\n".join([
        f"// Generated by dnnkit from {origin}: the {len(ops)} builtin ops the model uses, each registered once",
        f"// (method names from {SOURCE[0]}@{SOURCE[2][:12]}:{SOURCE[1]}).",
        "#ifndef DNNKIT_MICRO_OP_RESOLVER_H_", "#define DNNKIT_MICRO_OP_RESOLVER_H_", "",
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"', "",
        f"constexpr unsigned int kDnnkitOpCount = {len(ops)};",
        "using DnnkitOpResolver = tflite::MicroMutableOpResolver<kDnnkitOpCount>;", "",
        "inline TfLiteStatus DnnkitRegisterOps(DnnkitOpResolver& resolver) {", "  TfLiteStatus status = kTfLiteOk;",
        *calls, "  return kTfLiteOk;", "}", "", "#endif  // DNNKIT_MICRO_OP_RESOLVER_H_", ""])


_CHECK = """#include <stdint.h>
#include <stdio.h>
#include "model_data.h"
int main(void) {
  if (((uintptr_t)g_model_data) % %(align)d != 0) return 3;
  if (fwrite(g_model_data, 1, g_model_data_len, stdout) != g_model_data_len) return 4;
  return 0;
}
"""


def _compiled(folder: Path, compiler: str, language: str) -> bytes:
    """Build ``model_data.cc`` with a program that writes the array to stdout; run it; its output."""
    with tempfile.TemporaryDirectory(prefix="dnnkit-tflm-cc-") as tmp:
        check = Path(tmp) / ("check.cc" if language == "c++" else "check.c")
        check.write_text(_CHECK.replace("%(align)d", str(ALIGN)), encoding="utf-8")
        program = Path(tmp) / "check"
        std = ["-std=c++11"] if language == "c++" else ["-std=c11"]
        build = subprocess.run([compiler, *std, "-x", language, str(folder / "model_data.cc"), "-x", language,
                                str(check), "-I", str(folder), "-o", str(program)],
                               capture_output=True, text=True, timeout=600)
        if build.returncode != 0:
            raise ValueError(f"{compiler} could not build model_data.cc: "
                             f"{' '.join((build.stderr or '').split())[:300]}")
        run = subprocess.run([str(program)], capture_output=True, timeout=60, env={**os.environ})
        if run.returncode == 3:
            raise ValueError(f"g_model_data is not {ALIGN}-byte aligned in the compiled program")
        if run.returncode != 0:
            raise ValueError(f"the program built from model_data.cc exited {run.returncode}")
        return run.stdout
