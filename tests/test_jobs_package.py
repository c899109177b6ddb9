"""Serving layouts (issue 11): a Triton model repository and a TF Serving base folder, made from a
recipe's [package] table and by `dnnkit package`, checked with Triton's own model-config protobuf
and TensorFlow's loader, and verified again where they lie."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import cli, digits_dense

RECIPE = {"name": "serve",
          "artifacts": [{"name": "saved_model", "format": "saved_model", "precision": "fp32"},
                        {"name": "onnx_fp32", "format": "onnx", "precision": "fp32"},
                        {"name": "tflite_fp32", "format": "tflite", "precision": "fp32"}],
          "package": {"layouts": ["triton", "tf-serving"], "model_name": "digits", "max_batch_size": 16}}


@pytest.fixture(scope="module")
def packaged(tmp_path_factory):
    """A digits classifier exported with a recipe that asks for both layouts."""
    import dnnkit
    from dnnkit.config.recipe import recipe_from_dict

    model, x, y = digits_dense(epochs=3)
    out = tmp_path_factory.mktemp("serve") / "out"
    manifest = dnnkit.export(model, recipe_from_dict(RECIPE), out,
                             data={"x_train": x[:1400], "y_train": y[:1400], "x_test": x[1400:], "y_test": y[1400:],
                                   "class_names": [f"digit {i}" for i in range(10)]})
    return out, manifest, model, x[1400:]


def _model_config(path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def test_triton_repository_matches_the_onnx_graph_and_reverifies(packaged):
    import onnx

    out, manifest, _, _ = packaged
    record = manifest["package"]["triton"]
    assert record["status"] == "verified" and record["artifact"] == "onnx_fp32"
    assert record["files"] == ["config.pbtxt", "labels.txt", "1/model.onnx"] and record["same_bytes_as_artifact"]
    onnx_entry = next(e for e in manifest["artifacts"] if e["name"] == "onnx_fp32")
    assert record["sha256"] == onnx_entry["sha256"] and record["parity"]["max_abs_diff"] == 0.0
    repo = out / "serving" / "triton" / "digits"
    config = _model_config(repo / "config.pbtxt")
    graph = onnx.load(str(repo / "1" / "model.onnx")).graph
    assert (config.name, config.platform, config.max_batch_size) == ("digits", "onnxruntime_onnx", 16)
    assert config.HasField("dynamic_batching")
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        (i.name, 11, [d.dim_value for d in i.type.tensor_type.shape.dim[1:]]) for i in graph.input]  # 11: TYPE_FP32
    assert [(t.name, list(t.dims)) for t in config.output] == [("logits", [10])] == [
        (o.name, [d.dim_value for d in o.type.tensor_type.shape.dim[1:]]) for o in graph.output]
    assert config.output[0].label_filename == "labels.txt"
    assert (repo / "labels.txt").read_text().split("\n")[:-1] == [f"digit {i}" for i in range(10)]


def test_tf_serving_layout_serves_the_test_split(packaged):
    import tensorflow as tf

    out, manifest, model, x_test = packaged
    assert manifest["package"]["tf-serving"]["status"] == "verified"
    version = out / "serving" / "tf-serving" / "digits" / "1"
    assert (version / "saved_model.pb").is_file()
    serve = tf.saved_model.load(str(version)).signatures["serving_default"]
    got = next(iter(serve(tf.constant(x_test)).values())).numpy()
    np.testing.assert_allclose(got, model.predict(x_test, verbose=0), atol=1e-5)
    assert got.shape == (len(x_test), 10)


def test_a_triton_request_is_built_against_the_config(packaged):
    """What a client sends: tritonclient request objects whose names, types and shapes the config accepts."""
    import tritonclient.grpc as grpcclient

    out, _, _, x_test = packaged
    config = _model_config(out / "serving" / "triton" / "digits" / "config.pbtxt")
    batch = x_test[:4]
    request = grpcclient.InferInput(config.input[0].name, list(batch.shape), "FP32")
    request.set_data_from_numpy(batch)
    tensor = request._get_tensor()
    assert tensor.name == config.input[0].name and list(tensor.shape)[1:] == list(config.input[0].dims)
    assert tensor.shape[0] <= config.max_batch_size
    assert grpcclient.InferRequestedOutput(config.output[0].name, class_count=3)._get_tensor().name == "logits"


def test_cli_package_bad_input_is_one_line_and_writes_nothing(packaged, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(packaged[0], out)
    shutil.rmtree(out / "serving")
    for args, expected in ((["--layout", "triton", "--artifact", "tflite_fp32"],
                            "package.artifact: expected one of the onnx artifacts ['onnx_fp32'], got 'tflite_fp32'"),
                           (["--layout", "triton", "--model-name", "a/b"], "package.model_name: expected letters"),
                           (["--layout", "kserve"], "invalid choice: 'kserve'")):
        result = cli("package", str(out), *args)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr and "Traceback" not in result.stderr
        assert not (out / "serving").exists()


def test_cli_package_then_verify_catches_a_changed_packaged_model(packaged, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(packaged[0], out)
    shutil.rmtree(out / "serving")
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.pop("package")
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = cli("package", str(out), "--layout", "triton", "--version", "3", "--max-batch-size", "0",
                 "--model-name", "digits")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "package triton: onnx_fp32 -> serving/triton/digits (version 3): VERIFIED" in result.stdout
    config = _model_config(out / "serving" / "triton" / "digits" / "config.pbtxt")
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [-1, 64]  # the batch stays in the dims
    assert not config.HasField("dynamic_batching")
    model = out / "serving" / "triton" / "digits" / "3" / "model.onnx"
    model.write_bytes(model.read_bytes()[:-16])
    result = cli("verify", str(out))
    assert result.returncode == 1
    assert "package triton: onnx_fp32 -> serving/triton/digits (version 3): FAILED (sha256 mismatch" in result.stdout
