"""Conversions and checks overlapped: every artifact converted in the converter process, in a thread of its
own, while the verifier checks each one as soon as it is written; a failed conversion tried once more with
its fallback; timing left for the end, one artifact at a time. The one owner of which process checks and
times what (:func:`checker`, :func:`verifier_takes_saved_models`)."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

from dnnkit.core.tensors import Inputs
from dnnkit.jobs.fallback import retry_config
from dnnkit.jobs.timing import current, stage
from dnnkit.manifest.html import pyplot
from dnnkit.config.recipe import ArtifactConfig, Recipe
from dnnkit.verification.criteria import failure
from dnnkit.verification.reference import Reference
from dnnkit.workers.checks import check_item, measure_latencies, verify_artifacts
from dnnkit.workers.convert import CONVERTER, convert_artifacts


class Conversions:
    """Every artifact converted in the converter process (a failed one once more with its fallback), in a
    thread started at once, while :meth:`verify` has the verification process check each one as soon as
    it is written; timing is left for later."""

    def __init__(self, recipe: Recipe, effective: dict[str, ArtifactConfig], ref_model: Path, out: Path, rep: Inputs,
                 metadata: dict[str, Any], *, unsafe: bool, fake_quant: bool, keras_model: Any,
                 verbose: bool) -> None:
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
        self.timings = current() or {}
        self.workers: dict[str, list[dict[str, Any]]] = self.timings.setdefault("workers", {})
        self.thread = threading.Thread(target=self._run, name="dnnkit-conversions", daemon=True)
        self.thread.start()

    def _ready(self, name: str) -> None:
        self.items[name] = check_item(name, self.out / "artifacts" / self.effective[name].filename,
                                      self.effective[name].to_dict(), fake_quant=self.fake_quant)
        if checker(self.effective[name].format) is not None:
            with self.claim_lock:  # checked by the verifier if it is idle first, else by the converter at the end
                self.saved_models.append(name)
        else:
            self.converted.put(name)

    def _first(self, name: str, result: dict[str, Any]) -> None:
        self.results[name] = result
        if result["status"] == "done":
            self._ready(name)
        elif (alt := retry_config(self.effective[name], self.keras_model)) is not None:
            self.retries[name] = alt

    def _run(self) -> None:
        recipe, log = self.recipe, self.out / "logs" / "convert.log"
        try:
            with stage("conversions_s"):
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
            pyplot()
        except Exception:  # noqa: BLE001 - the report says why if it cannot draw
            pass

    def _retry(self, log: Path) -> None:
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

    def verify(self, ref: Reference, recipe: Recipe, reference: dict[str, Any]
               ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Check each artifact as it is converted, against ``ref`` (written for the verifier as ``reference``).

        Returns:
            The conversion results and first attempts by name, and the verification results by name.
        """
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
                                                         module=checker("saved_model")))
            except BaseException as exc:  # noqa: BLE001 - raised again in the calling thread
                errors.append(exc)

        helper = threading.Thread(target=saved_models, name="dnnkit-saved-model-checks", daemon=True)
        helper.start()
        with stage("verifications_s"):
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


def checker(fmt: str) -> str | None:
    """The worker module that checks and times an export's artifacts of format ``fmt``: the converter's for
    SavedModels (TensorFlow is loaded there; the verifier would import it for them alone: 4 s, the digits
    run's last seconds), ``None`` (the verifier) for the rest."""
    return CONVERTER if fmt == "saved_model" else None


def time_artifacts(entries: list[dict[str, Any]], out: Path, ref: Reference, recipe: Recipe, verbose: bool,
                   reference: dict[str, Any]) -> None:
    """Latency of every artifact verified without it, measured one at a time once no conversion runs
    (a converter on the other core would slow the figures); a runtime that crashes or hangs being timed
    fails its artifact."""
    todo = [e for e in entries if e.pop("latency_pending", False)]
    if not todo:
        return
    if verbose:
        print(f"timing {len(todo)} artifacts, one at a time ...", flush=True)
    timed: dict[str, Any] = {}
    for module in (None, checker("saved_model")):  # the verifier's artifacts, then the converter's
        timed.update(measure_latencies([check_item(e["name"], out / e["path"], e["options"])
                                        for e in todo if checker(e["format"]) == module], ref, recipe,
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
