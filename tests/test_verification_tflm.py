"""TensorFlow Lite Micro as a fourth runtime (dnnkit.verification.tflm): the measured arena, TFLM against LiteRT's
reference kernels, and every way the child can end (ran, failed, crashed, timed out, not installed) recorded."""

import numpy as np
import pytest

import dnnkit.verification.tflm as tflm


@pytest.fixture(scope="module")
def int8_file(tmp_path_factory):
    import keras

    from dnnkit.formats.tflite import export_tflite

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((12, 12, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    x = np.random.default_rng(0).uniform(0, 1, (300, 12, 12, 1)).astype("float32")
    path = tmp_path_factory.mktemp("tflm") / "int8.tflite"
    export_tflite(model, path, precision="int8", representative=x[:100], io="int8")
    return path, model, x


def test_tflm_runs_the_file_with_its_measured_arena_and_matches_litert_reference_kernels(int8_file):
    from tflite_micro.python.tflite_micro import runtime

    path, model, x = int8_file
    facts, outputs = tflm.tflm_check(path, x)
    assert facts["status"] == "ran", facts
    assert facts["inputs"] == min(len(x), tflm.TFLM_INPUTS) and outputs[0].shape == (facts["inputs"], 5)
    arena = facts["arena"]
    assert arena["total"] == arena["head"] + arena["tail"] and arena["head"] > 0
    # the smallest arena that allocates, found by search: it allocates, 16 bytes less does not (each tried in a
    # forked process: TFLM crashes on some arenas too small instead of refusing them)
    smallest = arena["smallest_arena_size"]
    assert smallest > arena["head"]

    def load(size):
        return runtime.Interpreter.from_file(str(path), arena_size=size)

    assert tflm._allocates(load, smallest) and not tflm._allocates(load, smallest - tflm.ALIGN)
    # the estimate of device_fit for machines without TFLM: the activation plan is TFLM's head exactly; with the
    # modelled persistent tail it comes within a quarter of the measured arena (0.94-1.08 on the matrix's files,
    # whose figures the model's per-item bytes were read from; this model is not one of them)
    from dnnkit.verification.device_fit import device_fit

    fit = device_fit(path)
    assert fit["arena_estimate_bytes"] == arena["head"]
    assert 0.75 * smallest <= fit["tflm_arena_estimate_bytes"] <= 1.25 * smallest, (fit, arena)
    # the same reference integer arithmetic: at most one output step apart (measured: equal)
    assert facts["within_one_quantum"] and facts["vs_litert_reference"][0]["max_quanta"] <= 1
    # dequantized outputs close to Keras's: int8 on this small net keeps the top class
    ref = model.predict(x[:len(outputs[0])], verbose=0)
    assert np.mean(outputs[0].argmax(-1) == ref.argmax(-1)) >= 0.9


def test_every_way_the_tflm_child_ends_is_recorded(int8_file, tmp_path, monkeypatch):
    path, _, x = int8_file
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(path.read_bytes()[:200])  # a truncated flatbuffer
    facts, outputs = tflm.tflm_check(broken, x[:3])
    assert facts["status"] in ("failed", "crashed") and facts["reason"] and outputs == []
    monkeypatch.setattr(tflm, "TIMEOUT_S", 0.01)
    facts, _ = tflm.tflm_check(path, x[:3])
    assert facts == {"status": "timeout", "reason": "TFLM did not finish within 0.01 s"}
    monkeypatch.setattr(tflm.importlib.util, "find_spec", lambda name: None)
    facts, _ = tflm.tflm_check(path, x[:3])
    assert facts["status"] == "unavailable" and "pip install tflite-micro" in facts["reason"]


def test_several_inputs_and_outputs_run_in_tflm_matched_by_signature_name(tmp_path):
    """Inputs of different widths fed by name (a swap would not even allocate), outputs returned in the
    signature's order and named, each as LiteRT's reference kernels compute it."""
    import keras

    from dnnkit.formats.tflite import export_tflite

    keras.utils.set_random_seed(0)
    a, b = keras.Input((6,), name="a"), keras.Input((3,), name="b")
    h = keras.layers.Dense(12, activation="relu")(keras.layers.Concatenate()([a, b]))
    model = keras.Model([a, b], [keras.layers.Dense(4, name="cls")(h), keras.layers.Dense(1, name="reg")(h)])
    rng = np.random.default_rng(1)
    x = {"a": rng.normal(size=(60, 6)).astype("float32"), "b": rng.normal(size=(60, 3)).astype("float32")}
    path = tmp_path / "two.tflite"
    export_tflite(model, path, precision="int8", representative=x)
    facts, outputs = tflm.tflm_check(path, x, limit=40)
    assert facts["status"] == "ran", facts
    assert facts["inputs"] == 40 and sorted(facts["output_names"]) == ["cls", "reg"]
    shapes = {name: out.shape for name, out in zip(facts["output_names"], outputs)}
    assert shapes == {"cls": (40, 4), "reg": (40, 1)}
    assert facts["within_one_quantum"]
    expected = dict(zip(["cls", "reg"], model.predict([x["a"][:40], x["b"][:40]], verbose=0)))
    for name, out in zip(facts["output_names"], outputs):  # int8 of a small net: close to Keras, output by output
        scale = float(np.max(np.abs(expected[name])))
        assert float(np.max(np.abs(out - expected[name]))) < 0.1 * scale, name


def test_a_tflm_hang_costs_only_its_share_of_the_artifacts_timeout_and_while_loops_are_not_run(int8_file):
    """The child gets TIMEOUT_SHARE of the artifact's verification timeout, so a hang is recorded as ``timeout``
    while the artifact's own checks still finish; WHILE (Keras's recurrent loop in a float file, on which TFLM's
    kernel never returned) is not run at all."""
    from types import SimpleNamespace

    path, model, x = int8_file
    ref = SimpleNamespace(x=x[:5], outputs=[model.predict(x[:5], verbose=0)], heads=["multiclass"],
                          output_names=["output_0"])
    fit = {"ops": ["CONV_2D", "FULLY_CONNECTED"], "tflm_unsupported_ops": []}
    facts = tflm.tflm_facts(path, ref, fit, 0.98, 1.645, timeout=0.025)
    assert facts == {"status": "timeout", "reason": "TFLM did not finish within 0.01 s"}
    looped = tflm.tflm_facts(path, ref, {**fit, "ops": ["FULLY_CONNECTED", "WHILE"]}, 0.98, 1.645,
                             full_integer=False)
    assert looped["status"] == "skipped" and looped["reason"].startswith("WHILE: TFLite Micro's kernel did not")
