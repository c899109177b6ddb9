"""Bring-your-own matrix: public architectures, briefly trained on learnable synthetic data, each
exported with export/all.toml (7 artifacts) and verified. Prints model x artifact status, the
verified fraction, and every failure with its reason.

    python benchmarks/byo_matrix.py [--models NAME ...] [--out DIR] [--epochs N] [--list]

Each model trains on its generator's samples but the last HELD_OUT (2000), which are the labelled
test split; int8 artifacts that fail climb all.toml's quantization ladder (a rung taken: + in the
table), then get its selective float fallback (*). Each model runs in its own process (a crash or a
memory peak stays with that model). The models:
keras.applications (weights=None, 32x32 inputs), keras-hub backbones built from a config with a
small head, keras-io-style models (augmentation inside the model, a Normalization layer,
ConvLSTM2D, a text transformer with arange positions, BiLSTM, FCN, GRU regressor), a model with
two inputs and two outputs, and tf_keras (Keras 2) models saved as .h5.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
RECIPE = ROOT / "export" / "all.toml"

APPLICATIONS = ["MobileNetV3Small", "MobileNetV2", "ResNet50", "DenseNet121", "EfficientNetB0", "ConvNeXtTiny"]
HUB = ["hub_bert", "hub_vit", "hub_gpt2"]
KERAS_IO = ["io_augment_cnn", "io_normalized_mlp", "io_convlstm", "io_text_transformer", "io_bilstm", "io_fcn",
            "io_gru_regressor"]
OTHER = ["two_in_two_out", "tfk_cnn_h5", "tfk_mlp_h5"]
MODELS = APPLICATIONS + HUB + KERAS_IO + OTHER


# ---- learnable synthetic data -------------------------------------------------------------------
def colour_squares(n, size=32, classes=4, seed=0, scale=1.0):
    """Noise plus a square whose colour is the class (red, green, blue, white), anywhere in the image:
    learnable through global pooling, as keras.applications heads pool."""
    import numpy as np

    rng = np.random.default_rng(seed)
    colours = np.array([(0.7, 0.1, 0.1), (0.1, 0.7, 0.1), (0.1, 0.1, 0.7), (0.7, 0.7, 0.7)])[:classes]
    y = rng.integers(0, classes, n).astype("int32")
    x = rng.uniform(0, 0.3, (n, size, size, 3)).astype("float32")
    side = size // 4
    for i, c in enumerate(y):
        r0, c0 = rng.integers(0, size - side, 2)
        x[i, r0:r0 + side, c0:c0 + side] += colours[c] * rng.uniform(0.8, 1.0)
    return x * scale, y


def token_task(n, length=16, vocab=200, seed=0):
    """Padded token sequences; label 1 when the marker token 7 occurs."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(8, vocab, (n, length)).astype("int32")
    mask = np.ones((n, length), "int32")
    y = rng.integers(0, 2, n).astype("int32")
    for i in range(n):
        size = rng.integers(6, length + 1)
        ids[i, size:], mask[i, size:] = 0, 0
        if y[i]:
            ids[i, rng.integers(0, size)] = 7
    return ids, mask, y


def series_task(n, steps=32, seed=0):
    """Noisy sine windows; class = frequency band (3 classes)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype("int32")
    t = np.arange(steps)
    freq = np.array([0.05, 0.12, 0.25])[y][:, None] * (1 + rng.uniform(-0.1, 0.1, (n, 1)))
    x = np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3, (n, 1))) + rng.normal(0, 0.3, (n, steps))
    return x[..., None].astype("float32"), y


def moving_dot(n, frames=5, size=16, seed=0):
    """Frames of a dot moving in one of 4 directions (the class)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n).astype("int32")
    steps = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)])
    x = rng.uniform(0, 0.2, (n, frames, size, size, 1)).astype("float32")
    for i, c in enumerate(y):
        r, col = rng.integers(5, size - 5, 2)
        for f in range(frames):
            rr, cc = r + steps[c][0] * f, col + steps[c][1] * f
            x[i, f, rr - 1:rr + 1, cc - 1:cc + 1, 0] = 1.0
    return x, y


