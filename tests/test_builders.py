"""Builders: every family builds a named model whose parameter count follows from the spec."""

import numpy as np
import pytest

import dnnkit
from conftest import MODELS, SPECS
from dnnkit.config.model import load_spec, spec_from_dict


def head_params(width, cfg):
    out = cfg.num_classes if cfg.head == "multiclass" else cfg.output_units
    return width * out + out


def dense_params(width, units, norm="none"):
    total = 0
    for u in units:
        total += width * u + (0 if norm == "batch" else u)
        total += {"none": 0, "batch": 4 * u, "layer": 2 * u}[norm]
        width = u
    return total, width


def expected_params(spec):
    """Parameter count worked out by hand from the spec (independent of Keras)."""
    cfg, o = spec.model, spec.model.options
    if cfg.family == "mlp":
        body, width = dense_params(int(np.prod(cfg.input_shape)), o.units, o.norm)
        return body + head_params(width, cfg)
    if cfg.family == "cnn":
        spatial = list(cfg.input_shape[:-1])
        channels, total = cfg.input_shape[-1], 0
        for f, k, s in zip(o.filters, o.kernel_size, o.strides):
            total += (k ** len(spatial)) * channels * f + (0 if o.batch_norm else f)
            total += 4 * f if o.batch_norm else 0
            spatial = [-(-d // s) for d in spatial]  # "same" padding
            if o.pool != "none":
                spatial = [-(-d // o.pool_size) for d in spatial]
            channels = f
        width = channels if o.global_pool else channels * int(np.prod(spatial))
        body, width = dense_params(width, o.dense_units)
        return total + body + head_params(width, cfg)
    if cfg.family == "rnn":
        width, total = cfg.input_shape[-1], 0
        for u in o.units:
            one = (4 * (u * (width + u) + u) if o.cell == "lstm"
                   else 3 * u * (width + u) + 6 * u)  # GRU with reset_after=True
            total += one * (2 if o.bidirectional else 1)
            width = u * (2 if o.bidirectional else 1)
        if o.return_sequences and o.sequence_pooling == "flatten":
            width *= cfg.input_shape[0]
        body, width = dense_params(width, o.dense_units)
        return total + body + head_params(width, cfg)
    d, hk = o.d_model, o.num_heads * o.key_dim
    steps = cfg.input_shape[0] + (1 if o.pooling == "cls" else 0)
    total = o.vocab_size * d if o.input == "tokens" else cfg.input_shape[-1] * d + d
    total += d if o.pooling == "cls" else 0
    total += steps * d if o.positional == "learned" else 0
    block = 3 * (d * hk + hk) + hk * d + d + d * o.ff_dim + o.ff_dim + o.ff_dim * d + d + 2 * 2 * d
    total += o.num_blocks * block + (2 * d if o.norm == "pre" else 0)
    body, width = dense_params(d, o.dense_units)
    return total + body + head_params(width, cfg)


def variant(family, input_shape, **model):
    return spec_from_dict({"name": f"v_{family}", "model": {"family": family,
                                                           "input_shape": input_shape, **model}})


VARIANTS = [
    variant("mlp", [64], units=[32, 16, 8], norm="batch", activation="tanh", dropout=0.2),
    variant("mlp", [8, 8], units=[20], norm="layer", activation="swish"),
    variant("mlp", [5], units=[7], head="binary", activation="leaky_relu"),
    variant("mlp", [5], units=[7], head="regression", output_units=3, activation="gelu"),
    variant("cnn", [8, 8, 1], filters=[8, 16, 4], kernel_size=[3, 5, 1], strides=[1, 2, 1],
            pool="avg", batch_norm=True, dense_units=[12]),
    variant("cnn", [8, 8, 1], filters=[8], pool="none", global_pool=True, dense_units=[],
            activation="sigmoid"),
    variant("cnn", [8, 8], conv="1d", filters=[16, 16], kernel_size=3, dense_units=[8]),
    variant("rnn", [8, 8], cell="lstm", units=[16, 8], bidirectional=True),
    variant("rnn", [8, 8], cell="gru", units=[12], return_sequences=True, sequence_pooling="flatten",
            dense_units=[6], dropout=0.1),
    variant("rnn", [8, 8], cell="gru", units=[12, 12], return_sequences=True, sequence_pooling="max"),
    variant("transformer", [64], input="tokens", vocab_size=17, d_model=16, num_heads=2, key_dim=4,
            ff_dim=24, num_blocks=1, norm="post", positional="sinusoidal", pooling="cls"),
    variant("transformer", [8, 8], d_model=16, num_heads=2, key_dim=8, ff_dim=32, num_blocks=3,
            pooling="cls", dense_units=[10], activation="relu6", dropout=0.1),
]


@pytest.mark.parametrize("name", SPECS)
def test_shipped_specs_build_with_expected_params(name):
    spec = load_spec(MODELS / f"{name}.toml")
    model = dnnkit.build(spec)
    assert model.name == name and model.built
    assert model.count_params() == expected_params(spec)
    assert tuple(model.input_shape[1:]) == spec.model.input_shape
    assert model.output_shape == (None, 10)


def test_shipped_param_counts_are_the_documented_ones():
    counts = {n: dnnkit.build(MODELS / f"{n}.toml").count_params() for n in SPECS}
    assert counts == {"digits_mlp": 17226, "digits_cnn": 35914, "digits_lstm": 19338,
                      "digits_gru": 14858, "digits_transformer": 18026}


@pytest.mark.parametrize("spec", VARIANTS, ids=lambda s: s.model.family)
def test_variants_build_and_run(spec):
    model = dnnkit.build(spec)
    assert model.count_params() == expected_params(spec)
    cfg = spec.model
    if getattr(cfg.options, "input", None) == "tokens":
        x = np.random.default_rng(0).integers(0, cfg.options.vocab_size, (3, *cfg.input_shape))
    else:
        x = np.random.default_rng(0).random((3, *cfg.input_shape), dtype=np.float32)
    y = np.asarray(model(x, training=False))
    want = {"multiclass": cfg.num_classes, "binary": 1, "regression": cfg.output_units}[cfg.head]
    assert y.shape == (3, want) and np.all(np.isfinite(y))
    if cfg.head == "binary":
        assert np.all((y >= 0) & (y <= 1))


def test_gelu_is_the_tanh_approximation():
    model = dnnkit.build(variant("mlp", [4], units=[3], activation="gelu"))
    act = model.get_layer("dense_0_act").activation
    x = np.linspace(-3, 3, 7, dtype=np.float32)
    tanh_form = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(np.asarray(act(x)), tanh_form, atol=1e-6)


def test_mixed_precision_keeps_head_and_recurrent_layers_float32():
    spec = spec_from_dict({"name": "mp", "model": {"family": "rnn", "input_shape": [8, 8],
                                                   "units": [8], "dense_units": [4]},
                           "train": {"mixed_precision": "bfloat16"}})
    model = dnnkit.build(spec)
    assert model.get_layer("dense_0").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("lstm_0").dtype_policy.name == "float32"
    assert model.get_layer("logits").dtype_policy.name == "float32"


def test_built_model_survives_save_and_safe_load(tmp_path):
    spec = VARIANTS[10]  # tokens + sinusoidal + class token: dnnkit's own layers
    model = dnnkit.build(spec)
    path = tmp_path / "m.keras"
    model.save(path)
    again = dnnkit.load_model(path)
    x = np.random.default_rng(1).integers(0, 17, (2, 64))
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(again(x)), atol=1e-6)
