"""Seed spread of QAT on the digits CNN: native Keras 3 QAT vs tfmot QAT (the tf_keras
rebuild), same teacher, epochs and learning rate; post-training int8 needs no seed.

    python benchmarks/qat_seeds.py [--seeds 5] [--epochs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import dnnkit
    from dnnkit.config.passes import QATOptions
    from dnnkit.passes.context import PassContext
    from dnnkit.passes.qat_pass import run_qat
    from dnnkit.passes.tfmot_engine import quantize_with_tfmot
    from dnnkit.data.load import load_data

    with tempfile.TemporaryDirectory() as tmp:
        run = dnnkit.train(ROOT / "models" / "digits_cnn.toml", Path(tmp) / "teacher")
        data = load_data(run.spec)
        print(f"teacher (fp32 Keras) test accuracy {run.metrics['accuracy']:.4f}")
        scores: dict[str, list[float]] = {"native": [], "tfmot": []}
        for seed in range(args.seeds):
            ctx = PassContext(spec=run.spec, dataset=data, base_dir=ROOT, seed=seed)
            for engine, fn in (("native", run_qat), ("tfmot", quantize_with_tfmot)):
                result = fn(run.model, QATOptions(epochs=args.epochs, engine=engine), ctx)
                scores[engine].append(ctx.score(result.model)["accuracy"])
            print(f"seed {seed}: native QAT {scores['native'][-1]:.4f}  tfmot QAT {scores['tfmot'][-1]:.4f}", flush=True)
        for engine, accs in scores.items():
            print(f"{engine:<6} QAT mean {statistics.mean(accs):.4f}  min {min(accs):.4f}  max {max(accs):.4f}")


if __name__ == "__main__":
    main()