# ---- models ----------------------------------------------------------------------------------------
# every generator draws HELD_OUT more samples than the model trains on: the labelled test split.
# 2000 labels decide a 1-point accuracy limit when int8 disagrees on ~1 % of inputs (a paired
# interval of about +-0.004); with 400 they could not (+-0.011), and the verdict was inconclusive
HELD_OUT = 2000


def holdout(x, y):
    """dnnkit.export data: the last HELD_OUT rows are the test split, the rest the training data."""
    def cut(a, part):
        if isinstance(a, dict):
            return {k: cut(v, part) for k, v in a.items()}
        return a[:-HELD_OUT] if part == "train" else a[-HELD_OUT:]

    return {"x_train": cut(x, "train"), "y_train": cut(y, "train"), "x_test": cut(x, "test"),
            "y_test": cut(y, "test")}


def _fit(model, x, y, epochs, loss=None, lr=1e-3, batch=32):
    """Train on all but the held-out rows; returns (model, data for dnnkit.export)."""
    import keras

    data = holdout(x, y)
    model.compile(keras.optimizers.Adam(lr), loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=batch, verbose=0)
    return model, data


def build(name, epochs):
    """(model or .h5 path, data for dnnkit.export) for one matrix entry."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(0)
    if name in APPLICATIONS:
        scale = 255.0 if name in ("EfficientNetB0", "ConvNeXtTiny", "MobileNetV3Small") else 1.0
        x, y = colour_squares(2000 + HELD_OUT, scale=scale)
        cls = getattr(keras.applications, name)
        model = cls(input_shape=(32, 32, 3), weights=None, classes=4, classifier_activation=None)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                # momentum 0.999 leaves the moving statistics near their initial values after a few
                # hundred steps (inference then predicts one class); 0.9 follows the trained weights
                layer.momentum = 0.9
        return _fit(model, x, y, epochs * 3)
    if name.startswith("hub_"):
        import keras_hub

        if name == "hub_vit":
            x, y = colour_squares(2000 + HELD_OUT)
            backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2,
                                                    hidden_dim=32, mlp_dim=64)
            inp = keras.Input((32, 32, 3), name="images")
            out = keras.layers.Dense(4, name="logits")(backbone(inp)[:, 0])
            return _fit(keras.Model(inp, out), x, y, epochs * 8)
        ids, mask, y = token_task(3000 + HELD_OUT)
        common = dict(vocabulary_size=200, num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64,
                      max_sequence_length=16)
        ti = keras.Input((16,), dtype="int32", name="token_ids")
        pm = keras.Input((16,), dtype="int32", name="padding_mask")
        if name == "hub_bert":
            backbone = keras_hub.models.BertBackbone(**common)
            si = keras.Input((16,), dtype="int32", name="segment_ids")
            pooled = backbone({"token_ids": ti, "padding_mask": pm, "segment_ids": si})["pooled_output"]
            model = keras.Model({"token_ids": ti, "padding_mask": pm, "segment_ids": si},
                                keras.layers.Dense(2, name="logits")(pooled))
            x = {"token_ids": ids, "padding_mask": mask, "segment_ids": np.zeros_like(ids)}
        else:
            backbone = keras_hub.models.GPT2Backbone(**common)
            seq = backbone({"token_ids": ti, "padding_mask": pm})
            model = keras.Model({"token_ids": ti, "padding_mask": pm},
                                keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling1D()(seq)))
            x = {"token_ids": ids, "padding_mask": mask}
        return _fit(model, x, y, epochs * 3)
    if name == "io_augment_cnn":  # keras-io "Image classification from scratch", small
        x, y = colour_squares(1600 + HELD_OUT, scale=255.0)
        inp = keras.Input((32, 32, 3), name="image")
        # augmentation kept inside the model, as the example does (a flip would move the quadrant: no flip)
        h = keras.layers.RandomTranslation(0.05, 0.05)(inp)
        h = keras.layers.RandomRotation(0.02)(h)
        h = keras.layers.RandomContrast(0.1)(h)
        h = keras.layers.Rescaling(1.0 / 255)(h)
        h = keras.layers.Conv2D(16, 3, strides=2, padding="same")(h)
        h = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(h))
        prev = h
        for f in (32, 64):
            h = keras.layers.SeparableConv2D(f, 3, padding="same", activation="relu")(h)
            h = keras.layers.BatchNormalization()(h)
            h = keras.layers.MaxPooling2D(3, strides=2, padding="same")(h)
            res = keras.layers.Conv2D(f, 1, strides=2, padding="same")(prev)
            h = prev = keras.layers.add([h, res])
        h = keras.layers.Dropout(0.25)(keras.layers.GlobalAveragePooling2D()(h))
        model = keras.Model(inp, keras.layers.Dense(4, name="logits")(h))
        return _fit(model, x, y, epochs * 8, lr=3e-3)
    if name == "io_normalized_mlp":  # keras-io structured data: a Normalization layer adapted on the data
        rng = np.random.default_rng(0)
        x = (rng.normal(size=(4000 + HELD_OUT, 12)) * rng.uniform(1, 50, 12) + rng.uniform(-100, 100, 12)).astype("float32")
        z = (x - x.mean(0)) / x.std(0)
        y = ((z[:, 0] + z[:, 3] - z[:, 5]) > 0).astype("int32") + (z[:, 7] > 1).astype("int32")
        norm = keras.layers.Normalization()
        norm.adapt(x[:-HELD_OUT])
        inp = keras.Input((12,), name="features")
        h = keras.layers.Dense(32, activation="relu")(norm(inp))
        model = keras.Model(inp, keras.layers.Dense(3, name="logits")(keras.layers.Dropout(0.1)(h)))
        return _fit(model, x, y, epochs * 10)
    if name == "io_convlstm":
        x, y = moving_dot(600 + HELD_OUT)
        inp = keras.Input((5, 16, 16, 1), name="frames")
        h = keras.layers.ConvLSTM2D(8, 3, padding="same")(inp)
        h = keras.layers.GlobalMaxPooling2D()(h)
        model = keras.Model(inp, keras.layers.Dense(4, name="logits")(h))
        return _fit(model, x, y, epochs * 4)
    if name == "io_text_transformer":  # keras-io "Text classification with Transformer"
        from dnnkit.sources.keras_file import use_custom_objects

        layers = use_custom_objects(HERE / "byo_layers.py")
        ids, _, y = token_task(3000 + HELD_OUT)
        inp = keras.Input((16,), dtype="int32", name="tokens")
        h = layers["TokenAndPositionEmbedding"](16, 200, 32)(inp)
        att = keras.layers.MultiHeadAttention(num_heads=2, key_dim=16)(h, h)
        h = keras.layers.LayerNormalization(epsilon=1e-6)(h + att)
        ff = keras.layers.Dense(32)(keras.layers.Dense(64, activation="relu")(h))
        h = keras.layers.LayerNormalization(epsilon=1e-6)(h + ff)
        model = keras.Model(inp, keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling1D()(h)))
        return _fit(model, ids, y, epochs * 4)
    if name == "io_bilstm":
        ids, _, y = token_task(3000 + HELD_OUT)
        inp = keras.Input((16,), dtype="int32", name="tokens")
        h = keras.layers.Bidirectional(keras.layers.LSTM(16))(keras.layers.Embedding(200, 16)(inp))
        model = keras.Model(inp, keras.layers.Dense(2, name="logits")(h))
        return _fit(model, ids, y, epochs * 4)
    if name == "io_fcn":  # keras-io "Timeseries classification from scratch"
        x, y = series_task(3000 + HELD_OUT)
        inp = keras.Input((32, 1), name="series")
        h = inp
        for f in (32, 32, 32):
            h = keras.layers.ReLU()(keras.layers.BatchNormalization()(keras.layers.Conv1D(f, 3, padding="same")(h)))
        model = keras.Model(inp, keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling1D()(h)))
        return _fit(model, x, y, epochs * 4)
    if name == "io_gru_regressor":
        x, _ = series_task(3000 + HELD_OUT)
        target = (x[:, -8:, 0].mean(1) * 2 + np.random.default_rng(1).normal(0, 0.2, len(x))).astype("float32")
        inp = keras.Input((32, 1), name="series")
        model = keras.Model(inp, keras.layers.Dense(1, name="value")(keras.layers.GRU(16)(inp)))
        return _fit(model, x, target, epochs * 4, loss="mse")
    if name == "two_in_two_out":
        rng = np.random.default_rng(0)
        n = 4000 + HELD_OUT
        a, c = rng.normal(size=(n, 8)).astype("float32"), rng.normal(size=(n, 6, 4)).astype("float32")
        cls = (a[:, 0] + c[:, :, 0].mean(1) > 0).astype("int32") + (a[:, 1] > 0.8).astype("int32")
        reg = (a[:, 2] * 2 + c[:, 0, 1] + rng.normal(scale=1.0, size=n)).astype("float32")  # label noise
        ia, ic = keras.Input((8,), name="a"), keras.Input((6, 4), name="c")
        h = keras.layers.Concatenate()([keras.layers.Dense(16, activation="relu")(ia), keras.layers.Flatten()(ic)])
        h = keras.layers.Dense(32, activation="relu")(h)
        model = keras.Model([ia, ic], [keras.layers.Dense(3, name="cls")(h), keras.layers.Dense(1, name="reg")(h)])
        model.compile("adam", [keras.losses.SparseCategoricalCrossentropy(from_logits=True), "mse"])
        data = holdout({"a": a, "c": c}, {"cls": cls, "reg": reg})
        model.fit(data["x_train"], [data["y_train"]["cls"], data["y_train"]["reg"]], epochs=epochs * 7, verbose=0)
        return model, data
    if name.startswith("tfk_"):
        import tf_keras

        tf_keras.utils.set_random_seed(0)
        if name == "tfk_cnn_h5":
            x, y = colour_squares(800 + HELD_OUT)
            model = tf_keras.Sequential([
                tf_keras.layers.Input((32, 32, 3)),
                tf_keras.layers.Conv2D(16, 3, activation="relu"), tf_keras.layers.MaxPooling2D(),
                tf_keras.layers.Conv2D(32, 3, activation="relu"), tf_keras.layers.GlobalAveragePooling2D(),
                tf_keras.layers.Dense(4)])
        else:
            x, y = series_task(900 + HELD_OUT)
            x = x[..., 0]
            inp = tf_keras.Input((32,))
            h = tf_keras.layers.BatchNormalization()(tf_keras.layers.Dense(64, activation="relu")(inp))
            model = tf_keras.Model(inp, tf_keras.layers.Dense(3)(tf_keras.layers.Dense(32, activation="relu")(h)))
        model.compile(tf_keras.optimizers.Adam(1e-3),
                      tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        data = holdout(x, y)
        model.fit(data["x_train"], data["y_train"], epochs=epochs * 4, batch_size=32, verbose=0)
        return model, data
    raise SystemExit(f"unknown model {name!r}; models: {', '.join(MODELS)}")


def _fallback(entry: dict) -> dict:
    """The int8 search an artifact took: the quantization ladder's rungs (each one's agreement, the one
    chosen), the selective float fallback's layers kept float, of how many, and the all-int8 first
    attempt's agreement."""
    conversion = entry.get("conversion") or {}
    ladder = conversion.get("quantization_ladder") or {}
    row = {}
    if ladder.get("tried"):
        row = {"ladder": ladder.get("chosen"), "first_agreement": ladder["first_attempt"].get("top1_agreement"),
               "rungs": {r["rung"]: r.get("top1_agreement", r["status"]) for r in ladder["tried"]}}
    fb = conversion.get("selective_fallback") or {}
    if not fb.get("chosen"):
        return row
    return {**row, "float_layers": len(fb["float_layers"]), "quantized_layers": fb["quantized_layers"],
            "first_agreement": fb["first_attempt"].get("top1_agreement")}


