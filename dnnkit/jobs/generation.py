"""Generation for a causal_lm or seq2seq model: its step artifacts written and checked token for token (in a
child process, :mod:`dnnkit.workers.generation`), recorded in the manifest's ``generation`` section.

The held-out prompts come from the test split: a row's prompt is its tokens up to the first labelled step
(a label is the next token; an encoder-decoder's prompt is its source, then the decoder's start token), its
answer the labelled tokens. Keras generates the reference tokens
here, recomputing the whole prefix per token (:func:`dnnkit.builders.decoding.greedy_full`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit.artifacts.files import file_digest
from dnnkit.child.items import run_job
from dnnkit.config.recipe import Recipe
from dnnkit.core.fileio import write_text
from dnnkit.core.generation import STEP_ARTIFACTS, first_logits, greedy
from dnnkit.data.dataset import Dataset
from dnnkit.errors import one_line

WORKER = "dnnkit.workers.generation"
TIMEOUT_S = 900.0
SAMPLES = 5  # prompts shown with their generations in the manifest and report.html
TASK_FILE = "generation.json"  # OUT/reference/: the prompts and Keras's tokens, checked again by dnnkit verify
TASK_KEYS = ("prompts", "reference", "answers", "capacity", "cache_shapes", "source_steps", "probe_prompts",
             "probe_logits")
KERAS_CHECKED = 20  # prompts the Keras step model generates, against recomputing the whole prefix
PROBES = 8  # prompts whose prefill and first decode logits each signature is compared on
EOS_NAMES = ("<eos>", "</s>", "<|endoftext|>", "<end>")
HUB_NEW_TOKENS = 8  # tokens generated per prompt for a keras-hub causal LM (no task says how many)


def hub_prompts(x: dict[str, Any], most_new: int = HUB_NEW_TOKENS) -> tuple[list[list[int]], list[int]]:
    """A keras-hub causal LM's held-out prompts: each test row's first half of its tokens (``padding_mask``
    says which are tokens), to be continued for at most ``most_new`` tokens or the rest of the row."""
    ids = np.asarray(x["token_ids"])
    mask = np.asarray(x.get("padding_mask", np.ones_like(ids))).astype(bool)
    prompts, limits = [], []
    for row, valid in zip(ids, mask):
        n = int(valid.sum())
        if n >= 2:
            prompts.append([int(t) for t in row[:n // 2]])
            limits.append(min(most_new, ids.shape[1] - n // 2))
    return prompts, limits


def prompts_of(dataset: Dataset, source_steps: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    """The test split's prompts and answers (rows without a labelled step are skipped). An encoder-decoder's
    prompt is its source steps, then the decoder's tokens up to its first labelled step (the start token)."""
    prompts, answers = [], []
    for x, y in zip(np.asarray(dataset.x_test), np.asarray(dataset.y_test)):
        steps = np.flatnonzero(y >= 0)
        if len(steps):
            prompts.append([int(t) for t in x[:source_steps + steps[0] + 1]])
            answers.append([int(t) for t in y[steps]])
    return prompts, answers


