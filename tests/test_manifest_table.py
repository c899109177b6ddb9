"""The terminal table: the lines under it."""





def test_a_quantized_artifact_slower_than_its_fp32_twin_is_named():
    from dnnkit.manifest.table import slower_than_fp32

    arts = [{"name": "onnx_fp32", "format": "onnx", "precision": "fp32", "latency_ms": {"p50": 0.010}},
            {"name": "onnx_int8", "format": "onnx", "precision": "int8", "latency_ms": {"p50": 0.015}},
            {"name": "tflite_fp32", "format": "tflite", "precision": "fp32", "latency_ms": {"p50": 0.004}},
            {"name": "tflite_int8", "format": "tflite", "precision": "int8", "latency_ms": {"p50": 0.003}},
            {"name": "tflite_fp16", "format": "tflite", "precision": "fp16", "latency_ms": None}]
    assert slower_than_fp32(arts) == [
        "SLOWER onnx_int8: batch-1 p50 0.015 ms vs 0.010 ms for onnx fp32 (1.50x) on this CPU"]
