"""Export: every shipped spec x every artifact of export/all.toml is produced and verified."""

import json
import tomllib

import numpy as np
import pytest

from conftest import RECIPES, SPECS, cli
from dnnkit.artifacts.files import file_digest
from dnnkit.verification.runtimes.base import usable_cores

ALL = [a["name"] for a in tomllib.loads((RECIPES / "all.toml").read_text())["artifacts"]]
MANIFEST_KEYS = {"name", "format", "precision", "path", "sha256", "bytes", "status", "failure_reason",
                 "parity", "metrics", "latency_ms"}


@pytest.mark.parametrize("artifact", ALL)
@pytest.mark.parametrize("name", SPECS)
def test_every_artifact_verifies(exported, name, artifact):
    out, manifest = exported[name]
    entry = next(e for e in manifest["artifacts"] if e["name"] == artifact)
    assert entry["status"] == "verified", entry.get("failure_reason")
    assert MANIFEST_KEYS <= set(entry)
    assert entry["failures"] == []
    assert (entry["sha256"], entry["bytes"]) == file_digest(out / entry["path"])
    assert entry["latency_ms"]["p50"] > 0
    settings = entry["latency_ms"]["settings"]  # what the figures were measured with
    assert settings["runtime"] in ("tensorflow", "LiteRT interpreter", "onnxruntime")
    if entry["format"] != "saved_model":
        assert settings.get("num_threads", settings.get("intra_op_threads")) == 1
    if entry["batch"] is None:  # a dynamic batch: batch-32 throughput too, on one core and on all
        assert entry["latency_ms"]["batch"] == 32 and entry["latency_ms"]["throughput_per_s"] > 0
        cores = entry["latency_ms"]["cores"]
        if usable_cores() > 1:
            assert cores["batch"] == 32 and cores["cores"] == usable_cores()
            assert cores["one_core_per_s"] > 0 and cores["all_cores_per_s"] > 0
            # the ratio of the two figures, to 3 decimals (a relative bound failed on a run where the
            # all-core figure was 0.032 of the one-core one: rounding alone is 1.4 % of that)
            assert cores["speedup"] == round(cores["all_cores_per_s"] / cores["one_core_per_s"], 3)
        else:
            assert cores is None
    # timed on its own once every conversion was done (verification.latency_seconds), not during them
    assert entry["verification"]["latency_seconds"] >= 0  # None when not timed (a tiny model's can round to 0.0)
    ref = manifest["reference"]["metrics"]
    checks = entry["checks"]
    # every input is used: the 360 labelled test samples, then train and validation
    assert checks["top1_agreement"]["n"] == manifest["reference"]["inputs_checked"] == 1797
    assert checks["top1_agreement"]["verdict"] == "pass"
    if entry["precision"] in ("fp32", "fp16"):
        parity = checks["float_parity"]
        assert parity["verdict"] == "pass" and parity["n"] == 1797
        fp16 = entry["precision"] == "fp16"
        assert entry["tolerance"]["atol"] == (1e-3 if fp16 else 1e-4)
        assert entry["tolerance"]["rtol"] == (2e-3 if fp16 else 1e-4)
        calibrated = 8.0 * manifest["reference"]["fp16_weight_error"] if fp16 else 0.0
        assert parity["calibrated"] == pytest.approx(calibrated)
        assert parity["max_abs_diff"] <= parity["allowed"] == pytest.approx(
            parity["atol"] + max(parity["rtol"] * parity["scale"], calibrated))
        if fp16 and entry["format"] == "tflite":  # its biases back in fp32, from the job's fp32 file
            assert entry["conversion"]["fp32_constants"] >= 1
    else:
        drop = checks["accuracy_drop"]
        assert drop["verdict"] == "pass" and drop["n"] == 360  # decisive on the shipped digits specs
        assert drop["ci"][1] <= 0.01 or drop["disagreement_bound"] <= 0.01
        assert ref["accuracy"] - entry["metrics"]["accuracy"] == pytest.approx(drop["value"])
    assert set(entry["metrics"]) == {"accuracy", "precision", "recall", "f1"}
    if entry["format"] == "tflite" and entry["precision"] == "int8":  # the fourth runtime: TensorFlow Lite Micro
        fit, tflm = entry["device_fit"], entry["device_fit"]["tflm"]
        if name == "digits_transformer":  # ops TFLM has no kernel for (the dynamic batch's REDUCE_PROD, GELU)
            assert tflm["status"] == "skipped" and "REDUCE_PROD" in tflm["reason"], tflm
            return
        assert tflm["status"] == "ran" and tflm["inputs"] == 200, tflm
        judged = tflm["agreement_with_keras"]
        assert judged["n"] == 200 and judged["verdict"] in ("pass", "inconclusive") and judged["value"] >= 0.95
        arena = tflm["arena"]
        assert arena["total"] == arena["head"] + arena["tail"] and arena["smallest_arena_size"] > arena["head"]
        assert tflm["estimate_over_head"] == round(fit["arena_estimate_bytes"] / arena["head"], 3)


