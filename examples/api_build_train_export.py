"""Way 1 - the Python API: build and train a spec, then export the trained model object with the
arrays you hold (class names included), and read the verdict from the returned manifest.

    python examples/api_build_train_export.py [--out runs/example-api] [--epochs 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import dnnkit

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/example-api")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    out = Path(args.out)

    spec = dnnkit.load_spec(ROOT / "models" / "digits_mlp.toml")
    run = dnnkit.train(spec, out / "run", epochs=args.epochs)  # a Run: model, metrics, history, out_dir
    print(f"trained {spec.name}: test accuracy {run.metrics['accuracy']:.4f} in {run.train_seconds:.1f} s")

    data = dnnkit.load_data(spec)  # the arrays a Keras user would hold
    recipe = dnnkit.load_recipe(ROOT / "export" / "mobile.toml")
    manifest = dnnkit.export(run.model, recipe, out / "export",
                             data={"x_train": data.x_train, "y_train": data.y_train, "x_test": data.x_test,
                                   "y_test": data.y_test, "class_names": [f"digit {d}" for d in range(10)]})
    for entry in manifest["artifacts"]:
        print(f"{entry['name']:<22} {entry['bytes'] / 1024:8.1f} KB  accuracy {entry['metrics']['accuracy']:.4f}  "
              f"{entry['status']}")
    print(f"status: {manifest['status']}; report: {out / 'export' / 'report.html'}")
    return 0 if manifest["status"] == "verified" else 1


if __name__ == "__main__":
    sys.exit(main())
