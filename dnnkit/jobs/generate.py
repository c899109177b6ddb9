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
from dnnkit.verification.generation import RUNNERS, start_state

# the artifact used when none is named: the first of these that verified
PREFERRED = ("decoder_tflite_fp32", "decoder_onnx_fp32", "decoder_saved_model")


def generate(out_dir: str | os.PathLike[str], prompt: Any = None, *, text: str | None = None,
             artifact: str | None = None, max_new: int | None = None) -> dict[str, Any]:
    """Generate greedily after ``prompt`` with a verified step artifact of the export folder ``out_dir``.

    Args:
        out_dir: a folder written by ``dnnkit run``/``export`` for a causal_lm or seq2seq model.
        prompt: token ids (a list, a 1-D integer array, or a string of ids): a language model's prompt, or an
            encoder-decoder's source (right-padded; the decoder starts from its start token).
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
    source_steps = int(section.get("source_steps") or 0)
    full = ids
    if source_steps:  # the source, right-padded, then the decoder's start token
        if len(ids) > source_steps:
            raise DataError(f"prompt: {len(ids)} source tokens, expected at most {source_steps} (the encoder's "
                            "source steps)")
        full = ids + [int(section["pad"])] * (source_steps - len(ids)) + [int(section["decoder_start"])]
    count = check_room(full[source_steps:], max_new, int(section["capacity"]))
    paths = {key: _checked(out, entry, key) for key in ("path", "encoder_path") if entry.get(key)}
    runner = RUNNERS[entry["format"]](*(str(p) for p in paths.values()))
    empty = {k: np.zeros(shape, np.float32) for k, shape in section["state"].items()}
    begin = time.perf_counter()
    state, decoder_prompt = start_state(runner, empty, full, source_steps)
    tokens = greedy(runner.step, state, decoder_prompt, int(section["capacity"]), count, eos=eos,
                    prefill_len=runner.width)
    seconds = time.perf_counter() - begin
    return {"artifact": name, "format": entry["format"], "precision": entry["precision"], "prompt": ids,
            "tokens": tokens, "text": detokenize(tokens, vocabulary, eos), "seconds": round(seconds, 4),
            "tokens_per_s": round(len(tokens) / seconds, 1) if seconds > 0 else None}


def _checked(out: Path, entry: dict[str, Any], key: str) -> Path:
    """The file ``entry[key]`` names, inside ``out`` and unchanged since its check."""
    path = (out / entry[key]).resolve()
    if out.resolve() not in path.parents or not path.exists():
        raise ModelLoadError(f"artifact: {entry[key]} is missing from {out}")
    recorded = entry.get("sha256" if key == "path" else "encoder_sha256")
    if recorded and file_digest(path)[0] != recorded:
        raise ModelLoadError(f"artifact: {entry[key]} changed since it was verified (its sha256 differs from the "
                             f"manifest's); run the export again")
    return path


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
        raise DataError(f"out_dir: {out} holds no generation artifacts, expected the export of a causal_lm or "
                        "seq2seq model (a spec with head = \"causal_lm\" or \"seq2seq\")")
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
