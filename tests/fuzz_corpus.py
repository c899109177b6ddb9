"""Damaged and hostile inputs for the containment tests (and ``benchmarks/fuzz_verify.py``).

Artifacts: bit flips, truncations, zeroed regions, headers wiped, and files of the wrong format
under the right name, over ``.tflite``, ``.onnx`` and SavedModel folders (``saved_model.pb``,
the variables index and data). ``.keras`` archives: broken zips, and ``config.json`` edited to
unknown classes, Lambda layers, hostile module paths, absurd or negative shapes, missing
weights, corrupt weights, wrong JSON.

Everything is generated from a seed and a real export, so the corpus is the same on every run.
"""

from __future__ import annotations

import copy
import json
import shutil
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


def _flip(data: bytes, rng: np.random.Generator, bits: int) -> bytes:
    buf = bytearray(data)
    for pos in rng.integers(0, len(buf) * 8, bits):
        buf[pos // 8] ^= 1 << (pos % 8)
    return bytes(buf)


def _zero(data: bytes, rng: np.random.Generator, size: int) -> bytes:
    buf = bytearray(data)
    start = int(rng.integers(0, max(1, len(buf) - size)))
    buf[start:start + size] = bytes(min(size, len(buf) - start))
    return bytes(buf)


def byte_mutations(data: bytes, rng: np.random.Generator, other: dict[str, bytes]) -> Iterator[tuple[str, bytes]]:
    """Mutations of one file's bytes: name and new content. ``other``: files of other formats."""
    for bits in (1, 1, 4, 16, 64, 512):
        yield f"flip{bits}", _flip(data, rng, bits)
    for frac in (0.0, 0.01, 0.3, 0.5, 0.9, 0.999):
        yield f"trunc{frac}", data[:int(len(data) * frac)]
    for size in (8, 256, 4096):
        yield f"zero{size}", _zero(data, rng, size)
    yield "header_zeroed", bytes(16) + data[16:]
    yield "header_ff", b"\xff" * 64 + data[64:]
    yield "random_same_size", rng.integers(0, 256, len(data), dtype=np.uint8).tobytes()
    yield "doubled", data + data
    yield "text", b"this is not a model\n" * 10
    for kind, blob in sorted(other.items()):
        yield f"is_{kind}", blob


def artifact_corpus(export_dir: Path, out_dir: Path, seed: int = 0, limit: int | None = None
                    ) -> list[dict[str, Any]]:
    """Write mutated copies of an export's artifacts into ``out_dir``; return manifest entries.

    Each entry copies the original artifact's manifest entry (options, recorded sha256) with a new
    name and path, so ``dnnkit verify`` checks the mutated file as if it were the original.
    """
    rng = np.random.default_rng(seed)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    converted = [e for e in manifest["artifacts"] if e["converted"]]
    by_format = {e["format"]: e for e in converted if e["precision"] == "fp32"}
    blobs = {"tflite": (export_dir / by_format["tflite"]["path"]).read_bytes(),
             "onnx": (export_dir / by_format["onnx"]["path"]).read_bytes()}
    entries: list[dict[str, Any]] = []
    out_dir.mkdir(parents=True, exist_ok=True)

    def add(source: dict[str, Any], tag: str, write: Callable[[Path], None], suffix: str) -> None:
        name = f"fuzz_{len(entries):03d}_{source['name']}_{tag}".replace(".", "p")
        path = out_dir / f"{name}{suffix}"
        write(path)
        entry = copy.deepcopy(source)
        entry.update(name=name, path=str(path.relative_to(export_dir)))
        entry["options"]["name"] = name
        entries.append(entry)

    for fmt in ("tflite", "onnx"):
        for source in (e for e in converted if e["format"] == fmt):
            data = (export_dir / source["path"]).read_bytes()
            others = {k: v for k, v in blobs.items() if k != fmt}
            for tag, blob in byte_mutations(data, rng, others):
                if blob != data:  # e.g. zeroing a region that was zero already: not a mutation
                    add(source, tag, lambda p, b=blob: p.write_bytes(b), "." + fmt)
    sm = by_format["saved_model"]
    sm_dir = export_dir / sm["path"]
    files = sorted(p.relative_to(sm_dir) for p in sm_dir.rglob("*") if p.is_file())
    for rel in files:
        data = (sm_dir / rel).read_bytes()
        for tag, blob in byte_mutations(data, rng, blobs):
            if blob == data:
                continue

            def write(path: Path, rel: Path = rel, blob: bytes = blob) -> None:
                shutil.copytree(sm_dir, path)
                (path / rel).write_bytes(blob)
            add(sm, f"{str(rel).replace('/', '_')}_{tag}", write, "")
        add(sm, f"{str(rel).replace('/', '_')}_removed",
            lambda path, rel=rel: (shutil.copytree(sm_dir, path), (path / rel).unlink()), "")
    add(sm, "empty_dir", lambda path: path.mkdir(), "")
    add(sm, "file_not_dir", lambda path: path.write_bytes(blobs["tflite"]), "")
    return entries[:limit] if limit else entries


def write_fuzz_manifest(export_dir: Path, entries: list[dict[str, Any]], timeout_s: float = 20.0) -> None:
    """Point an export folder's manifest at the mutated artifacts only."""
    manifest = json.loads((export_dir / "manifest.json").read_text())
    manifest["artifacts"] = entries
    manifest["recipe"]["verify"].update(timeout_s=timeout_s, latency_runs=3, warmup_runs=1)
    (export_dir / "manifest.json").write_text(json.dumps(manifest))


# ---------------------------------------------------------------------------------------------
# .keras archives


def _rewrite(src: Path, dst: Path, edit: Callable[[dict[str, bytes]], dict[str, bytes]]) -> None:
    with zipfile.ZipFile(src) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members = edit(members)
    with zipfile.ZipFile(dst, "w") as z:
        for name, blob in members.items():
            z.writestr(name, blob)


def _config_edit(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, bytes]], dict[str, bytes]]:
    def edit(members: dict[str, bytes]) -> dict[str, bytes]:
        config = json.loads(members["config.json"])
        change(config)
        return {**members, "config.json": json.dumps(config).encode()}
    return edit