@pytest.mark.parametrize("name", SPECS)
def test_manifest_top_level(exported, name):
    out, manifest = exported[name]
    assert manifest["status"] == "verified" and manifest["failures"] == [] and manifest["inconclusive"] == []
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert set(manifest["versions"]) >= {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime",
                                         "ai-edge-litert"}
    assert all(manifest["versions"].values())
    ref = manifest["reference"]
    assert ref["spec"] == name and ref["input_name"] == "inputs" and ref["output_name"] == "logits"
    assert ref["metrics"]["accuracy"] >= 0.93 and ref["test_samples"] == 360 and ref["inputs_checked"] == 1797


@pytest.mark.parametrize("name", ["digits_lstm", "digits_gru"])
def test_recurrent_tflite_is_builtin_with_static_batch(exported, name):
    _, manifest = exported[name]
    for entry in manifest["artifacts"]:
        if entry["format"] != "tflite":
            continue
        assert entry["flex_ops"] == [] and not any(o.startswith("Flex") for o in entry["ops"])
        assert entry["batch"] == 1 and entry["conversion"]["batch"] == 1
        if entry["precision"] == "int8":
            assert entry["fallbacks"] == ["unroll_recurrent"]
            assert "WHILE" not in entry["ops"]
        else:
            assert entry["fallbacks"] == []


@pytest.mark.parametrize("name", SPECS)
def test_int8_tflite_is_full_integer(exported, name):
    out, manifest = exported[name]
    entry = next(e for e in manifest["artifacts"] if e["name"] == "tflite_int8")
    # Strict int8 (no float fallback): every op with weights runs in int8. A few cheap ops
    # on float constants may remain (measured: the unrolled LSTM keeps SPLIT, the transformer NEG); the
    # manifest names them.
    assert set(entry["float_ops"]) <= set(entry["ops"])
    assert not {"FULLY_CONNECTED", "CONV_2D", "BATCH_MATMUL", "UNIDIRECTIONAL_SEQUENCE_LSTM"} & set(
        entry["float_ops"]), entry["float_ops"]
    if name in ("digits_mlp", "digits_cnn", "digits_gru"):
        assert entry["float_ops"] == []
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(out / entry["path"]))
    assert it.get_input_details()[0]["dtype"] == np.int8
    assert it.get_output_details()[0]["dtype"] == np.int8


def test_dynamic_batch_artifacts_tried_at_a_second_batch_size(exported):
    _, manifest = exported["digits_cnn"]
    for entry in manifest["artifacts"]:
        assert entry["batch"] is None, entry["name"]
        assert entry["parity"]["second_batch"]["size"] == 7


def test_onnx_names_metadata_and_dynamic_batch(exported):
    import onnx

    out, manifest = exported["digits_mlp"]
    for name in ("onnx_fp32", "onnx_int8"):
        proto = onnx.load(out / "artifacts" / f"{name}.onnx")
        assert [i.name for i in proto.graph.input] == ["inputs"]
        assert [o.name for o in proto.graph.output] == ["logits"]
        assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        assert proto.opset_import[0].version == 17 or any(o.version == 17 for o in proto.opset_import)
        meta = {p.key: p.value for p in proto.metadata_props}
        assert meta["name"] == "digits_mlp" and json.loads(meta["labels"]) == [str(i) for i in range(10)]
        assert meta["dnnkit_version"] == manifest["dnnkit_version"]
    int8 = onnx.load(out / "artifacts" / "onnx_int8.onnx")
    assert any(n.op_type == "QuantizeLinear" for n in int8.graph.node)
    assert (int8.producer_name, int8.producer_version, int8.model_version) == ("dnnkit", manifest["dnnkit_version"], 1)
    assert "digits_mlp: multiclass model" in int8.doc_string and "(int8)" in int8.doc_string


