"""The export pipeline: reference model + recipe -> artifacts -> verification -> manifest.

Output folder::

    OUT/manifest.json          every artifact, how it was verified, versions
    OUT/reference/model.keras  the Keras model the artifacts are checked against
    OUT/reference/spec.toml    its spec (when known)
    OUT/artifacts/             the SavedModel folder, .tflite and .onnx files
    OUT/logs/convert.log       the converter processes' stderr
    OUT/run/                   the training run (``dnnkit run`` only)
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import sys
from dataclasses import asdict
from importlib import metadata as _metadata
from pathlib import Path
from typing import Any

import numpy as np

from dnnkit import __version__
from dnnkit.config import Spec, as_spec, dump_toml, load_spec, spec_to_dict
from dnnkit.errors import ModelLoadError
from dnnkit.child import peak_rss_mb
from dnnkit.criteria import failure, float_parity
from dnnkit.fileio import atomic_path, save_keras, write_json, write_text
from dnnkit.recipe import ArtifactConfig, Recipe, RecipeError, VerifyConfig, load_recipe, with_samples

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = "models/digits_cnn.toml"
DEFAULT_RECIPE = "export/all.toml"
MANIFEST = "manifest.json"


def versions() -> dict[str, str | None]:
    """Installed versions of the converters and runtimes that made and checked artifacts."""
    out: dict[str, str | None] = {"dnnkit": __version__}
    for pkg in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"):
        try:
            out[pkg] = _metadata.version(pkg)
        except _metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def default_path(relative: str) -> Path:
    """A shipped spec/recipe: from the working directory if present, else from the repo."""
    here = Path(relative)
    return here if here.exists() else REPO_ROOT / relative


def _with_artifacts(recipe: Recipe) -> Recipe:
    if not recipe.artifacts:
        raise RecipeError(f"{recipe.path or recipe.name}: artifacts: expected a non-empty array of [[artifacts]] "
                          f"tables, got nothing (a recipe with only [optimize] is for `dnnkit optimize`)")
    return recipe


def as_recipe(recipe: Recipe | str | os.PathLike[str]) -> Recipe:
    return recipe if isinstance(recipe, Recipe) else load_recipe(recipe)


def _reference(model: Any, spec: Spec, data: str | None, max_inputs: int = 5000,
               fp16: bool = False, heads: list[str] | None = None, task: str | None = None) -> tuple[Any, Any]:
    """The reference outputs on the test split, then on the train and validation inputs.

    Agreement needs no labels, so artifacts are checked on every input available (up to
    ``max_inputs``, the labelled test split always first and whole). With ``fp16``, also the
    output error of the model's weights rounded to fp16 (the fp16 artifacts' calibration).
    A model with several inputs or outputs reads its data with
    :func:`dnnkit.data.load_model_data` (arrays per input and output name).
    """
    inputs, dataset = _reference_inputs(model, spec, data, max_inputs, heads=heads, task=task)
    return _reference_outputs(model, inputs, fp16=fp16), dataset


def _reference_inputs(model: Any, spec: Spec, data: str | None, max_inputs: int = 5000,
                      heads: list[str] | None = None, task: str | None = None) -> tuple[dict[str, Any], Any]:
    """What :func:`_reference` computes outputs on: ``({x, heads, labels, input_names, output_names,
    n_test}, dataset)``."""
    from dnnkit.data import load_data, load_model_data, named_arrays
    from dnnkit.signature import concat, input_names, is_multi, output_names, rows, take

    source = data or spec.data.source
    if is_multi(model) or spec.model.head == "multi" or (data is not None and named_arrays(source)):
        dataset, heads = load_model_data(model, source, spec.data, task=task, heads=heads)
        labels = [dataset.y_test.get(n) for n in output_names(model)]
    else:
        dataset = load_data(spec, source=data)
        heads, labels = [spec.model.head], [dataset.y_test]
    n_test = rows(dataset.x_test)
    x_all = take(concat([dataset.x_test, dataset.x_train, dataset.x_val]), slice(0, max(max_inputs, n_test)))
    return {"x": x_all, "heads": heads, "labels": labels, "input_names": input_names(model),
            "output_names": output_names(model), "n_test": n_test}, dataset


def _reference_outputs(model: Any, inputs: dict[str, Any], fp16: bool = False) -> Any:
    """The :class:`~dnnkit.verification.Reference`: the model's outputs on ``inputs`` (from
    :func:`_reference_inputs`), its task metrics, and with ``fp16`` its fp16-weight error."""
    from dnnkit.signature import predict
    from dnnkit.verification import Reference, reference_metrics

    outputs = predict(model, inputs["x"])
    ref = Reference(outputs=outputs, metrics=reference_metrics(inputs["heads"], inputs["labels"], outputs,
                                                                inputs["output_names"], inputs["n_test"]), **inputs)
    if fp16:
        from dnnkit.fp16 import fp16_weight_error

        errors = fp16_weight_error(model, inputs["x"], outputs)
        ref.fp16_weight_error = errors[0] if isinstance(errors, list) and len(errors) == 1 else errors
    return ref


def _has_fp16(recipe: Recipe) -> bool:
    return any(a.precision == "fp16" for a in recipe.artifacts)


def _representative(dataset: Any, count: int, seed: int) -> Any:
    from dnnkit.signature import rows, take

    order = np.random.default_rng(seed).permutation(rows(dataset.x_train))
    return take(dataset.x_train, order[:count])


def export(model: str | os.PathLike[str], recipe: Recipe | str | os.PathLike[str],
           out_dir: str | os.PathLike[str], *, spec: Spec | str | os.PathLike[str] | None = None,
           data: str | None = None, task: str | None = None, unsafe: bool = False,
           verbose: bool = False, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Convert a Keras model into every artifact of a recipe, verify each, write the manifest.

    Args:
        model: a ``.keras`` file.
        recipe: a Recipe or a recipe path.
        out_dir: the output folder.
        spec: the model's spec (its data section names the data); optional.
        data: ``"digits"`` or a ``.npz``/``.csv`` path (required without a spec).
        task: the head type of a model without a spec (inferred when omitted).
        unsafe: allow Lambda layers (trusted files only).
        verbose: print progress lines.
        extra: more top-level manifest fields (e.g. the training run).

    Returns:
        The manifest (also written, once and atomically, to ``OUT/manifest.json``).

    Raises:
        RecipeError, ModelLoadError, DataError: on bad input, before anything is written.
    """
    from dnnkit.packaging import package_all

    recipe = as_recipe(recipe)
    with _job():
        manifest = _export(model, recipe, out_dir, spec=spec, data=data, task=task, unsafe=unsafe,
                           verbose=verbose, extra=extra)
        return package_all(out_dir, recipe.package, _finish(manifest, Path(out_dir)), unsafe=unsafe)


