"""Compression benchmark on the digits CNN (one process, one machine, same-run ratios):

  a. dense vs 50/80/90 % pruned: accuracy and gzip size of fp32 and int8 TFLite;
  b. native Keras 3 pruning vs tfmot on the same architecture rebuilt in tf_keras, same
     schedule, epochs and data: accuracy and fine-tune time (median of --repeats runs);
  c. post-training int8 vs QAT int8: accuracy of the TFLite artifacts (native QAT, tfmot QAT,
     and tfmot pruning + pruning-preserving QAT);
  d. distilled student (digits_cnn_small) vs the same student trained from scratch vs the teacher.

    python benchmarks/compress_bench.py [--out DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = [{"name": "tflite_fp32", "format": "tflite", "precision": "fp32"},
             {"name": "tflite_int8", "format": "tflite", "precision": "int8", "io": "int8"}]


def _recipe(name: str, passes: list[dict[str, Any]]) -> Any:
    from dnnkit.config.recipe import recipe_from_dict

    return recipe_from_dict({"name": name, "passes": passes, "artifacts": ARTIFACTS})


def _art(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in manifest["artifacts"] if e["name"] == name)


def pruning_levels(run: Any, out: Path) -> dict[str, Any]:
    from dnnkit.jobs.compress import compress
    from dnnkit.jobs.export import export

    print("a. dense vs pruned (digits CNN; 15 fine-tune epochs, polynomial schedule, first conv kept dense)")
    print(f"{'sparsity':>8} {'keras acc':>9} {'fp32 acc':>8} {'fp32 gzip KB':>12} {'int8 acc':>8} "
          f"{'int8 gzip KB':>12} {'int8 gzip / dense fp32 gzip':>28}")
    dense = export(run.model_path, _recipe("dense", []), out / "dense", spec=run.spec)
    base_gzip = _art(dense, "tflite_fp32")["gzip_bytes"]
    rows = {"dense": dense}
    for sparsity in (None, 0.5, 0.8, 0.9):
        if sparsity is None:
            m, label, keras_acc = dense, "dense", dense["reference"]["metrics"]["accuracy"]
        else:
            passes = [{"type": "prune", "final_sparsity": sparsity, "epochs": 15, "frequency": 10,
                       "skip_first": True}]
            m = compress(run.out_dir, _recipe(f"p{sparsity}", passes), out / f"pruned-{sparsity}")
            label, keras_acc = f"{sparsity:.0%}", m["passes"][0]["metrics_after"]["accuracy"]
            rows[label] = m
        f, i = _art(m, "tflite_fp32"), _art(m, "tflite_int8")
        print(f"{label:>8} {keras_acc:>9.4f} {f['metrics']['accuracy']:>8.4f} {f['gzip_bytes'] / 1024:>12.1f} "
              f"{i['metrics']['accuracy']:>8.4f} {i['gzip_bytes'] / 1024:>12.1f} {i['gzip_bytes'] / base_gzip:>28.3f}")
    drop = dense["reference"]["metrics"]["accuracy"] - rows["80%"]["passes"][0]["metrics_after"]["accuracy"]
    print(f"   80 % pruned accuracy drop vs dense: {drop * 100:+.2f} pt (goal <= 1 pt)")
    return rows


def native_vs_tfmot(run: Any, repeats: int) -> None:
    from dnnkit.passes.registry import run_pass
    from dnnkit.config.passes import PassConfig, PruneOptions
    from dnnkit.passes.context import PassContext
    from dnnkit.data.load import load_data
    from dnnkit.sources.keras_file import load_model

    print("\nb. native Keras 3 pruning vs tfmot (80 %, same schedule/epochs/data; tfmot on the tf_keras rebuild)")
    spec = run.spec
    ctx = PassContext(spec=spec, dataset=load_data(spec), base_dir=ROOT, seed=spec.train.seed)
    model = load_model(run.model_path)
    opts = {"final_sparsity": 0.8, "epochs": 15, "frequency": 10, "skip_first": True}
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeats):
        for engine in ("native", "tfmot"):
            r = run_pass(model, PassConfig("prune", PruneOptions(engine=engine, **opts)), ctx)
            slot = results.setdefault(engine, {"acc": [], "seconds": []})
            slot["acc"].append(ctx.score(r.model)["accuracy"])
            slot["seconds"].append(r.report["fine_tune_seconds"])
    med = {e: {k: statistics.median(v) for k, v in d.items()} for e, d in results.items()}
    for engine in ("native", "tfmot"):
        print(f"   {engine:<7} accuracy {med[engine]['acc']:.4f} (runs {[round(a, 4) for a in results[engine]['acc']]}) "
              f"fine-tune {med[engine]['seconds']:.2f} s (runs {[round(s, 2) for s in results[engine]['seconds']]})")
    print(f"   native - tfmot accuracy: {(med['native']['acc'] - med['tfmot']['acc']) * 100:+.2f} pt (goal >= -0.5 pt); "
          f"time ratio native/tfmot: {med['native']['seconds'] / med['tfmot']['seconds']:.2f}x (goal <= 1.2x)")


def ptq_vs_qat(run: Any, dense: dict[str, Any], out: Path) -> None:
    from dnnkit.jobs.compress import compress

    print("\nc. post-training int8 vs QAT int8 (TFLite, digits CNN)")
    qat = compress(run.out_dir, _recipe("qat", [{"type": "qat", "epochs": 5, "learning_rate": 1e-4}]), out / "qat")
    ptq_acc = _art(dense, "tflite_int8")["metrics"]["accuracy"]
    qat_art = _art(qat, "tflite_int8")
    print(f"   keras fp32 {dense['reference']['metrics']['accuracy']:.4f}  PTQ int8 {ptq_acc:.4f}  "
          f"QAT keras {qat['reference']['metrics']['accuracy']:.4f}  QAT int8 {qat_art['metrics']['accuracy']:.4f} "
          f"(agreement with QAT model {qat_art['parity']['top1_agreement']:.4f})")
    print(f"   QAT int8 - PTQ int8: {(qat_art['metrics']['accuracy'] - ptq_acc) * 100:+.2f} pt (goal >= 0)")
    tq = compress(run.out_dir, _recipe("tfmot-qat", [{"type": "qat", "engine": "tfmot", "epochs": 5,
                                                      "learning_rate": 1e-4}]), out / "tfmot-qat")
    tq_art = _art(tq, "tflite_int8")
    print(f"   tfmot QAT (same epochs, via tf_keras): QAT keras {tq['reference']['metrics']['accuracy']:.4f}  "
          f"int8 {tq_art['metrics']['accuracy']:.4f} (agreement {tq_art['parity']['top1_agreement']:.4f}; "
          f"Keras 3 copy vs tfmot model max diff {tq['passes'][0]['keras3_copy']['max_abs_diff']:.2g}); "
          f"tfmot - native QAT int8: {(tq_art['metrics']['accuracy'] - qat_art['metrics']['accuracy']) * 100:+.2f} pt")
    pq = compress(run.out_dir, _recipe("tfmot-pqat", [
        {"type": "prune", "engine": "tfmot", "final_sparsity": 0.8, "epochs": 15, "frequency": 10,
         "skip_first": True},
        {"type": "qat", "engine": "tfmot", "preserve_sparsity": True, "epochs": 5, "learning_rate": 1e-4}]),
        out / "tfmot-pqat")
    pq_art, base_gzip = _art(pq, "tflite_int8"), _art(dense, "tflite_fp32")["gzip_bytes"]
    print(f"   tfmot 80 % prune + pruning-preserving QAT: int8 {pq_art['metrics']['accuracy']:.4f} "
          f"(agreement {pq_art['parity']['top1_agreement']:.4f}), sparsity in the .tflite "
          f"{pq_art['sparsity']['overall']:.3f}, gzip {pq_art['gzip_bytes'] / 1024:.1f} KB = "
          f"{pq_art['gzip_bytes'] / base_gzip:.3f}x dense fp32 gzip")


def distillation(run: Any, out: Path) -> None:
    import dnnkit
    from dnnkit.jobs.compress import compress

    print("\nd. distillation: teacher digits_cnn, student digits_cnn_small (30 epochs each)")
    student_spec = ROOT / "models" / "digits_cnn_small.toml"
    passes = [{"type": "distill", "student": str(student_spec), "temperature": 3.0, "student_loss_weight": 0.1,
               "epochs": 30, "learning_rate": 0.003}]
    distilled = compress(run.out_dir, _recipe("distill", passes), out / "distill")
    scratch = dnnkit.train(student_spec, out / "scratch")
    p = distilled["passes"][0]
    teacher = distilled["original"]["metrics"]["accuracy"]
    print(f"   teacher   {teacher:.4f}  params {p['teacher_params']}")
    print(f"   distilled {p['metrics_after']['accuracy']:.4f}  params {p['student_params']} "
          f"({p['student_params'] / p['teacher_params']:.2f}x the teacher)")
    print(f"   scratch   {scratch.metrics['accuracy']:.4f}  params {scratch.model.count_params()}")
    print(f"   distilled - scratch: {(p['metrics_after']['accuracy'] - scratch.metrics['accuracy']) * 100:+.2f} pt "
          f"(goal >= 0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="keep everything here (default: a temp folder)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per engine in part b")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import dnnkit

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp)
        run = dnnkit.train(ROOT / "models" / "digits_cnn.toml", out / "teacher")
        print(f"digits CNN trained: test accuracy {run.metrics['accuracy']:.4f}, "
              f"{run.model.count_params()} parameters\n")
        rows = pruning_levels(run, out)
        native_vs_tfmot(run, args.repeats)
        ptq_vs_qat(run, rows["dense"], out)
        distillation(run, out)


if __name__ == "__main__":
    main()