def test_metadata_inside_artifacts_reads_back_in_their_runtimes(exported):
    """Labels, task, input normalization, the reference's sha256 and the version, read by onnxruntime's
    get_modelmeta() and from the .tflite's JSON buffer; the LiteRT interpreter still runs the file."""
    import numpy as np
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from dnnkit.artifacts.metadata import read_tflite_metadata

    out, manifest = exported["digits_mlp"]
    expected = {"dnnkit_version": manifest["dnnkit_version"], "name": "digits_mlp", "task": "multiclass",
                "labels": [str(i) for i in range(10)],
                "reference_weights_sha256": manifest["reference"]["weights_sha256"],
                "input_normalization": {"pipeline": {"scale": 0.0625, "offset": 0.0, "raw_range": [0, 16]},
                                        "in_model": []},
                # each file's own verdict, stamped when the export ended (issue 24, B2)
                "verification": {"status": "verified", "reason": None, "criteria": manifest["recipe"]["name"],
                                 "inputs_checked": manifest["reference"]["inputs_checked"]}}
    entries = {e["name"]: e for e in manifest["artifacts"]}
    for name in ("onnx_fp32", "onnx_int8"):
        props = ort.InferenceSession(str(out / "artifacts" / f"{name}.onnx")).get_modelmeta().custom_metadata_map
        decoded = {k: v if k in ("dnnkit_version", "name", "task", "reference_weights_sha256", "precision") else json.loads(v)
                   for k, v in props.items()}
        assert decoded == {**expected, "precision": name.split("_")[1]}
        assert entries[name]["metadata"] == decoded
    x = np.random.default_rng(0).uniform(0, 1, (4, 64)).astype("float32")
    for name in ("tflite_fp32", "tflite_fp16", "tflite_dynamic_int8", "tflite_int8"):
        path = out / "artifacts" / f"{name}.tflite"
        assert read_tflite_metadata(path) == {**expected, "precision": name.split("_", 1)[1]}
        assert entries[name]["metadata"] == read_tflite_metadata(path)
        interpreter = Interpreter(model_path=str(path))
        detail = interpreter.get_input_details()[0]
        scale, zero = detail["quantization"]
        feed = np.round(x / scale + zero).astype(detail["dtype"]) if scale else x
        assert interpreter.get_signature_runner("serving_default")(inputs=feed)["logits"].shape == (4, 10)


def test_saved_model_signature(exported):
    import tensorflow as tf

    out, _ = exported["digits_gru"]
    sig = tf.saved_model.load(str(out / "artifacts" / "saved_model")).signatures["serving_default"]
    assert list(sig.structured_input_signature[1]) == ["inputs"]
    assert sig.structured_input_signature[1]["inputs"].shape.as_list() == [None, 8, 8]
    assert list(sig.structured_outputs) == ["logits"]


def test_verify_cli_passes_again(exported):
    out, _ = exported["digits_transformer"]
    result = cli("verify", str(out))
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "7 of 7 artifacts verified" in result.stdout
    assert json.loads((out / "manifest.json").read_text())["status"] == "verified"