def _finish(manifest: dict[str, Any], out: Path) -> dict[str, Any]:
    """The one verdict (artifacts and goals), the atomic write of the manifest, then ``report.html``
    (a report that cannot be drawn is recorded in the manifest and does not change the verdict)."""
    from dnnkit.html_report import REPORT, write_html_report
    from dnnkit.verdict import decide

    import time

    decide(manifest)
    manifest["report"] = {"html": REPORT}
    timings = _TIMINGS[-1] if _TIMINGS else None
    if timings is not None:
        manifest["timings"] = _timings_record(timings)
    begin = time.perf_counter()
    try:
        write_html_report(manifest, out)
    except Exception as exc:  # noqa: BLE001 - the artifacts and their verdict stand without the page
        manifest["report"] = {"html": None, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
        print(f"dnnkit: report.html not written: {manifest['report']['error']}", file=sys.stderr, flush=True)
    if timings is not None:
        timings["report_s"] = round(time.perf_counter() - begin, 3)
        manifest["timings"] = _timings_record(timings)
    write_json(out / MANIFEST, manifest, sort_keys=False)
    return manifest


def _timings_record(timings: dict[str, Any]) -> dict[str, Any]:
    """The manifest's ``timings``: wall seconds so far and per stage, the worker processes' start-up, and
    ``cpu_s``: the CPU seconds (user + system) of this process and of each worker role since the job
    began (a worker's up to its last item; its imports count where it was started for the job)."""
    import time

    from dnnkit.child import WORKER_CPU
    from dnnkit.formats import WORKER as CONVERTER
    from dnnkit.verification import WORKER as VERIFIER

    record = {k: v for k, v in timings.items() if k not in ("started", "cpu_started", "workers_cpu_before")}
    cpu: dict[str, float] = {"parent": round(time.process_time() - timings["cpu_started"], 1)}
    before = timings["workers_cpu_before"]
    for serial, (role, seconds) in sorted(WORKER_CPU.items()):
        if seconds > before.get(serial, -1.0):  # a worker that settled an item of this job
            role = {CONVERTER: "converter", VERIFIER: "verifier"}.get(role, role)
            cpu[role] = round(cpu.get(role, 0.0) + seconds - before.get(serial, 0.0), 1)
    return {"wall_s": round(time.perf_counter() - timings["started"], 3), **record, "cpu_s": cpu}


def _export(model: str | os.PathLike[str], recipe: Recipe | str | os.PathLike[str],
            out_dir: str | os.PathLike[str], *, spec: Spec | str | os.PathLike[str] | None = None,
            data: str | None = None, task: str | None = None, unsafe: bool = False,
            verbose: bool = False, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`export` without the verdict and the write (``compress`` adds its passes first)."""
    recipe = _with_artifacts(as_recipe(recipe))
    with _source_model(model, unsafe) as (keras_model, source_dir, source_info):
        return _export_loaded(model, keras_model, source_dir, source_info, recipe, out_dir, spec=spec, data=data,
                              task=task, unsafe=unsafe, verbose=verbose, extra=extra)


@contextlib.contextmanager
def _source_model(model: str | os.PathLike[str], unsafe: bool) -> Any:
    """The model to export, loaded: a ``.keras`` file in Keras 3; a SavedModel folder, or a tf_keras
    ``.h5`` written as one by tf_keras (in a temporary folder), as its serving signature.

    Yields:
        ``(model, saved_model_dir or None, what the manifest records about the source)``.
    """
    import tempfile

    from dnnkit.modelio import load_model
    from dnnkit.tfmodel import SignatureModel, h5_to_saved_model, is_saved_model

    path = Path(model)
    if path.suffix.lower() == ".h5":
        if not path.is_file():
            raise ModelLoadError(f"model: file not found: {model}")
        with tempfile.TemporaryDirectory(prefix="dnnkit-h5-") as tmp:
            info, tfk_model = h5_to_saved_model(path, Path(tmp) / "saved_model")
            loaded = SignatureModel(Path(tmp) / "saved_model")
            yield loaded, Path(tmp) / "saved_model", {**info, "tf_keras_model": tfk_model}
        return
    if path.is_dir() and not (path / "model.keras").is_file():
        if not is_saved_model(path):
            raise ModelLoadError(f"model: {model} is a folder but not a SavedModel (no saved_model.pb) or a run "
                                 "directory; expected a .keras file, a tf_keras .h5 file or a SavedModel folder")
        yield SignatureModel(path), path, {"source": "SavedModel folder"}
        return
    yield load_model(model, unsafe=unsafe), None, None


def _export_loaded(model: str | os.PathLike[str], keras_model: Any, source_dir: Path | None,
                   source_info: dict[str, Any] | None, recipe: Recipe, out_dir: str | os.PathLike[str], *,
                   spec: Spec | str | os.PathLike[str] | None, data: str | None, task: str | None,
                   unsafe: bool, verbose: bool, extra: dict[str, Any] | None) -> dict[str, Any]:
    from dnnkit.evaluation import spec_for_model

    if spec is not None:
        spec = as_spec(spec)
    else:
        if data is None:
            raise ModelLoadError(f"data: exporting {model} needs --data (\"digits\" or a .npz/.csv "
                                 "path) to verify against, got none")
        spec = spec_for_model(keras_model, task, data)
    from dnnkit.child import POOL
    from dnnkit.signature import inputs_info, is_multi, outputs_info, rows

    multi = is_multi(keras_model) or spec.model.head == "multi"  # described by its signature, not a spec
    POOL.warm_rest()  # training is over: the verifier imports its runtimes from now on
    # The reference outputs are computed while the first artifacts convert (they need only the model
    # file); one input goes through the model first, so that bad data fails before anything is written.
    # A tf_keras model's SavedModel is checked against them first (a mismatch is a ModelLoadError).
    ref = None
    with _stage("reference_s"):
        inputs, dataset = _reference_inputs(keras_model, spec, data, recipe.verify.max_inputs, task=task)
        if source_info and "tf_keras_model" in source_info:
            ref = _reference_outputs(keras_model, inputs, fp16=_has_fp16(recipe))
        else:
            from dnnkit.signature import predict, take

            predict(keras_model, take(inputs["x"], slice(0, 1)))
    fake_quant = is_fake_quant(keras_model)

    out = Path(out_dir)
    (out / "reference").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)
    source = _source_record(source_info, keras_model, ref)  # no tf_keras model to check where ref is None
    if source_dir is not None:  # the SavedModel itself is the reference (its own runtime computed it)
        ref_model = out / "reference" / "saved_model"
        if ref_model.exists():
            shutil.rmtree(ref_model)
        with atomic_path(ref_model) as tmp:
            shutil.copytree(source_dir, tmp)
    else:
        ref_model = out / "reference" / "model.keras"
        if Path(model).resolve() != ref_model.resolve():
            with atomic_path(ref_model) as tmp:
                shutil.copyfile(model, tmp)
    if not multi:  # a model with several inputs/outputs is described by its signature, not a spec
        write_text(out / "reference" / "spec.toml", dump_toml(spec_to_dict(spec)))

    from dnnkit.verification import file_digest

    recipe = with_samples(recipe, inputs["heads"])
    samples = max([a.samples for a in recipe.artifacts if a.quantized] or [1])
    rep = _representative(dataset, samples, spec.data.seed)
    if verbose:
        print(f"converting {len(recipe.artifacts)} artifacts in child processes, each verified as soon as it "
              "is written ...", flush=True)
    from dnnkit.formats.metadata import input_normalization, weights_sha256

    weights_digest = weights_sha256(keras_model)
    metadata = {"dnnkit_version": __version__, "name": spec.name,
                "task": inputs["heads"][0] if not multi else inputs["heads"],
                "labels": dataset.labels or None, "reference_weights_sha256": weights_digest,
                "input_normalization": input_normalization(keras_model, _data_source(spec, data))}
    effective = {a.name: a for a in recipe.artifacts}
    from dnnkit.verification import reference_job

    conversions = _Conversions(recipe, effective, ref_model, out, rep, metadata, unsafe=unsafe,
                               fake_quant=fake_quant, keras_model=keras_model, verbose=verbose)
    if ref is None:
        try:
            with _stage("reference_s"):
                ref = _reference_outputs(keras_model, inputs, fp16=_has_fp16(recipe))
        except BaseException:
            conversions.cancel()
            raise
    with reference_job(ref, recipe) as reference:  # one reference file for the checks and the timing
        results, first_attempts, verified = conversions.verify(ref, recipe, reference)
        entries = _entries(recipe, effective, results, first_attempts, verified)
        from dnnkit.fallback import selective_fallback

        with _stage("selective_fallback_s"):
            selective_fallback(entries, effective, recipe, ref, model_path=ref_model, out=out, representative=rep,
                               metadata=metadata, unsafe=unsafe, fake_quant=fake_quant, verbose=verbose)
        with _stage("latency_s"):
            _time_artifacts(entries, out, ref, recipe, verbose, reference)
    for entry in entries:
        if verbose:
            print(f"  {entry['name']}: {entry['status']}"
                  + (f" ({entry['failure_reason']})" if entry.get("failure_reason") else ""), flush=True)
    ref_digest, ref_bytes = file_digest(ref_model)
    return {
        "dnnkit_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "recipe": {"name": recipe.name, "path": recipe.path, "verify": asdict(recipe.verify)},
        "reference": {"model": str(ref_model.relative_to(out)), "sha256": ref_digest, "bytes": ref_bytes,
                      "weights_sha256": weights_digest,
                      **({"source": source} if source else {}),
                      "reproducible": {"bytes": False, "why": "a .keras archive stores its save time (metadata.json "
                                                              "date_saved, the weights member's timestamp)"},
                      "spec": None if multi else spec.name, "head": ref.head,
                      "data": _data_source(spec, data),
                      "params": int(keras_model.count_params()), "metrics": ref.metrics,
                      **({} if multi else {"input_name": ref.input_names[0], "output_name": ref.output_names[0]}),
                      "inputs": [i.to_dict() for i in inputs_info(keras_model)],
                      "outputs": [{**o.to_dict(), "head": h, "labelled": y is not None}
                                  for o, h, y in zip(outputs_info(keras_model), ref.heads, ref.labels)],
                      "test_samples": int(ref.n_test), "inputs_checked": int(rows(ref.x)),
                      "fp16_weight_error": ref.fp16_weight_error,
                      "fake_quant": fake_quant},
        "versions": versions(),
        # this process's peak (the reference outputs; training too under `run`); each conversion's and
        # verification's own peak is in its artifact entry (they run in child processes)
        "resources": {"parent_peak_rss_mb": peak_rss_mb()},
        **(extra or {}),
        "artifacts": entries,
    }


def _entries(recipe: Recipe, effective: dict[str, ArtifactConfig], results: dict[str, Any],
             first_attempts: dict[str, Any], verified: dict[str, Any]) -> list[dict[str, Any]]:
    """The manifest's artifact entries, in recipe order: how each was converted, and its checks."""
    from dnnkit.formats import REPRODUCIBLE

    entries = []
    for art in recipe.artifacts:
        result = results.get(art.name, {"status": "failed", "reason": "not converted", "info": {}})
        entry: dict[str, Any] = {"name": art.name, "format": art.format, "precision": art.precision,
                                 "path": f"artifacts/{art.filename}", "options": effective[art.name].to_dict(),
                                 "conversion": {"seconds": result.get("seconds"),
                                                "peak_rss_mb": result.get("peak_rss_mb"),
                                                **({"first_attempt": first_attempts[art.name]}
                                                   if art.name in first_attempts else {}),
                                                **result["info"]},
                                 "fallbacks": result["info"].get("fallbacks", []),
                                 "transforms": result["info"].get("transforms"),
                                 "converted": result["status"] == "done",
                                 "reproducible": dict(zip(("bytes", "why"), REPRODUCIBLE[art.format]))}
        if result["status"] != "done":
            message = f"conversion failed: {result['reason']}"
            entry.update(status="failed", failure_reason=message, inconclusive=[],
                         failures=[failure("conversion", message)])
        elif art.name in verified:
            entry.update(verified[art.name])
        entries.append(entry)
    return entries


class _Conversions:
    """Every artifact converted in the converter process (a failed one once more with its fallback), in a
    thread started at once, while :meth:`verify` has the verification process check each one as soon as
    it is written; timing is left for later."""

    def __init__(self, recipe: Recipe, effective: dict[str, ArtifactConfig], ref_model: Path, out: Path, rep: Any,
                 metadata: dict[str, Any], *, unsafe: bool, fake_quant: bool, keras_model: Any,
                 verbose: bool) -> None:
        import queue
        import threading

        self.recipe, self.effective, self.ref_model, self.out, self.rep = recipe, effective, ref_model, out, rep
        self.metadata, self.unsafe, self.fake_quant, self.keras_model = metadata, unsafe, fake_quant, keras_model
        self.verbose = verbose
        self.converted: "queue.Queue[str | None]" = queue.Queue()
        self.items: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.first_attempts: dict[str, Any] = {}
        self.retries: dict[str, ArtifactConfig] = {}
        self.failed: list[BaseException] = []
        self.marks: dict[str, float] = {}  # when the first check began and the conversions ended
        self.cancelled = threading.Event()
        self.done = threading.Event()
        self.saved_models: list[str] = []  # converted SavedModels, checked by whichever process is free first
        self.claimed: set[str] = set()
        self.claim_lock = threading.Lock()
        self.timings = _TIMINGS[-1] if _TIMINGS else {}
        self.workers: dict[str, list[dict[str, Any]]] = self.timings.setdefault("workers", {})
        self.thread = threading.Thread(target=self._run, name="dnnkit-conversions", daemon=True)
        self.thread.start()

    def _ready(self, name: str) -> None:
        self.items[name] = {"name": name, "path": str(self.out / "artifacts" / self.effective[name].filename),
                            "options": self.effective[name].to_dict(), "fake_quant": self.fake_quant}
        if _checker(self.effective[name].format) is not None:
            with self.claim_lock:  # checked by the verifier if it is idle first, else by the converter at the end
                self.saved_models.append(name)
        else:
            self.converted.put(name)

    def _first(self, name: str, result: dict[str, Any]) -> None:
        self.results[name] = result
        if result["status"] == "done":
            self._ready(name)
        elif (alt := _fallback(self.effective[name], self.keras_model)) is not None:
            self.retries[name] = alt

    def _run(self) -> None:
        import time

        from dnnkit.formats import convert_artifacts

        recipe, log = self.recipe, self.out / "logs" / "convert.log"
        try:
            with _stage("conversions_s"):
                # the SavedModel first (the TFLite conversions start from it), int8 ONNX after the fp32 ONNX
                # it is quantized from
                order = sorted(recipe.artifacts, key=lambda a: (a.format != "saved_model",
                                                                a.format == "onnx" and a.precision == "int8"))
                convert_artifacts(self.ref_model, order, self.out / "artifacts", self.rep,
                                  timeouts={a.name: recipe.timeout(a) for a in recipe.artifacts},
                                  metadata=self.metadata, unsafe=self.unsafe, log_path=log, on_settled=self._first,
                                  stats=self.workers.setdefault("converter", []), cancelled=self.cancelled)
                if self.retries and not self.cancelled.is_set():
                    self._retry(log)
        except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
            self.failed.append(exc)
        finally:
            self.marks["conversions_done"] = time.perf_counter()
            self.done.set()
            self.converted.put(None)
        try:  # the converter is idle now: its core loads the report's plotting library meanwhile
            from dnnkit.html_report import _pyplot

            _pyplot()
        except Exception:  # noqa: BLE001 - the report says why if it cannot draw
            pass

    def _retry(self, log: Path) -> None:
        from dnnkit.formats import convert_artifacts

        retries, results, effective = self.retries, self.results, self.effective
        if self.verbose:
            print(f"retrying {len(retries)} failed conversions with their fallbacks ...", flush=True)
        again = convert_artifacts(self.ref_model, list(retries.values()), self.out / "artifacts", self.rep,
                                  timeouts={a.name: self.recipe.timeout(a) for a in retries.values()},
                                  metadata=self.metadata, unsafe=self.unsafe, log_path=log, attempt=2,
                                  stats=self.workers["converter"], cancelled=self.cancelled)
        for name, alt in retries.items():
            self.first_attempts[name] = {"reason": results[name]["reason"], "seconds": results[name].get("seconds"),
                                         "retried_with": {k: v for k, v in alt.to_dict().items()
                                                          if v != effective[name].to_dict().get(k)}}
            results[name] = again.get(name, {"status": "failed", "reason": "not converted", "info": {}})
            if results[name]["status"] == "done":
                effective[name] = alt
                self._ready(name)
            else:
                results[name]["reason"] = (f"{self.first_attempts[name]['reason']}; with the fallback "
                                           f"({', '.join(self.first_attempts[name]['retried_with'])}): "
                                           f"{results[name]['reason']}")

    def _claim(self) -> str | None:
        """A converted SavedModel no process has taken yet, now taken (``None``: none left)."""
        with self.claim_lock:
            name = next((n for n in self.saved_models if n not in self.claimed), None)
            if name is not None:
                self.claimed.add(name)
            return name

    def cancel(self) -> None:
        """No further conversion starts; returns when the one in progress has ended."""
        self.cancelled.set()
        self.thread.join()

    def verify(self, ref: Any, recipe: Recipe, reference: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Check each artifact as it is converted, against ``ref`` (written for the verifier as ``reference``).

        Returns:
            The conversion results and first attempts by name, and the verification results by name.
        """
        import queue
        import threading
        import time

        from dnnkit.verification import verify_artifacts

        steal = verifier_takes_saved_models(self.timings)

        def in_order_converted() -> Any:
            while True:
                try:
                    name = self.converted.get_nowait()
                except queue.Empty:
                    name = self._claim() if steal and not self.done.is_set() else None
                    if name is None:
                        try:  # stealing: look again for a SavedModel now and then
                            name = self.converted.get(timeout=CLAIM_POLL_S if steal else None)
                        except queue.Empty:
                            continue
                if name is None:
                    return
                self.marks.setdefault("first_check", time.perf_counter())
                yield name

        by_converter: dict[str, Any] = {}
        errors: list[BaseException] = []

        def saved_models() -> None:
            self.done.wait()  # the converter is free once its conversions are done
            try:
                left = list(iter(self._claim, None))
                if left:
                    by_converter.update(verify_artifacts({n: self.items[n] for n in left}, ref,
                                                         recipe, log_path=self.out / "logs" / "verify.log",
                                                         latency=False, job=reference,
                                                         module=_checker("saved_model")))
            except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
                errors.append(exc)

        helper = threading.Thread(target=saved_models, name="dnnkit-saved-model-checks", daemon=True)
        helper.start()
        with _stage("verifications_s"):
            verified = verify_artifacts(self.items, ref, recipe, log_path=self.out / "logs" / "verify.log",
                                        names=in_order_converted(), latency=False,
                                        stats=self.workers.setdefault("verifier", []), job=reference)
            helper.join()
        if errors:
            raise errors[0]
        for name in self.claimed:  # loaded from disk by the converter's TensorFlow, or by the verifier's
            if (result := by_converter.get(name) or verified.get(name)) is None:
                continue
            verified[name] = result
            result.setdefault("verification", {})["process"] = "converter" if name in by_converter else "verifier"
        self.thread.join()
        if self.failed:
            raise self.failed[0]
        if "first_check" in self.marks:  # how long checks ran while conversions still did
            self.timings["overlap_s"] = round(self.timings.get("overlap_s", 0.0)
                                              + max(0.0, self.marks["conversions_done"] - self.marks["first_check"]),
                                              3)
        return self.results, self.first_attempts, verified


CLAIM_POLL_S = 0.25  # how often an idle verifier looks for a converted SavedModel to check
TF_IMPORT_S = 4.0  # importing TensorFlow, where the converter has not said how long it took (2 cores, x86)


def verifier_takes_saved_models(timings: dict[str, Any]) -> bool:
    """Whether an idle verifier checks the SavedModels while the converter still converts (instead of the
    converter, once its conversions are done: the check then runs at the end, with a core idle before).

    It pays where the check, about as long as the reference outputs took (``timings["reference_s"]``: the
    same model on the same inputs), is longer than importing TensorFlow for it in the verifier (the
    converter's import, or :data:`TF_IMPORT_S`): a 224x224 ResNet50 (18 s against 4 s), not the digits
    models (0.3 s, where the import would be the run's last seconds).
    """
    imports = [r["import_s"] for r in timings.get("workers", {}).get("converter", []) if r.get("import_s")]
    return timings.get("reference_s", 0.0) > (imports[0] if imports else TF_IMPORT_S)


def _checker(fmt: str) -> str | None:
    """The worker module that checks and times an export's artifacts of format ``fmt``: the converter's for
    SavedModels (TensorFlow is loaded there; the verifier would import it for them alone: 4 s, the digits
    run's last seconds), ``None`` (the verifier) for the rest."""
    from dnnkit.formats import WORKER as CONVERTER

    return CONVERTER if fmt == "saved_model" else None


def _time_artifacts(entries: list[dict[str, Any]], out: Path, ref: Any, recipe: Recipe, verbose: bool,
                    reference: dict[str, Any]) -> None:
    """Latency of every artifact verified without it, measured one at a time once no conversion runs
    (a converter on the other core would slow the figures); a runtime that crashes or hangs being timed
    fails its artifact."""
    from dnnkit.verification import measure_latencies

    todo = [e for e in entries if e.pop("latency_pending", False)]
    if not todo:
        return
    if verbose:
        print(f"timing {len(todo)} artifacts, one at a time ...", flush=True)
    timed: dict[str, Any] = {}
    for module in (None, _checker("saved_model")):  # the verifier's artifacts, then the converter's
        timed.update(measure_latencies([{"name": e["name"], "path": str(out / e["path"]), "options": e["options"]}
                                        for e in todo if _checker(e["format"]) == module], ref, recipe,
                                       log_path=out / "logs" / "verify.log", job=reference, module=module))
    for entry in todo:
        result = timed.get(entry["name"], {"status": "failed", "reason": "not timed"})
        entry.setdefault("verification", {})["latency_seconds"] = result.get("seconds")
        if result["status"] == "done":
            entry["latency_ms"] = result["latency_ms"]
            continue
        message = f"latency: {result['reason']}"
        entry["failures"] = [*entry.get("failures", []), failure("runtime", message)]
        entry["status"] = "failed"
        entry["failure_reason"] = "; ".join(filter(None, [entry.get("failure_reason"), message]))


# Stage timings of the export in progress (the innermost run/export/compress/verify call's), written
# to the manifest's ``timings`` by :func:`_finish`.
_TIMINGS: list[dict[str, Any]] = []


@contextlib.contextmanager
def _stage(name: str) -> Any:
    """Add the block's wall seconds to ``timings[name]`` of the job in progress."""
    import time

    begin = time.perf_counter()
    try:
        yield
    finally:
        if _TIMINGS:
            timings = _TIMINGS[-1]
            timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - begin, 3)


@contextlib.contextmanager
def _job(*, convert: bool = True) -> Any:
    """One export job: its stage timings and its worker processes, the converter (unless ``convert`` is
    false: re-verification) and the verifier started now so that importing TensorFlow and the runtimes
    overlaps the work before their first item (training, loading the model, the reference outputs);
    nested calls share the outer job's."""
    import time

    from dnnkit.child import warm_workers
    from dnnkit.formats import WORKER as CONVERTER
    from dnnkit.verification import WORKER as VERIFIER

    if _TIMINGS:
        yield _TIMINGS[-1]
        return
    from dnnkit.child import WORKER_CPU

    timings: dict[str, Any] = {"started": time.perf_counter(), "cpu_started": time.process_time(),
                               "workers_cpu_before": {n: seconds for n, (_, seconds) in WORKER_CPU.items()}}
    _TIMINGS.append(timings)
    try:
        with warm_workers(*((CONVERTER, VERIFIER) if convert else (VERIFIER,))):
            yield timings
    finally:
        _TIMINGS.pop()


def _fallback(art: ArtifactConfig, model: Any) -> ArtifactConfig | None:
    """The artifact as it is tried again after its conversion failed, or ``None`` when no fallback exists.

    Full-integer TFLite: recurrent layers unrolled (the calibrator crashes on WHILE loops: LSTM, GRU,
    ConvLSTM2D) and ops without an int8 kernel kept float (``TFLITE_BUILTINS`` beside
    ``TFLITE_BUILTINS_INT8``); the artifact stays verified as quantized, and its float ops are listed.
    """
    import dataclasses

    from dnnkit.formats.common import has_recurrent_layers

    if art.format != "tflite" or not art.full_integer or (art.float_fallback and art.unroll_recurrent):
        return None
    recurrent = bool(getattr(model, "layers", None)) and has_recurrent_layers(model)
    return dataclasses.replace(art, float_fallback=True, unroll_recurrent=art.unroll_recurrent or recurrent)


def _source_record(info: dict[str, Any] | None, model: Any, ref: Any) -> dict[str, Any] | None:
    """What the manifest says about a SavedModel or tf_keras source; for ``.h5``, the SavedModel's
    outputs checked against tf_keras's own on the reference inputs.

    Raises:
        ModelLoadError: if the SavedModel tf_keras wrote does not reproduce the tf_keras model.
    """
    if info is None:
        return None
    info = dict(info)
    tfk_model = info.pop("tf_keras_model", None)
    if tfk_model is not None:
        from dnnkit.signature import batch_for, rows, take

        x = take(ref.x, slice(0, min(256, rows(ref.x), batch_for(ref.x))))
        want = tfk_model(x, training=False)
        want = [np.asarray(w) for w in (want if isinstance(want, (list, tuple)) else [want])]
        got = [o[:len(w)] for o, w in zip(ref.outputs, want)]
        parity = float_parity(np.concatenate([w.ravel() for w in want]), np.concatenate([g.ravel() for g in got]),
                              1e-5, 1e-5)
        diff, allowed = parity["max_abs_diff"], parity["allowed"]
        if not parity["ok"]:
            raise ModelLoadError(f"model: the SavedModel written by tf_keras differs from the .h5 model "
                                 f"(max abs diff {diff:.3g} > {allowed:.3g})")
        info["check"] = {"against": "tf_keras predict on the .h5 model", "inputs": int(rows(x)),
                         "max_abs_diff": diff}
    return info


def _load_tf_keras(path: str | os.PathLike[str], task: str | None, data: str | None) -> tuple[Any, Spec]:
    """A tf_keras (Keras 2) ``.h5`` model and a minimal spec for its data."""
    from dnnkit.evaluation import spec_for_model

    if not Path(path).is_file():
        raise ModelLoadError(f"model: file not found: {path}")
    if data is None:
        raise ModelLoadError(f"data: a tf_keras model file needs --data, got none for {path}")
    import tf_keras

    try:
        model = tf_keras.models.load_model(path, compile=False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"model: cannot load {path} with tf_keras: {' '.join(str(exc).split())[:300]}") from None
    return model, spec_for_model(model, task, data)


def is_fake_quant(model: Any) -> bool:
    """Whether a model carries dnnkit's QAT fake-quant layers."""
    return any(type(layer).__name__.startswith("Quant") for layer in model.layers)


def _data_source(spec: Spec, data: str | None) -> str:
    """The data the reference was scored on, as an absolute path (or "digits")."""
    src = data or spec.data.source
    if src == "digits":
        return src
    base = Path.cwd() if data else spec.base_dir  # as dnnkit.data resolves it
    return str((base / src).resolve())


def verify_dir(out_dir: str | os.PathLike[str], *, unsafe: bool = False) -> dict[str, Any]:
    """Re-verify every artifact an export wrote (checksums, then the runtime checks), and the goals.

    Returns:
        The updated manifest (written back to ``OUT/manifest.json``).

    Raises:
        ModelLoadError: if the folder has no manifest or reference model.
    """
    with _job(convert=False):
        return _verify_dir(out_dir, unsafe=unsafe)


def _verify_dir(out_dir: str | os.PathLike[str], *, unsafe: bool = False) -> dict[str, Any]:
    from dnnkit.verification import VERIFICATION_FIELDS, verify_artifacts

    out = Path(out_dir)
    manifest, ref, recipe = reverification(out, unsafe=unsafe)
    ref_info = manifest["reference"]
    items = []
    for entry in manifest["artifacts"]:
        if not entry.get("converted"):
            continue  # nothing was produced; it stays failed
        target = (out / entry["path"]).resolve()
        if out.resolve() not in target.parents:
            raise ModelLoadError(f"verify: artifact path {entry['path']!r} leaves the export folder")
        items.append({"name": entry["name"], "path": str(target), "options": entry["options"],
                      "expected_sha256": entry.get("sha256"), "fake_quant": bool(ref_info.get("fake_quant"))})
    (out / "logs").mkdir(exist_ok=True)
    fresh_all = verify_artifacts(items, ref, recipe, log_path=out / "logs" / "verify.log")
    for entry in manifest["artifacts"]:
        if entry["name"] not in fresh_all:
            continue
        expected = entry.get("sha256")
        fresh = fresh_all[entry["name"]]
        fresh["sha256_recorded"] = expected
        for stale in VERIFICATION_FIELDS:
            entry.pop(stale, None)
        entry.update(fresh)
        entry["sha256"] = expected  # the manifest keeps the digest recorded at export
    from dnnkit.packaging import reverify_packages

    reverify_packages(manifest, out, ref, recipe)
    opt = manifest.get("optimize") or {}
    for folder in opt.get("folders") or {}:  # dnnkit optimize: chosen artifacts of the compressed model
        opt["folders"][folder] = _verify_dir(out / folder, unsafe=unsafe)["status"]
    manifest["verified_again"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return _finish(manifest, out)


def reverification(out: Path, *, unsafe: bool = False) -> tuple[dict[str, Any], Any, Recipe]:
    """What re-verifying an export folder needs: its manifest, the reference (outputs recomputed
    from the reference model, whose sha256 must match) and the recipe's verification settings.

    Raises:
        ModelLoadError: if the folder has no manifest or reference model, or either is damaged.
    """
    from dnnkit.evaluation import spec_for_model
    from dnnkit.modelio import load_reference_model
    from dnnkit.verification import file_digest

    path = out / MANIFEST
    if not path.is_file():
        raise ModelLoadError(f"verify: {out} has no {MANIFEST}; expected an export folder")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        ref_info = manifest["reference"]
        verify_cfg = VerifyConfig(**manifest["recipe"]["verify"])
        arts = [ArtifactConfig(**e["options"]) for e in manifest["artifacts"]]
        if not all(isinstance(e["path"], str) and isinstance(e["name"], str) for e in manifest["artifacts"]):
            raise TypeError("artifact name/path not a string")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelLoadError(f"verify: {path} is not a dnnkit manifest ({' '.join(str(exc).split())[:200]})") from None
    ref_model = out / ref_info["model"]
    digest, _ = file_digest(ref_model) if ref_model.exists() else ("", 0)
    if digest != ref_info["sha256"]:
        raise ModelLoadError(f"verify: {ref_model} is missing or changed since export (sha256 mismatch)")
    model = load_reference_model(ref_model, unsafe=unsafe)
    spec_file = out / "reference" / "spec.toml"
    data = ref_info["data"]
    heads = [o["head"] for o in ref_info.get("outputs") or []] or None
    spec = (load_spec(spec_file) if spec_file.is_file()
            else spec_for_model(model, None if ref_info["head"] == "multi" else ref_info["head"], data))
    recipe = Recipe(name=manifest["recipe"]["name"], artifacts=tuple(arts), verify=verify_cfg)
    ref, _ = _reference(model, spec, data, verify_cfg.max_inputs, fp16=_has_fp16(recipe), heads=heads)
    return manifest, ref, recipe


def compress(model: str | os.PathLike[str], recipe: Recipe | str | os.PathLike[str],
             out_dir: str | os.PathLike[str], *, spec: Spec | str | os.PathLike[str] | None = None,
             data: str | None = None, task: str | None = None, unsafe: bool = False,
             verbose: bool = False, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a recipe's compression passes on a model, then export and verify the result.

    Goals (``[goals] max_degradation``, or a pass's own ``max_degradation``) are checked
    after each pass against the incoming model, and for every artifact at the end; a missed
    goal makes the manifest's status ``failed`` (exit 1).

    Args:
        model: a run directory or a ``.keras`` file.
        recipe: a Recipe or recipe path (passes + artifacts).
        out_dir: the output folder; the compressed model goes to ``OUT/compressed/model.keras``.
        spec, data, task, unsafe, verbose, extra: as for :func:`export`.

    Returns:
        The manifest, with ``passes`` and ``goals`` sections.
    """
    with _job():
        return _compress(model, recipe, out_dir, spec=spec, data=data, task=task, unsafe=unsafe, verbose=verbose,
                         extra=extra)


def _compress(model: str | os.PathLike[str], recipe: Recipe | str | os.PathLike[str],
              out_dir: str | os.PathLike[str], *, spec: Spec | str | os.PathLike[str] | None = None,
              data: str | None = None, task: str | None = None, unsafe: bool = False,
              verbose: bool = False, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from dnnkit.passes import resolve_engine, run_pass
    from dnnkit.passes.tfmot_engine import is_tf_keras_model, to_keras3
    from dnnkit.passes.context import PassContext
    from dnnkit.data import load_data
    from dnnkit.evaluation import resolve_target

    recipe = _with_artifacts(as_recipe(recipe))
    from dnnkit.tfmodel import is_saved_model

    if not recipe.passes and (Path(model).suffix.lower() == ".h5" or is_saved_model(model)):
        return export(model, recipe, out_dir, spec=spec, data=data, task=task, unsafe=unsafe, verbose=verbose,
                      extra=extra)  # nothing to compress: exported from the model's own runtime
    tf_keras_input = Path(model).suffix == ".h5"
    if tf_keras_input:
        keras_model, resolved = _load_tf_keras(model, task, data)
    elif spec is not None and not Path(model).is_dir():
        from dnnkit.modelio import load_model

        keras_model, resolved = load_model(model, unsafe=unsafe), as_spec(spec)
    else:
        keras_model, resolved = resolve_target(model, unsafe=unsafe, task=task, data=data)
    spec = as_spec(spec) if spec is not None else resolved
    from dnnkit.passes import check_selectors
    from dnnkit.signature import is_multi

    multi = is_multi(keras_model)
    unsupported = [p.type for p in recipe.passes if p.type != "prune" or getattr(p.options, "engine", "") == "tfmot"]
    if multi and unsupported:
        from dnnkit.errors import CompressionError

        raise CompressionError(f"passes: a model with {len(keras_model.inputs)} inputs and {len(keras_model.outputs)} "
                               f"outputs takes native prune passes only, got {unsupported[0]!r}"
                               + (" (engine tfmot)" if unsupported[0] == "prune" else ""))
    check_selectors(keras_model, recipe.passes, recipe.path or "recipe")  # before any data is loaded
    model_file = Path(model) / "model.keras" if Path(model).is_dir() else Path(model)
    if not recipe.passes:  # (a tf_keras .h5 without passes was exported above)
        return export(model_file, recipe, out_dir, spec=spec, data=data, unsafe=unsafe, verbose=verbose,
                      extra=extra)
    from dnnkit.verdict import degradation

    if multi:
        from dnnkit.passes.context import multi_output_context

        ctx = multi_output_context(keras_model, spec, data, task, recipe.base_dir, verbose)
    else:
        ctx = PassContext(spec=spec, dataset=load_data(spec, source=data), base_dir=recipe.base_dir,
                          seed=spec.train.seed, verbose=verbose)
    head = "multi" if multi else spec.model.head
    baseline = ctx.score(keras_model)
    current, records = keras_model, []
    for i, p in enumerate(recipe.passes):
        p = resolve_engine(p, tf_keras_input)
        if getattr(p.options, "engine", "native") != "tfmot" and is_tf_keras_model(current):
            current = to_keras3(current)  # a native pass needs a Keras 3 model
        if verbose:
            print(f"pass {i + 1}/{len(recipe.passes)}: {p.type} ...", flush=True)
        with _stage("passes_s"):
            result = run_pass(current, p, ctx)
        after = ctx.score(result.model)
        drop = degradation(head, baseline, after)
        limit = p.max_degradation if p.max_degradation is not None else recipe.goal_degradation
        met = limit is None or drop <= limit + 1e-12
        records.append({"type": p.type, "options": asdict(p.options), "metrics_after": after,
                        "degradation": drop, "max_degradation": limit, "goal_met": met,
                        "params": int(result.model.count_params()), **result.report})
        if verbose:
            print(f"  {p.type}: " + "  ".join(f"{k}={v:.4f}" for k, v in after.items()), flush=True)
        current = result.model
    if is_tf_keras_model(current):
        current = to_keras3(current)
    out = Path(out_dir)
    (out / "compressed").mkdir(parents=True, exist_ok=True)
    compressed = out / "compressed" / "model.keras"
    save_keras(current, compressed)
    manifest = _export(compressed, recipe, out, spec=spec, data=data, task=task, verbose=verbose,
                       extra={**(extra or {}), "original": {"metrics": baseline,
                                                            "params": int(keras_model.count_params())},
                              "passes": records, "goals": {"max_degradation": recipe.goal_degradation}})
    from dnnkit.packaging import package_all

    return package_all(out, recipe.package, _finish(manifest, out), unsafe=unsafe)


def run(spec: Spec | str | os.PathLike[str] | None = None, recipe: Recipe | str | os.PathLike[str] | None = None,
        out_dir: str | os.PathLike[str] | None = None, *, verbose: bool = False,
        epochs: int | None = None) -> dict[str, Any]:
    """The main job: train a spec, export every artifact of a recipe, verify, write the manifest.

    Args:
        spec: the model spec (default: the digits CNN).
        recipe: the export recipe (default: ``export/all.toml``).
        out_dir: the output folder (default: ``runs/<spec>-<recipe>`` under the working directory).
        verbose: print progress lines.
        epochs: override the spec's epochs.

    Returns:
        The manifest.
    """
    spec = as_spec(spec if spec is not None else default_path(DEFAULT_SPEC))
    recipe = as_recipe(recipe if recipe is not None else default_path(DEFAULT_RECIPE))
    out = Path(out_dir) if out_dir is not None else Path("runs") / f"{spec.name}-{recipe.name}"
    from dnnkit.builders import build
    from dnnkit.passes import check_selectors
    from dnnkit.data import load_data

    with _job():  # the converter and verifier processes start now, importing while this one trains
        if any(p.type == "prune" and p.options.layers for p in recipe.passes):
            check_selectors(build(spec), recipe.passes, recipe.path or "recipe")  # the trained model has these
        with _stage("data_s"):
            load_data(spec)  # bad data fails here, before anything is written
        (out / MANIFEST).unlink(missing_ok=True)  # a killed run leaves no manifest of an earlier one
        with _stage("import_s"):
            import keras  # noqa: F401 - TensorFlow and Keras, timed on their own

            from dnnkit.training import train
        if verbose:
            print(f"training {spec.name} ...", flush=True)
        with _stage("train_s"):
            result = train(spec, out / "run", epochs=epochs, progress=verbose)
        if verbose:
            print(f"  test accuracy {result.metrics.get('accuracy', float('nan')):.4f} "
                  f"in {result.train_seconds:.1f} s", flush=True)
        return compress(result.model_path, recipe, out, spec=spec, verbose=verbose,
                        extra={"training": {"run_dir": "run", "seconds": round(result.train_seconds, 3),
                                            "strategy": result.strategy, "metrics": result.metrics}})