def _layer(config: dict[str, Any], class_name: str) -> dict[str, Any]:
    return next(layer for layer in config["config"]["layers"] if layer["class_name"] == class_name)


def _set(path: tuple, value: Any, cls: str = "Dense") -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        target = _layer(config, cls)
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def _lambda(config: dict[str, Any]) -> None:
    dense = _layer(config, "Dense")
    dense.update(class_name="Lambda", module="keras.layers")
    dense["config"] = {"name": dense["config"]["name"], "function": {
        "class_name": "__lambda__", "config": {"code": "4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMIAAAAfABkARQAUwApAk7pAgAAAKkAKQHaAXhyAgAAAHICAAAA+gE8bGFtYmRhPqkAcwAAAAA=",
                                            "defaults": None, "closure": None}}, "output_shape": None}


def _missing_layer_ref(config: dict[str, Any]) -> None:
    dense = _layer(config, "Dense")
    dense["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["no_such_layer", 0, 0]


def keras_corpus(model_path: Path, out_dir: Path, seed: int = 0) -> list[tuple[str, Path]]:
    """Write damaged and hostile ``.keras`` archives derived from a real one: (case, path) pairs."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = model_path.read_bytes()
    cases: list[tuple[str, Path]] = []

    def raw(name: str, blob: bytes) -> None:
        path = out_dir / f"{name}.keras"
        path.write_bytes(blob)
        cases.append((name, path))

    def archive(name: str, edit: Callable[[dict[str, bytes]], dict[str, bytes]]) -> None:
        path = out_dir / f"{name}.keras"
        _rewrite(model_path, path, edit)
        cases.append((name, path))

    # broken zips
    raw("empty", b"")
    raw("not_zip", b"PK but not really a zip file")
    for frac in (0.1, 0.5, 0.9, 0.99):
        raw(f"truncated_{frac}", data[:int(len(data) * frac)])
    raw("central_directory_zeroed", data[:-64] + bytes(64))
    raw("random_bytes", rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    with zipfile.ZipFile(model_path) as z:
        infos = {i.filename: i for i in z.infolist()}
    # the stored config bytes changed in place: the archive's CRC no longer matches
    start = infos["config.json"].header_offset + 100
    raw("config_bytes_flipped", data[:start] + _flip(data[start:start + 200], rng, 8) + data[start + 200:])
    # corrupt the stored weights bytes in place (zip checksums then fail, or h5 does)
    start = infos["model.weights.h5"].header_offset + 200
    raw("weights_bytes_zeroed", data[:start] + bytes(2048) + data[start + 2048:])
    raw("weights_bytes_flipped", data[:start] + _flip(data[start:start + 4096], rng, 256) + data[start + 4096:])
    # archive members missing or replaced
    archive("no_config", lambda m: {k: v for k, v in m.items() if k != "config.json"})
    archive("no_weights", lambda m: {k: v for k, v in m.items() if k != "model.weights.h5"})
    archive("weights_zeroed", lambda m: {**m, "model.weights.h5": bytes(len(m["model.weights.h5"]))})
    archive("config_not_json", lambda m: {**m, "config.json": b"{not json"})
    archive("config_is_list", lambda m: {**m, "config.json": b"[1, 2, 3]"})
    archive("config_is_null", lambda m: {**m, "config.json": b"null"})
    archive("config_binary", lambda m: {**m, "config.json": rng.integers(0, 256, 500, dtype=np.uint8).tobytes()})
    archive("weights_empty", lambda m: {**m, "model.weights.h5": b""})
    archive("weights_text", lambda m: {**m, "model.weights.h5": b"not hdf5"})
    archive("weights_truncated", lambda m: {**m, "model.weights.h5": m["model.weights.h5"][:3000]})
    archive("weights_flipped", lambda m: {**m, "model.weights.h5": _flip(m["model.weights.h5"], rng, 200)})
    archive("path_traversal_member", lambda m: {**m, "../../evil.txt": b"x"})
    archive("unexpected_member", lambda m: {**m, "payload.py": b"import os"})
    # 80 MB of whitespace after the JSON: refused by its size, before it is read (it cost 0.55 GB of memory)
    archive("config_padded", lambda m: {**m, "config.json": m["config.json"] + b" " * (80 << 20)})
    # config.json edited
    edits: dict[str, Callable[[dict[str, Any]], None]] = {
        "unknown_class": _set(("class_name",), "TotallyUnknownLayer"),
        "unknown_module": _set(("module",), "evil.module"),
        "os_system_class": lambda c: _layer(c, "Dense").update(module="os", class_name="system"),
        "builtins_eval": lambda c: _layer(c, "Dense").update(module="builtins", class_name="eval"),
        "lambda_layer": _lambda,
        "units_absurd": _set(("config", "units"), 10 ** 12),
        "units_huge": _set(("config", "units"), 10 ** 9),
        "units_2e8": _set(("config", "units"), 2 * 10 ** 8),  # TensorFlow tried to allocate 51 GB for it
        "units_negative": _set(("config", "units"), -5),
        "units_zero": _set(("config", "units"), 0),
        "units_string": _set(("config", "units"), "many"),
        "units_float": _set(("config", "units"), 3.5),
        "input_shape_absurd": _set(("config", "batch_shape"), [None, 10 ** 12], "InputLayer"),
        "input_shape_negative": _set(("config", "batch_shape"), [None, -64], "InputLayer"),
        "input_rank_wrong": _set(("config", "batch_shape"), [None, 8, 8, 8, 8], "InputLayer"),
        "dtype_unknown": _set(("config", "dtype"), "float99", "InputLayer"),
        "activation_unknown": _set(("config", "activation"), "no_such_activation", "Activation"),
        "activation_module_path": _set(("config", "activation"), {"module": "os", "class_name": "system",
                                                                  "config": {}, "registered_name": "system"},
                                       "Activation"),
        "initializer_unknown": _set(("config", "kernel_initializer", "class_name"), "NoSuchInitializer"),
        "missing_inbound_layer": _missing_layer_ref,
        "layers_not_list": lambda c: c["config"].update(layers={"a": 1}),
        "no_layers": lambda c: c["config"].update(layers=[]),
        "output_layers_unknown": lambda c: c["config"].update(output_layers=[["nowhere", 0, 0]]),
        "model_class_unknown": lambda c: c.update(class_name="NotAModel"),
        "config_missing": lambda c: c.pop("config"),
        "deep_nesting": lambda c: _layer(c, "Dense")["config"].update(
            kernel_initializer=json.loads("[" * 400 + "]" * 400)),
        "name_with_path": _set(("config", "name"), "../../../etc/passwd"),
        "trainable_string": _set(("config", "trainable"), "yes please"),
    }
    for name, change in edits.items():
        archive(f"config_{name}", _config_edit(change))
    return cases
