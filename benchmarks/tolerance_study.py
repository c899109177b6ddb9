"""The figures behind the float criterion: how far fp16 arithmetic and wrong weights move each
shipped spec's outputs, relative to the output scale S = max|reference|, on every digits input.

    python benchmarks/tolerance_study.py [--specs digits_mlp digits_cnn ...]

Columns (each a max abs output difference / S):
  w16      weights rounded to fp16, fp32 arithmetic (what the verifier calibrates fp16 with)
  fp16     every layer in Keras float16 (weights, activations, each op's result in fp16)
  pert1%   weights multiplied by (1 + 0.01 N(0,1)), the smallest of three seeds
  allowed  the fp16 tolerance of export/all.toml: (atol + max(rtol S, fp16_factor w16 S)) / S
and the margins fp16 / allowed and pert1% / allowed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", nargs="+", default=["digits_mlp", "digits_cnn", "digits_lstm", "digits_gru",
                                                       "digits_transformer"])
    args = parser.parse_args()
    import keras
    import numpy as np

    import dnnkit
    from dnnkit.data.load import load_data
    from dnnkit.verification.fp16 import fp16_outputs, fp16_weight_error
    from dnnkit.config.recipe import ArtifactConfig, load_recipe
    from dnnkit.training.fit import predict

    recipe = load_recipe(ROOT / "export" / "all.toml")
    art = ArtifactConfig(name="f", format="tflite", precision="fp16")
    print(f"{'spec':20s} {'S':>7s} {'w16':>9s} {'fp16':>9s} {'pert1%':>9s} {'allowed':>9s} "
          f"{'fp16/allowed':>12s} {'pert/allowed':>12s}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.specs:
            run = dnnkit.train(ROOT / "models" / f"{name}.toml", Path(tmp) / name)
            model = run.model
            ds = load_data(run.spec)
            x = np.concatenate([ds.x_test, ds.x_train, ds.x_val])
            ref = predict(model, x)
            scale = float(np.abs(ref).max())
            w16 = fp16_weight_error(model, x, ref)
            fp16 = fp16_outputs(model, x)
            perts = []
            for seed in range(3):
                rng = np.random.default_rng(seed)
                clone = keras.models.clone_model(model)
                clone.set_weights([w * (1 + 0.01 * rng.standard_normal(w.shape)).astype(w.dtype)
                                   for w in model.get_weights()])
                perts.append(float(np.abs(predict(clone, x) - ref).max()))
            allowed = recipe.atol(art) + max(recipe.rtol(art) * scale, recipe.verify.fp16_factor * w16)
            e16 = float(np.abs(fp16 - ref).max())
            print(f"{name:20s} {scale:7.2f} {w16 / scale:9.2e} {e16 / scale:9.2e} {min(perts) / scale:9.2e} "
                  f"{allowed / scale:9.2e} {e16 / allowed:12.2f} {min(perts) / allowed:12.2f}", flush=True)


if __name__ == "__main__":
    main()