def generation_section(model: Any, model_path: Path, dataset: Dataset, out: Path, recipe: Recipe,
                       verbose: bool = False) -> dict[str, Any]:
    """Write, check and place the generation artifacts of ``model``; returns the manifest's section.

    Args:
        model: the loaded causal_lm ``keras.Model`` (the reference).
        model_path: its file, loaded again in the child.
        dataset: its data (the test split gives the prompts).
        out: the output folder (staged): passed files go to ``artifacts/generation/``, failed ones to
            ``failed/generation/``.
        recipe: the export recipe (its ``[verify]`` limits judge the quantized artifacts).
        verbose: print a progress line.
    """
    from dnnkit.builders.decoding import greedy_full, hub_refusal, numpy_step, start_of, step_model

    hub = isinstance(dataset.x_test, dict)  # a keras-hub causal LM: token_ids and padding_mask, no labels
    if hub and hub_refusal(model) is not None:
        return {"skipped": f"no step artifacts: {hub_refusal(model)}"}
    try:
        decoder = step_model(model, capacity=np.asarray(dataset.x_test["token_ids"]).shape[1] if hub else None)
    except ValueError as exc:  # a keras-hub model this step cannot run yet: its full-sequence files still stand
        return {"skipped": f"no step artifacts: {one_line(exc)}"}
    source_steps = int(getattr(decoder, "source_steps", 0))
    if hub:
        prompts, limits = hub_prompts(dataset.x_test)
        answers = None  # no task to score: each file is judged against Keras's tokens alone
        reference = greedy_full(model, prompts, limits, steps=decoder.capacity)
        keras_exact = None
    else:
        prompts, answers = prompts_of(dataset, source_steps)
        reference = greedy_full(model, prompts, [len(a) for a in answers])
        keras_exact = float(np.mean([r == a for r, a in zip(reference, answers)])) if answers else 0.0
    # (a) in Keras, the step model (the cache or state carried) gives the tokens recomputing the prefix gives
    step = numpy_step(decoder)
    checked = list(zip(prompts, reference))[:KERAS_CHECKED]
    keras_step_same = float(np.mean([greedy(step, *start_of(decoder, p), decoder.capacity, len(r),
                                            prefill_len=None) == r for p, r in checked])) if checked else 1.0
    # (b) what each signature answers, against the Keras step's logits (the float criteria judge fp32 files)
    probes = [p for p in prompts if len(start_of(decoder, p)[1]) < decoder.capacity][:PROBES]
    probe_logits = [first_logits(step, *start_of(decoder, p)).tolist() for p in probes]
    staging = out / "logs" / "generation-staging"
    shutil.rmtree(staging, ignore_errors=True)
    names = recipe.generation
    item = {"model": str(model_path), "folder": str(staging), "names": list(names), "prompts": prompts,
            "reference": reference, "answers": answers, "capacity": decoder.capacity,
            "cache_shapes": {n: list(shape) for n, shape in decoder.state_shapes(1).items()},
            "source_steps": source_steps, "probe_prompts": probes, "probe_logits": probe_logits,
            "atol": recipe.verify.atol_fp32, "rtol": recipe.verify.rtol_fp32,
            "min_agreement": recipe.verify.min_agreement, "max_degradation": recipe.verify.max_degradation}
    write_text(out / "reference" / TASK_FILE, json.dumps({k: item[k] for k in TASK_KEYS}))  # for dnnkit verify
    if verbose:
        print(f"generation: {len(names)} step artifacts, {len(prompts)} held-out prompts ...", flush=True)
    result = run_job(WORKER, ["generation"], {"generation": TIMEOUT_S}, lambda name: {**item, "name": name},
                     log_path=out / "logs" / "dnnkit.log", action="generation", process="generation process")
    settled = result["generation"]
    artifacts: dict[str, Any] = {}
    for name in names:
        entry = dict(settled["info"].get(name) or {}) if settled["status"] == "done" else {}
        if not entry:
            entry = {"verdict": "fail", "failures": [settled.get("reason") or "not written"]}
        entry["format"], entry["precision"], _ = STEP_ARTIFACTS[name]
        if keras_step_same < 1.0:  # the step itself is wrong: no file made from it can be trusted
            entry["verdict"] = "fail"
            entry["failures"] = [*entry.get("failures", []), f"the Keras step model gives the recomputed tokens for "
                                 f"{keras_step_same:.4f} of {len(checked)} prompts, expected all"]
        entry["status"] = "verified" if entry["verdict"] == "pass" else "failed"
        for key in ("path", "encoder_path"):  # an encoder-decoder's ONNX encoder goes with its step file
            source = Path(entry.pop(key)) if entry.get(key) else None
            if source is not None and source.exists():
                home = out / ("artifacts" if entry["status"] == "verified" else "failed") / "generation" / source.name
                home.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(source), str(home))
                entry[key] = home.relative_to(out).as_posix()
                digest = "sha256" if key == "path" else "encoder_sha256"
                entry[digest], size = file_digest(home)
                entry["size_bytes"] = entry.get("size_bytes", 0) + size
        artifacts[name] = entry
    shutil.rmtree(staging, ignore_errors=True)
    vocabulary = dataset.labels if dataset.labels and len(dataset.labels) == decoder.vocab else None
    seq2seq = {}
    if source_steps:  # what `dnnkit generate` needs to turn a source into a prompt
        starts = [p[source_steps] for p in prompts]
        seq2seq = {"source_steps": source_steps, "decoder_start": max(set(starts), key=starts.count) if starts else 0,
                   "pad": vocabulary.index("<pad>") if vocabulary and "<pad>" in vocabulary else 0}
    return {"prompts": len(prompts), "capacity": decoder.capacity, "vocab_size": decoder.vocab, **seq2seq,
            "state": {n: list(shape) for n, shape in decoder.state_shapes(1).items()},
            "cache": ("fixed capacity, written at input_pos" if decoder.token_axis is None
                      else "recurrent state, carried from step to step"),
            "vocabulary": vocabulary, "eos": end_token(vocabulary),
            "keras_step_same_as_full": keras_step_same, "keras_exact_match": keras_exact, "sample": [{"prompt": p, "keras": r} for p, r in
                                                         zip(prompts[:SAMPLES], reference[:SAMPLES])],
            "artifacts": artifacts}


