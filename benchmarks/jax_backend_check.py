"""The same specs on the JAX backend (no TensorFlow): build, train, prune and QAT-fine-tune
with dnnkit's builders and Keras-ops code only. Runs on CPU, or on a GPU where JAX has one.

    KERAS_BACKEND=jax python benchmarks/jax_backend_check.py [--epochs 30] [--json OUT.json]

Prints per spec: parameters, test accuracy, train time and samples/s in float32 and (for the
CNN and transformer) mixed_bfloat16; then native pruning (80 %) and QAT fine-tuning of the
digits CNN on this backend.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SPECS = ["digits_mlp", "digits_cnn", "digits_lstm", "digits_gru", "digits_transformer"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()

    import keras
    import numpy as np

    import dnnkit
    from dnnkit.passes.pruning import PruneConfig, prune_low_magnitude, strip_pruning
    from dnnkit.passes.qat import quantize_model
    from dnnkit.passes.schedules import PolynomialDecay
    from dnnkit.config.model import load_spec, spec_from_dict, spec_to_dict
    from dnnkit.data.load import load_data
    from dnnkit.training.fit import make_loss, make_optimizer

    backend = keras.backend.backend()
    try:
        import jax

        devices = [str(d) for d in jax.devices()]
    except ImportError:
        devices = []
    print(f"backend {backend}, devices {devices}, keras {keras.__version__}, "
          f"tensorflow imported: {'tensorflow' in sys.modules}")
    results: dict = {"backend": backend, "devices": devices, "specs": {}}

    def fit_eval(spec, epochs, model=None, callbacks=None, lr=None):
        ds = load_data(spec)
        keras.utils.set_random_seed(spec.train.seed)
        model = model or dnnkit.build(spec)
        steps = int(np.ceil(len(ds.x_train) / spec.train.batch_size))
        opt = make_optimizer(spec.train, steps) if lr is None else keras.optimizers.Adam(lr)
        model.compile(optimizer=opt, loss=make_loss(spec))
        model.fit(ds.x_train[:64], ds.y_train[:64], epochs=1, batch_size=spec.train.batch_size, verbose=0)  # compile
        start = time.perf_counter()
        model.fit(ds.x_train, ds.y_train, epochs=epochs, batch_size=spec.train.batch_size, verbose=0,
                  callbacks=callbacks or [])
        seconds = time.perf_counter() - start
        acc = float(np.mean(np.argmax(model.predict(ds.x_test, verbose=0), -1) == ds.y_test))
        return model, acc, seconds, epochs * len(ds.x_train) / seconds

    for name in SPECS:
        spec = load_spec(ROOT / "models" / f"{name}.toml")
        model, acc, sec, rate = fit_eval(spec, args.epochs)
        row = {"params": model.count_params(), "accuracy": acc, "seconds": sec, "samples_per_s": rate}
        if name in ("digits_cnn", "digits_transformer"):
            raw = spec_to_dict(spec)
            raw["train"]["mixed_precision"] = "bfloat16"
            _, acc16, sec16, rate16 = fit_eval(spec_from_dict(raw), args.epochs)
            row.update(bf16_accuracy=acc16, bf16_seconds=sec16, bf16_samples_per_s=rate16)
        results["specs"][name] = row
        extra = (f"  bf16: acc {row['bf16_accuracy']:.4f} {row['bf16_samples_per_s']:.0f}/s"
                 if "bf16_accuracy" in row else "")
        print(f"{name:<20} params {row['params']:>6}  acc {acc:.4f}  {sec:6.1f} s  {rate:8.0f} samples/s{extra}",
              flush=True)

    spec = load_spec(ROOT / "models" / "digits_cnn.toml")
    dense, dense_acc, _, _ = fit_eval(spec, args.epochs)
    steps = 15 * int(np.ceil(len(load_data(spec).x_train) / 32))
    state = prune_low_magnitude(dense, PruneConfig(schedule=PolynomialDecay(0.0, 0.8, 0, 2 * steps // 3, frequency=10),
                                                   skip_first=True))
    _, pruned_acc, psec, _ = fit_eval(spec, 15, model=dense, callbacks=[state.callback()], lr=1e-3)
    plain = strip_pruning(dense, state)
    sparsity = [round(r["sparsity"], 3) for r in state.report()]
    print(f"pruning 80 % (native, {backend}): dense {dense_acc:.4f} -> pruned {pruned_acc:.4f}, "
          f"layer sparsity {sparsity}, fine-tune {psec:.1f} s")
    qat, _ = quantize_model(plain)
    _, qat_acc, qsec, _ = fit_eval(spec, 5, model=qat, lr=1e-4)
    print(f"QAT (native, {backend}): pruned {pruned_acc:.4f} -> QAT {qat_acc:.4f}, fine-tune {qsec:.1f} s")
    results.update(dense_accuracy=dense_acc, pruned_accuracy=pruned_acc, pruned_sparsity=sparsity,
                   qat_accuracy=qat_acc, tensorflow_imported="tensorflow" in sys.modules)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
