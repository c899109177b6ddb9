"""Distillation through keras.distillation: the teacher does not change, the student is a
plain Keras model that exports and verifies."""

import numpy as np

from conftest import RECIPES


def test_distill_recipe(trained_runs, tmp_path):
    from dnnkit.jobs.compress import compress
    from dnnkit.sources.keras_file import load_model

    teacher_run = trained_runs["digits_cnn"]
    teacher = load_model(teacher_run.model_path)
    before = [w.copy() for w in teacher.get_weights()]
    manifest = compress(teacher_run.out_dir, RECIPES / "distill.toml", tmp_path)
    after = load_model(teacher_run.model_path).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "teacher file changed"
    p = manifest["passes"][0]
    assert p["type"] == "distill" and p["engine"] == "keras.distillation"
    assert p["student_params"] * 4 <= p["teacher_params"]
    assert manifest["status"] == "verified", (manifest["goals"], [e.get("failure_reason") for e in manifest["artifacts"]])
    student = load_model(tmp_path / "compressed" / "model.keras")
    assert student.count_params() == p["student_params"]
    assert {type(layer).__name__ for layer in student.layers} <= {
        "InputLayer", "Conv2D", "Activation", "MaxPooling2D", "Flatten", "Dense", "Dropout"}


def test_distiller_trains_only_the_student():
    import keras

    from conftest import MODELS
    from dnnkit.data.load import load_data
    from dnnkit.passes.context import PassContext
    from dnnkit.passes.distill import run_distill
    from dnnkit.config.model import load_spec
    from dnnkit.config.passes import DistillOptions

    spec = load_spec(MODELS / "digits_cnn.toml")
    teacher = __import__("dnnkit").build(spec)
    before = [w.copy() for w in teacher.get_weights()]
    ctx = PassContext(spec=spec, dataset=load_data(spec), base_dir=MODELS, seed=0)
    result = run_distill(teacher, DistillOptions(student="digits_cnn_small.toml", epochs=1), ctx)
    assert all(np.array_equal(a, b) for a, b in zip(before, teacher.get_weights()))
    assert isinstance(result.model, keras.Model) and result.model.name == "digits_cnn_small"
