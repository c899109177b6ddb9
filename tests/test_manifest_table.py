"""The terminal table: the lines under it."""





def test_a_quantized_artifact_slower_than_its_fp32_twin_is_named():
    from dnnkit.manifest.table import slower_than_fp32

    arts = [{"name": "onnx_fp32", "format": "onnx", "precision": "fp32", "latency_ms": {"p50": 0.015}},
            {"name": "onnx_int8", "format": "onnx", "precision": "int8", "latency_ms": {"p50": 0.030}},
            {"name": "tflite_fp32", "format": "tflite", "precision": "fp32", "latency_ms": {"p50": 0.004}},
            {"name": "tflite_int8", "format": "tflite", "precision": "int8", "latency_ms": {"p50": 0.003}},
            {"name": "tflite_fp16", "format": "tflite", "precision": "fp16", "latency_ms": None}]
    assert slower_than_fp32(arts) == [
        "SLOWER onnx_int8: batch-1 p50 0.030 ms vs 0.015 ms for onnx fp32 (2.00x) on this CPU"]


def test_timing_noise_is_not_called_slower():
    from dnnkit.manifest.table import slower_than_fp32

    # issue 24 (B9): SLOWER fired at 1.03x on 0.03 ms latencies
    arts = [{"name": "tflite_fp32", "format": "tflite", "precision": "fp32", "latency_ms": {"p50": 0.030}},
            {"name": "tflite_int8", "format": "tflite", "precision": "int8", "latency_ms": {"p50": 0.031}},
            {"name": "onnx_fp32", "format": "onnx", "precision": "fp32", "latency_ms": {"p50": 0.004}},
            {"name": "onnx_int8", "format": "onnx", "precision": "int8", "latency_ms": {"p50": 0.008}}]
    assert slower_than_fp32(arts) == []  # 1.03x; and 2x but 0.004 ms apart


def _manifest(artifacts, ref_bytes=10_240, warnings=()):
    return {"reference": {"bytes": ref_bytes, "head": "multiclass", "metrics": {"accuracy": 0.5},
                          "warnings": list(warnings)},
            "artifacts": artifacts, "status": "verified"}


def test_an_int8_file_larger_than_the_model_says_so_and_why():
    from dnnkit.manifest.table import larger_than_float, table

    lstm = {"name": "tflite_int8", "format": "tflite", "precision": "int8", "bytes": 86_630, "status": "verified",
            "fallbacks": ["unroll_recurrent"], "metrics": {"accuracy": 0.5}}
    small = {"name": "tflite_fp16", "format": "tflite", "precision": "fp16", "bytes": 6_000, "status": "verified"}
    assert larger_than_float(_manifest([lstm, small])) == [
        "LARGER tflite_int8: 84.6 KB, 8.5x the reference model's 10.0 KB; recurrent layers unrolled: the cell's ops "
        "once per time step"]
    with_fp32 = {"name": "tflite_fp32", "format": "tflite", "precision": "fp32", "bytes": 90_000, "status": "verified"}
    assert larger_than_float(_manifest([with_fp32, lstm])) == []  # smaller than its fp32 twin
    dynamic = {"name": "tflite_dynamic_int8", "format": "tflite", "precision": "dynamic_int8", "bytes": 8_730}
    plain = {"name": "tflite_fp32", "format": "tflite", "precision": "fp32", "bytes": 8_700}
    assert larger_than_float(_manifest([plain, dynamic])) == []  # 30 bytes more is not news
    printed = table(_manifest([lstm], warnings=["the reference predicts class 1 for 200 of 200 inputs"]))
    assert "LARGER tflite_int8" in printed
    assert "WARNING reference: the reference predicts class 1 for 200 of 200 inputs" in printed
