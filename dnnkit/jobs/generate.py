"""``dnnkit generate``: greedy generation from a prompt, run by one of an export folder's verified step artifacts
in its own runtime (the LiteRT interpreter, onnxruntime, TensorFlow), by the same loop that verified it
(:func:`dnnkit.core.generation.greedy`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.artifacts.files import file_digest
from dnnkit.core.generation import check_room, detokenize, greedy, prompt_tokens
from dnnkit.errors import DataError, ModelLoadError
from dnnkit.manifest.record import MANIFEST
from dnnkit.verification.generation import RUNNERS

# the artifact used when none is named: the first of these that verified
PREFERRED = ("decoder_tflite_fp32", "decoder_onnx_fp32", "decoder_saved_model")


def generate(out_dir: str | os.PathLike[str], prompt: Any = None, *, text: str | None = None,
             artifact: str | None = None, max_new: int | None = None) -> dict[str, Any]:
    """Generate greedily after ``prompt`` with a verified step artifact of the export folder ``out_dir``.

    Args:
        out_dir: a folder written by ``dnnkit run``/``export`` for a causal_lm model.
        prompt: token ids (a list, a 1-D integer array, or a string of ids).
        text: the prompt as text instead (the model's vocabulary, recorded at export, splits it into tokens).
        artifact: which step artifact (default: the first verified of ``PREFERRED``).
        max_new: the most tokens generated (default: as many as the cache has room for); generation also
            stops after the end token where the vocabulary names one.

    Returns:
        ``{"artifact", "format", "precision", "prompt", "tokens", "text", "seconds", "tokens_per_s"}``
        (``text`` is ``None`` without a vocabulary).

    Raises:
        DataError: a bad prompt (not integers, outside the vocabulary), a cache overflow, a folder without
            generation artifacts, an artifact that is unknown or was not verified.
        ModelLoadError: the artifact's file is missing or changed since it was verified.
    """
    out = Path(out_dir)
    section = _section(out)
    name, entry = _artifact(section, artifact)
    vocabulary, eos = section.get("vocabulary"), section.get("eos")
    ids = prompt_tokens(prompt, int(section["vocab_size"]), vocabulary, text)
    count = check_room(ids, max_new, int(section["capacity"]))
    path = (out / entry["path"]).resolve()
    if out.resolve() not in path.parents or not path.exists():
        raise ModelLoadError(f"artifact: {entry['path']} is missing from {out}")
    if entry.get("sha256") and file_digest(path)[0] != entry["sha256"]:
        raise ModelLoadError(f"artifact: {entry['path']} changed since it was verified (its sha256 differs from the "
                             f"manifest's); run the export again")
    step, width, _ = RUNNERS[entry["format"]](str(path))
    state = {k: np.zeros(shape, np.float32) for k, shape in section["state"].items()}
    begin = time.perf_counter()
    tokens = greedy(step, state, ids, int(section["capacity"]), count, eos=eos, prefill_len=width)
    seconds = time.perf_counter() - begin
    return {"artifact": name, "format": entry["format"], "precision": entry["precision"], "prompt": ids,
            "tokens": tokens, "text": detokenize(tokens, vocabulary, eos), "seconds": round(seconds, 4),
            "tokens_per_s": round(len(tokens) / seconds, 1) if seconds > 0 else None}


def _section(out: Path) -> dict[str, Any]:
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"out_dir: {out} holds no {MANIFEST}, expected a folder written by dnnkit run or "
                        "export") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"out_dir: {out / MANIFEST} cannot be read ({exc})") from None
    section = manifest.get("generation") if isinstance(manifest, dict) else None
    if not section or "state" not in section:
        raise DataError(f"out_dir: {out} holds no generation artifacts, expected the export of a causal_lm model "
                        "(a spec with head = \"causal_lm\")")
    return section


def _artifact(section: dict[str, Any], name: str | None) -> tuple[str, dict[str, Any]]:
    artifacts = section["artifacts"]
    verified = [n for n, e in artifacts.items() if e.get("status") == "verified" and e.get("path")]
    if name is None:
        ranked = [n for n in PREFERRED if n in verified] + [n for n in verified if n not in PREFERRED]
        if not ranked:
            raise DataError("artifact: no step artifact of this folder was verified; nothing to generate with")
        name = ranked[0]
    elif name not in artifacts:
        raise DataError(f"artifact: {name!r} is no step artifact of this folder, expected one of "
                        f"{', '.join(verified) or '(none verified)'}")
    elif name not in verified:
        raise DataError(f"artifact: {name!r} failed its check, expected a verified one: "
                        f"{', '.join(verified) or '(none)'}")
    return name, artifacts[name]
