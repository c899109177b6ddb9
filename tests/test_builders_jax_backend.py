"""The builders use Keras ops only: every shipped spec also builds (and a step trains, with its loss and
metrics, padding masked for tagging) on JAX."""

import os
import subprocess
import sys

from conftest import ROOT

CODE = r"""
import sys, numpy as np, keras
assert keras.backend.backend() == "jax", keras.backend.backend()
import dnnkit
from dnnkit.config.model import load_spec
from dnnkit.data.load import load_data
from dnnkit.training.fit import make_loss
from dnnkit.training.keras_metrics import keras_metrics
models = {}
for name in ["digits_mlp", "digits_cnn", "digits_lstm", "digits_gru", "digits_transformer", "brackets_lstm",
             "series_gru", "reverse_gru_lm", "addition_lstm", "reverse_lm"]:
    spec = load_spec(f"models/{name}.toml")
    model = dnnkit.build(spec)
    ds = load_data(spec)
    model.compile(optimizer="adam", loss=make_loss(spec),
                  metrics=keras_metrics(spec.model.head, spec.train.metrics, spec.model.num_classes))
    loss = model.fit(ds.x_train[:256], ds.y_train[:256], epochs=1, batch_size=64, verbose=0).history["loss"][0]
    out = model.predict(ds.x_test[:5], verbose=0)
    want = {"brackets_lstm": (5, 32, 5), "series_gru": (5, 48, 1), "reverse_lm": (5, 16, 13),
            "reverse_gru_lm": (5, 16, 13), "addition_lstm": (5, 4, 14)}.get(name, (5, 10))
    assert out.shape == want and np.isfinite(loss), (name, out.shape, loss)
    models[name] = (model, ds)
    print(name, model.count_params())
from dnnkit.builders.decoding import CachedDecoder
decoder = CachedDecoder(model)  # the last one, reverse_lm: cached stepping on JAX equals the full model
x = ds.x_test[:1]
step = decoder({"tokens": x, "input_pos": np.arange(16, dtype="int32")[None], **decoder.empty_cache(1)})
assert np.allclose(keras.ops.convert_to_numpy(step["logits"]), model.predict(x, verbose=0), atol=1e-5)
from dnnkit.builders.decoding import step_model
model, ds = models["reverse_gru_lm"]  # an RNN's step with its h state, on JAX
decoder, x = step_model(model), ds.x_test[:1]
step = decoder({"tokens": x, "input_pos": np.arange(16, dtype="int32")[None], **decoder.empty_cache(1)})
assert np.allclose(keras.ops.convert_to_numpy(step["logits"]), model.predict(x, verbose=0), atol=1e-5)
model, ds = models["addition_lstm"]  # an encoder-decoder: encode, then the decoder over the target steps
decoder, x = step_model(model), ds.x_test[:1]
state = {**decoder.empty_cache(1), **decoder.encode(x[:, :5])}
step = decoder({"tokens": x[:, 5:], "input_pos": np.arange(4, dtype="int32")[None], **state})
assert np.allclose(keras.ops.convert_to_numpy(step["logits"]), model.predict(x, verbose=0), atol=1e-5)
assert "tensorflow" not in sys.modules, "builders must not import tensorflow"
"""


def test_builders_on_jax_backend():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["digits_mlp", "17226", "digits_cnn", "35914", "digits_lstm",
                                     "19338", "digits_gru", "14858", "digits_transformer", "18026",
                                     "brackets_lstm", "21189", "series_gru", "3393", "reverse_gru_lm", "64301",
                                     "addition_lstm", "200014", "reverse_lm", "69773"]
