"""Will it fit the device (issue 11): flash, a TFLM-style greedy arena plan against the interpreter's
own arena, and TFLite Micro op coverage, per TFLite artifact."""

from __future__ import annotations

import numpy as np

from dnnkit.verification.device_fit import ALIGN, greedy_arena


def test_greedy_plan_reuses_memory_of_tensors_no_longer_alive():
    # a chain a -> b -> c: a and c never live together, so c takes a's place; b must sit beside both
    assert greedy_arena([(100, 0, 1), (100, 1, 2), (100, 2, 3)]) == 2 * 112
    # all alive at once: no reuse, each aligned
    assert greedy_arena([(10, 0, 5), (20, 0, 5), (30, 0, 5)]) == 16 + 32 + 32
    # the largest is placed first; a small one fits in a gap left by an expired tensor
    plan = greedy_arena([(64, 0, 1), (256, 1, 2), (64, 2, 3), (32, 3, 4)])
    assert plan == 256 + 64 and plan % ALIGN == 0
    assert greedy_arena([]) == 0


def _tflite(model, path):
    from dnnkit.formats.tflite import export_tflite

    export_tflite(model, path, precision="fp32")
    return path


def test_device_fit_of_a_small_classifier(tmp_path):
    import keras

    from dnnkit.verification.device_fit import device_fit

    inp = keras.Input((64,), name="x")
    h = keras.layers.Dense(256, activation="relu")(inp)
    h = keras.layers.Dense(128, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(10)(h))
    fit = device_fit(_tflite(model, tmp_path / "m.tflite"))
    assert fit["flash_bytes"] == (tmp_path / "m.tflite").stat().st_size
    assert fit["ops"] == ["FULLY_CONNECTED"] and fit["tflm_unsupported_ops"] == []
    # batch 1, float32: input 256 B, hidden 1024 B and 512 B, output 40 B; at most two live at once
    assert fit["activation_bytes_total"] == 4 * (64 + 256 + 128 + 10)
    assert fit["largest_activation_bytes"] == 1024
    assert fit["arena_estimate_bytes"] == 1024 + 512  # the two hidden layers, never three tensors at once
    assert fit["arena_estimate_bytes"] <= fit["interpreter_arena_bytes"] <= fit["activation_bytes_total"] + 1024


def test_an_op_tflite_micro_has_no_kernel_for_is_named(tmp_path):
    import keras

    from dnnkit.verification.device_fit import device_fit

    inp = keras.Input((8,), name="x")
    model = keras.Model(inp, keras.layers.Dense(4, activation="gelu")(inp))
    fit = device_fit(_tflite(model, tmp_path / "g.tflite"))
    assert "GELU" in fit["ops"] and fit["tflm_unsupported_ops"] == ["GELU"]
    assert fit["tflm_source"].startswith("tensorflow/tflite-micro@")
    assert np.isfinite(fit["estimate_over_interpreter"])