def recheck_generation(out: Path, section: dict[str, Any], verify: Any) -> dict[str, Any]:
    """Every step artifact of an export folder checked again in its runtime on the prompts and Keras tokens
    recorded at export (``OUT/reference/generation.json``), judged by ``verify``'s limits; a file changed since
    its check, or gone, fails. Returns the section with fresh figures and statuses (files stay where they are)."""
    section = json.loads(json.dumps(section))
    artifacts = section.get("artifacts") or {}
    task_path = out / "reference" / TASK_FILE
    check: dict[str, Any] = {}
    for name, entry in artifacts.items():
        if not entry.get("path"):
            continue  # never written: it stays failed
        why = _changed(out, entry) if task_path.exists() else f"{task_path.relative_to(out)} is missing"
        if why:
            entry.update(status="failed", verdict="fail", failures=[why])
        else:
            check[name] = {"format": entry["format"], "precision": entry["precision"], "path": str(out / entry["path"]),
                           **({"encoder_path": str(out / entry["encoder_path"])} if entry.get("encoder_path") else {})}
    if check:
        item = {**json.loads(task_path.read_text()), "check": check, "min_agreement": verify.min_agreement,
                "max_degradation": verify.max_degradation, "atol": verify.atol_fp32, "rtol": verify.rtol_fp32}
        result = run_job(WORKER, ["generation"], {"generation": TIMEOUT_S}, lambda name: {**item, "name": name},
                         log_path=out / "logs" / "verify.log", action="generation", process="generation process")
        settled = result["generation"]
        for name in check:
            fresh = dict(settled["info"].get(name) or {}) if settled["status"] == "done" else {}
            fresh = fresh or {"verdict": "fail", "failures": [settled.get("reason") or "not checked"]}
            fresh.pop("path", None)
            fresh.pop("encoder_path", None)
            artifacts[name].update(fresh, status="verified" if fresh["verdict"] == "pass" else "failed")
    return section


def _changed(out: Path, entry: dict[str, Any]) -> str | None:
    """Why a step file cannot be checked again as the one exported (gone, or its sha256 differs), or ``None``."""
    for key, digest in (("path", "sha256"), ("encoder_path", "encoder_sha256")):
        if not entry.get(key):
            continue
        path = out / entry[key]
        if not path.exists():
            return f"{entry[key]} is gone"
        if entry.get(digest) and file_digest(path)[0] != entry[digest]:
            return f"{entry[key]} changed since export (sha256 differs from the manifest's)"
    return None


def end_token(vocabulary: list[str] | None) -> int | None:
    """The end-of-sequence token's id, where the vocabulary names one (``<eos>``, ``</s>``, ...)."""
    for i, token in enumerate(vocabulary or []):
        if token in EOS_NAMES:
            return i
    return None