def run_one(name: str, out: Path, epochs: int) -> dict:
    """Build, train and export one model; returns the matrix row (also written to OUT/NAME.json)."""
    import resource

    import dnnkit

    start = time.perf_counter()
    model, data = build(name, epochs)
    trained = time.perf_counter() - start
    target = model
    if name.startswith("tfk_"):
        target = out / f"{name}.h5"
        model.save(target)
    try:
        manifest = dnnkit.export(target, RECIPE, out / name, data=data)
        row = {"model": name, "status": manifest["status"], "train_s": round(trained, 1),
               "export_s": round(time.perf_counter() - start - trained, 1),
               "reference_metrics": manifest["reference"]["metrics"],
               "params": manifest["reference"]["params"],
               "artifacts": {e["name"]: {"status": e["status"], "reason": e.get("failure_reason"),
                                         **_fallback(e)} for e in manifest["artifacts"]}}
    except Exception as exc:  # noqa: BLE001 - the row records it
        row = {"model": name, "status": "error", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}",
               "artifacts": {}}
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    (out / f"{name}.json").write_text(json.dumps(row, indent=2))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--out", default="byo-matrix")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        print("\n".join(MODELS))
        return 0
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.one:
        run_one(args.one, out, args.epochs)
        return 0
    rows = []
    for name in args.models:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "--one", name, "--out", str(out), "--epochs", str(args.epochs)],
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        path = out / f"{name}.json"
        row = json.loads(path.read_text()) if path.is_file() else {"model": name, "status": "crashed",
                                                                     "artifacts": {}}
        rows.append(row)
        arts = row["artifacts"]
        print(f"{name:22s} {row['status']:12s} {sum(a['status'] == 'verified' for a in arts.values())}/{len(arts)} "
              f"({time.perf_counter() - t0:.0f} s)" + (f"  {row.get('error')}" if row.get("error") else ""),
              flush=True)
    names = [a for r in rows for a in r["artifacts"]]
    columns = list(dict.fromkeys(names))
    print()
    print("model".ljust(22) + "".join(c[:12].ljust(13) for c in columns))
    total = ok = 0
    for r in rows:
        cells = []
        for c in columns:
            a = r["artifacts"].get(c)
            text = "-" if a is None else a["status"][:10] + ("*" if a.get("float_layers") else "") + (
                "+" if a.get("ladder") else "")
            cells.append(text.ljust(13))
            total += 1
            ok += bool(a and a["status"] == "verified")
        print(r["model"].ljust(22) + "".join(cells))
    print(f"\nverified pairs: {ok} of {total} = {ok / max(total, 1):.3f} over {len(rows)} models "
          "(* with a selective float fallback, + a quantization ladder rung)")
    for r in rows:
        for a, info in r["artifacts"].items():
            if info.get("rungs"):
                print(f"LADDER {r['model']} {a}: {info['ladder'] or 'no rung verified'} (all-int8 agreement "
                      f"{info['first_agreement']}; " + ", ".join(f"{k} {v}" for k, v in info["rungs"].items()) + ")")
            if info.get("float_layers"):
                print(f"FALLBACK {r['model']} {a}: {info['float_layers']} of {info['quantized_layers']} layers float "
                      f"(all-int8 agreement {info['first_agreement']})")
    for r in rows:
        if r.get("error"):
            print(f"ERROR {r['model']}: {r['error']}")
        for a, info in r["artifacts"].items():
            if info["status"] != "verified":
                print(f"{info['status'].upper()} {r['model']} {a}: {info['reason']}")
    (out / "matrix.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
