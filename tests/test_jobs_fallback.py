"""When a conversion cannot work (issue 9, part 7): the upstream cause in one line, the fallback tried and
recorded; and ConvLSTM2D full int8, whose calibration crashed the TFLite converter, converts unrolled."""

import numpy as np

INT8 = """name = "int8"
[[artifacts]]
name = "tflite_int8"
format = "tflite"
precision = "int8"
io = "int8"
"""


def test_a_crashed_int8_conversion_is_retried_with_its_fallback(trained_runs, tmp_path, monkeypatch):
    from dnnkit.jobs.export import export

    recipe = tmp_path / "int8.toml"
    recipe.write_text(INT8)
    monkeypatch.setenv("DNNKIT_INJECT_FAULT", "tflite_int8:crash")  # the first attempt only
    manifest = export(trained_runs["digits_mlp"].model_path, recipe, tmp_path / "out", data="digits")
    entry = manifest["artifacts"][0]
    assert manifest["status"] == "verified" and entry["status"] == "verified", entry.get("failure_reason")
    first = entry["conversion"]["first_attempt"]
    # the upstream cause, from the worker's faulthandler traceback: the crashing frame
    assert first["reason"].startswith("converter process crashed (killed by signal SIGSEGV) in protocol.py:")
    assert "inject_fault (child)" in first["reason"]  # dnnkit/child/protocol.py: the tests' fault injection
    assert first["retried_with"] == {"float_fallback": True}
    assert entry["options"]["float_fallback"] is True and "float_fallback" in entry["fallbacks"]
    assert entry["float_ops"] == []  # the MLP has int8 kernels for every op: nothing actually stayed float


def test_when_the_fallback_fails_too_both_causes_are_named(trained_runs, tmp_path, monkeypatch):
    from dnnkit.jobs.export import export

    recipe = tmp_path / "int8.toml"
    recipe.write_text(INT8)
    monkeypatch.setenv("DNNKIT_INJECT_FAULT", "tflite_int8:crash,tflite_int8@2:error")
    manifest = export(trained_runs["digits_mlp"].model_path, recipe, tmp_path / "out", data="digits")
    entry = manifest["artifacts"][0]
    assert manifest["status"] == "failed" and entry["status"] == "failed"
    reason = entry["failure_reason"]
    assert "killed by signal SIGSEGV" in reason and "with the fallback (float_fallback): injected conversion error" \
        in reason, reason
    assert not (tmp_path / "out" / "artifacts" / "tflite_int8.tflite").exists()


def test_convlstm2d_full_int8_converts_unrolled(tmp_path):
    """The TFLite calibrator died with SIGSEGV on ConvLSTM2D's WHILE loop; dnnkit unrolls it as it does
    LSTM/GRU (ConvLSTM2D takes no unroll argument: the attribute is set on the copy)."""
    import keras

    from dnnkit.jobs.export import export
    from dnnkit.config.recipe import recipe_from_dict

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600).astype("int32")
    x = rng.uniform(0, 0.2, (600, 3, 8, 8, 1)).astype("float32")
    for i, c in enumerate(y):  # a dot moving right (0) or down (1)
        r, col = rng.integers(1, 5, 2)
        for f in range(3):
            x[i, f, r + f * c, col + f * (1 - c), 0] = 1.0
    keras.utils.set_random_seed(0)
    inp = keras.Input((3, 8, 8, 1), name="frames")
    h = keras.layers.GlobalMaxPooling2D()(keras.layers.ConvLSTM2D(4, 3, padding="same")(inp))
    model = keras.Model(inp, keras.layers.Dense(2, name="logits")(h))
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=8, verbose=0)
    path = tmp_path / "convlstm.keras"
    model.save(path)
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y)
    recipe = recipe_from_dict({"name": "r", "artifacts": [{"name": "tflite_int8", "format": "tflite",
                                                           "precision": "int8", "io": "int8",
                                                           "unroll_recurrent": True}]})
    manifest = export(path, recipe, tmp_path / "out", data=str(tmp_path / "d.npz"))
    entry = manifest["artifacts"][0]
    assert entry["converted"] and "first_attempt" not in entry["conversion"], entry["conversion"]
    assert entry["fallbacks"] == ["unroll_recurrent"] and "WHILE" not in entry["ops"]
    assert manifest["reference"]["metrics"]["accuracy"] > 0.9
    assert entry["status"] == "verified", entry["failure_reason"]