def test_tflite_16x8_runs_int16_activations_and_verifies(trained_runs, tmp_path):
    """TFLite's 16x8 mode (int16 activations, int8 weights): calibrated like int8, checked as quantized."""
    from ai_edge_litert.interpreter import Interpreter

    from dnnkit.jobs.export import export
    from dnnkit.config.recipe import recipe_from_dict

    recipe = recipe_from_dict({"name": "r", "artifacts": [
        {"name": "tflite_16x8", "format": "tflite", "precision": "int16x8", "samples": 100},
        {"name": "tflite_int8", "format": "tflite", "precision": "int8"}]})
    manifest = export(trained_runs["digits_cnn"].model_path, recipe, tmp_path / "out", data="digits")
    w16, w8 = manifest["artifacts"]
    assert w16["status"] == "verified", w16["failure_reason"]
    assert w16["checks"]["float_parity"]["verdict"] == "not_applied" and w16["float_ops"] == []
    details = Interpreter(model_path=str(tmp_path / "out" / w16["path"])).get_tensor_details()
    kinds = {np.dtype(d["dtype"]).name for d in details}
    assert {"int16", "int8"} <= kinds, kinds  # activations int16, weights int8
    # activation steps 256 times finer than int8's: the top-1 class moves on at most 1 in 1000 inputs
    assert w16["checks"]["top1_agreement"]["value"] >= 0.999 and w8["status"] == "verified"


def test_a_sequential_models_names_are_kept_in_every_artifact(tmp_path):
    """The user's input and last-layer names, not ``outputs``, in the SavedModel, TFLite and ONNX signatures."""
    import keras
    import numpy as np
    import onnx
    from ai_edge_litert.interpreter import Interpreter

    import dnnkit

    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("int64")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,), name="features"), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(2, name="logits")])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, verbose=0)
    recipe = tmp_path / "names.toml"
    recipe.write_text('name = "names"\n[[artifacts]]\nname = "tflite_fp32"\nformat = "tflite"\nprecision = "fp32"\n'
                      '[[artifacts]]\nname = "onnx_fp32"\nformat = "onnx"\nprecision = "fp32"\n')
    manifest = dnnkit.export(model, recipe, tmp_path / "out", data=(x, y))
    assert manifest["status"] == "verified", manifest
    assert manifest["reference"]["output_name"] == "logits"
    proto = onnx.load(tmp_path / "out" / "artifacts" / "onnx_fp32.onnx")
    assert ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output]) == (["features"], ["logits"])
    runner = Interpreter(model_path=str(tmp_path / "out" / "artifacts" / "tflite_fp32.tflite"))
    signature = runner.get_signature_list()["serving_default"]
    assert (signature["inputs"], signature["outputs"]) == (["features"], ["logits"])


@pytest.mark.slow
def test_a_csv_exports_from_the_command_line_with_its_label_column(tmp_path):
    """Issue 24 (A): `export` had no way to name a CSV's label column, so a CSV could not be exported at all."""
    import keras
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()  # 569 rows, 30 features
    x, y = data.data.astype("float32"), data.target
    header = ",".join(name.replace(" ", "_") for name in data.feature_names) + ",target"
    np.savetxt(tmp_path / "cancer.csv", np.column_stack([x, y]), delimiter=",", header=header, comments="",
               fmt=["%.6g"] * 30 + ["%d"])
    norm = keras.layers.Normalization()
    norm.adapt(x)
    model = keras.Sequential([keras.Input((30,)), norm, keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=10, verbose=0)
    model.save(tmp_path / "m.keras")
    recipe = tmp_path / "r.toml"
    recipe.write_text('name = "r"\n[[artifacts]]\nname = "tflite_fp32"\nformat = "tflite"\n')

    missing = cli("export", str(tmp_path / "m.keras"), "--recipe", str(recipe), "--data", str(tmp_path / "cancer.csv"),
                  "--out", str(tmp_path / "no"))
    assert missing.returncode == 2 and "--label-column NAME" in missing.stderr and not (tmp_path / "no").exists()
    wrong = cli("export", str(tmp_path / "m.keras"), "--recipe", str(recipe), "--data", "digits",
                "--label-column", "target", "--out", str(tmp_path / "no"))
    assert wrong.returncode == 2 and "label_column: names the label column of a .csv" in wrong.stderr

    proc = cli("export", str(tmp_path / "m.keras"), "--recipe", str(recipe), "--data", str(tmp_path / "cancer.csv"),
               "--label-column", "target", "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["status"] == "verified" and manifest["reference"]["inputs_checked"] == 569
    assert manifest["reference"]["metrics"]["accuracy"] > 0.9
    again = cli("verify", str(tmp_path / "out"))  # the label column is kept with the folder's spec
    assert again.returncode == 0, again.stdout + again.stderr
