"""TFLite files carry the TFLite Metadata schema (issue 24, B12) beside dnnkit's JSON: ModelMetadata with
NormalizationOptions and an associated labels file, read back with tflite-support's own generated reader
(tests/tflite_metadata_schema.py), the file still loading and running in the interpreter."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

import tflite_metadata_schema as schema


def _metadata_buffer(content: bytes, name: str) -> bytes:
    from ai_edge_litert import schema_py_generated as tfl

    model = tfl.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        if model.Metadata(i).Name().decode() == name:
            return model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy().tobytes()
    raise AssertionError(f"no {name} metadata")


@pytest.fixture(scope="module")
def tflite_file(tmp_path_factory):
    import keras
    import tensorflow as tf

    from dnnkit.artifacts.metadata import add_tflite_metadata

    model = keras.Sequential([keras.Input((64,), name="pixels"), keras.layers.Dense(3, name="logits")])
    content = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    fields = {"name": "digits_mlp", "task": "multiclass", "labels": ["zero", "one", "two"], "dnnkit_version": "0.1.0",
              "precision": "fp32", "input_normalization": {"pipeline": {"scale": 1 / 16, "offset": 0.0}},
              "verification": {"status": "unchecked"}}
    path = tmp_path_factory.mktemp("schema") / "m.tflite"
    path.write_bytes(add_tflite_metadata(content, fields))
    return path


def test_model_metadata_reads_back_with_the_schemas_own_reader(tflite_file):
    content = tflite_file.read_bytes()
    buf = _metadata_buffer(content, "TFLITE_METADATA")
    assert schema.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0)
    meta = schema.ModelMetadata.GetRootAs(buf, 0)
    assert meta.Name() == b"digits_mlp" and meta.Author() == b"dnnkit" and meta.MinParserVersion() == b"1.0.0"
    graph = meta.SubgraphMetadata(0)
    assert graph.InputTensorMetadataLength() == 1 and graph.OutputTensorMetadataLength() == 1
    tensor = graph.InputTensorMetadata(0)
    assert tensor.Name() == b"pixels"
    unit = tensor.ProcessUnits(0)
    assert unit.OptionsType() == schema.ProcessUnitOptions.NormalizationOptions
    norm = schema.NormalizationOptions()
    norm.Init(unit.Options().Bytes, unit.Options().Pos)
    # dnnkit's loader feeds raw / 16: (raw - mean) / std with mean 0, std 16
    assert norm.MeanAsNumpy().tolist() == [0.0] and norm.StdAsNumpy().tolist() == [16.0]
    from ai_edge_litert.interpreter import Interpreter

    out = graph.OutputTensorMetadata(0)  # named as the file's signature names it
    assert out.Name().decode() == Interpreter(model_path=str(tflite_file)).get_signature_list()[
        "serving_default"]["outputs"][0]
    labels = out.AssociatedFiles(0)
    assert labels.Name() == b"labels.txt" and labels.Type() == schema.AssociatedFileType.TENSOR_AXIS_LABELS
    with zipfile.ZipFile(io.BytesIO(content)) as z:  # the labels file travels inside the model file
        assert z.read("labels.txt").decode().splitlines() == ["zero", "one", "two"]


def test_the_file_still_runs_and_keeps_dnnkits_own_fields(tflite_file):
    from ai_edge_litert.interpreter import Interpreter

    from dnnkit.artifacts.metadata import read_tflite_metadata, stamp_verdict

    assert read_tflite_metadata(tflite_file)["labels"] == ["zero", "one", "two"]
    assert stamp_verdict(tflite_file, "tflite", {"status": "verified"})  # the verdict slot still works
    run = Interpreter(model_path=str(tflite_file))
    run.allocate_tensors()
    run.set_tensor(run.get_input_details()[0]["index"], np.ones((1, 64), np.float32))
    run.invoke()
    assert run.get_tensor(run.get_output_details()[0]["index"]).shape == (1, 3)
    with zipfile.ZipFile(tflite_file) as z:
        assert z.read("labels.txt") == b"zero\none\ntwo\n"
