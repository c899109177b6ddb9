"""Build, train and evaluate one model of each family through the Python API.

    python examples/train_each_family.py [--epochs N] [--out runs/examples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import dnnkit

ROOT = Path(__file__).resolve().parents[1]
SPECS = ["digits_mlp", "digits_cnn", "digits_lstm", "digits_gru", "digits_transformer"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override each spec's epochs")
    parser.add_argument("--out", default="runs/examples")
    args = parser.parse_args()

    print(f"{'spec':<20} {'params':>8} {'train s':>8} {'test acc':>9} {'re-evaluated':>13}")
    for name in SPECS:
        spec = dnnkit.load_spec(ROOT / "models" / f"{name}.toml")
        params = dnnkit.build(spec).count_params()
        run = dnnkit.train(spec, Path(args.out) / name, epochs=args.epochs)
        again = dnnkit.evaluate(run.out_dir)  # reloads model.keras from the run directory
        print(f"{name:<20} {params:>8} {run.train_seconds:>8.1f} {run.metrics['accuracy']:>9.4f} "
              f"{again['accuracy']:>13.4f}")


if __name__ == "__main__":
    main()
