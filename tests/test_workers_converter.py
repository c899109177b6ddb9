"""The converter worker: what it loads for an item."""


import numpy as np
import pytest


def test_converter_loads_no_model_for_the_int8_onnx_from_a_file(tmp_path):
    from dnnkit.formats.convert import needs_model
    from dnnkit.workers import converter

    (tmp_path / "model.keras").write_bytes(b"not a model")
    np.savez(tmp_path / "rep.npz", x=np.zeros((2, 3), "float32"))
    job = {"model": str(tmp_path / "model.keras"), "representative": str(tmp_path / "rep.npz")}
    from_file = {"job": job, "format": "onnx", "precision": "int8", "fp32_onnx": {"path": "fp32.onnx"}}
    assert converter.prepare(from_file) >= 0 and "model" not in converter._LOADED  # noqa: SLF001
    for item in ({**from_file, "float_layers": ["conv"]}, {**from_file, "fp32_onnx": None},
                 {**from_file, "task": "rank"}, {**from_file, "format": "tflite"}):
        assert needs_model(item)
        with pytest.raises(Exception):
            converter.prepare(item)
