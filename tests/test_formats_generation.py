"""Step artifacts written and driven in TensorFlow, LiteRT and onnxruntime: a Transformer encoder-decoder's (an
`encode` signature and encoder.onnx beside the decoder's step, the KV cache passed in and out,
`encoder_hidden_states` read on every call) and keras-hub Llama and Gemma causal LMs' (rotary positions, grouped
key/value heads). The fp32 files give every token Keras gives, with builtin ops only."""

import keras
import numpy as np
import pytest

import dnnkit
from dnnkit.builders.decoding import greedy_full
from dnnkit.config.model import spec_from_dict
from dnnkit.core.generation import STEP_ARTIFACTS
from dnnkit.formats.generation import export_decoders
from dnnkit.verification.generation import check_generation

pytestmark = pytest.mark.slow


def test_a_transformer_seq2seq_generates_keras_tokens_through_every_fp32_step_file(tmp_path):
    keras.utils.set_random_seed(7)
    model = dnnkit.build(spec_from_dict({"name": "s2s", "model": {
        "family": "transformer", "input": "tokens", "vocab_size": 12, "input_shape": [10], "head": "seq2seq",
        "source_steps": 6, "d_model": 16, "num_heads": 2, "key_dim": 8, "ff_dim": 32}}))
    rng = np.random.default_rng(0)
    prompts = [[int(t) for t in rng.integers(0, 12, 6)] + [1] for _ in range(24)]
    reference = greedy_full(model, prompts, 4)
    names = ("decoder_saved_model", "decoder_tflite_fp32", "decoder_onnx_fp32")
    made = export_decoders(model, tmp_path, names)
    assert made["decoder_onnx_fp32"]["encoder_path"].endswith("encoder.onnx")
    assert made["decoder_tflite_fp32"]["signatures"] == ["encode", "prefill", "decode"]
    task = {"prompts": prompts, "reference": reference, "answers": reference, "capacity": 4, "source_steps": 6,
            "cache_shapes": {f"kv_cache_{k}_{i}": [1, 2, 4, 8] for i in range(2) for k in "kv"},
            "min_agreement": 0.9, "max_degradation": 0.01}
    for name in names:
        result = check_generation(made[name], task)
        assert result["verdict"] == "pass", (name, result["failures"], result.get("first_mismatch"))
        assert result["same_as_keras"] == 1.0 and result["prompts"] == 24
        assert not result["flex_ops"] and not {"WHILE", "Loop", "Scan"} & set(result["ops"])
    assert set(names) <= set(STEP_ARTIFACTS)


@pytest.mark.parametrize("family", ["llama", "gemma"])
def test_a_keras_hub_rotary_lm_steps_through_every_fp32_file_as_keras_does(family, tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    from dnnkit.builders.decoding import step_model

    keras.utils.set_random_seed(1)
    common = dict(vocabulary_size=40, num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=32,
                  intermediate_dim=64)
    if family == "llama":
        model = keras_hub.models.LlamaCausalLM(keras_hub.models.LlamaBackbone(**common), preprocessor=None)
    else:
        model = keras_hub.models.GemmaCausalLM(keras_hub.models.GemmaBackbone(head_dim=8, **common),
                                               preprocessor=None)
    rng = np.random.default_rng(0)
    prompts = [[int(t) for t in rng.integers(1, 40, int(n))] for n in rng.integers(2, 8, 16)]
    reference = greedy_full(model, prompts, 6, steps=16)
    names = ("decoder_tflite_fp32", "decoder_onnx_fp32")
    made = export_decoders(model, tmp_path, names, capacity=16)
    shapes = {k: list(v) for k, v in step_model(model, 16).state_shapes(1).items()}
    assert shapes["kv_cache_k_0"] == [1, 2, 16, 8]  # the two key/value heads, not the four query heads
    task = {"prompts": prompts, "reference": reference, "answers": None, "capacity": 16, "cache_shapes": shapes,
            "min_agreement": 0.9, "max_degradation": 0.01}
    for name in names:
        result = check_generation(made[name], task)
        assert result["verdict"] == "pass" and result["same_as_keras"] == 1.0, (name, result["failures"])
        assert not result["flex_ops"] and not {"WHILE", "Loop", "Scan"} & set(result["ops"])


def test_a_full_int8_step_file_is_calibrated_on_the_step_models_own_calls(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    keras.utils.set_random_seed(2)
    model = dnnkit.build(spec_from_dict({"name": "lm", "model": {
        "family": "rnn", "cell": "gru", "input": "tokens", "vocab_size": 12, "input_shape": [10], "head": "causal_lm",
        "units": [16]}}))
    rng = np.random.default_rng(0)
    prompts = [[int(t) for t in rng.integers(1, 12, int(n))] for n in rng.integers(2, 6, 20)]
    made = export_decoders(model, tmp_path, ("decoder_tflite_int8",), calibration=prompts,
                           calibration_limits=[4] * len(prompts))["decoder_tflite_int8"]
    assert "error" not in made, made
    interpreter = Interpreter(model_path=made["path"])
    assert set(interpreter.get_signature_list()) == {"prefill", "decode"}
    kinds = {d["dtype"].__name__ for d in interpreter.get_tensor_details()}
    assert "int8" in kinds  # weights and activations in int8; the state and logits stay float at the edges
    decode = interpreter.get_signature_runner("decode")
    assert all(d["dtype"] == np.float32 for n, d in decode.get_input_details().items() if n.startswith("h_"))
    task = {"prompts": prompts, "reference": greedy_full(model, prompts, 4), "answers": None, "capacity": 10,
            "cache_shapes": {"h_0": [1, 16]}, "min_agreement": 0.9, "max_degradation": 0.01}
    result = check_generation(made, task)  # judged like any reduced-precision file, by its tokens
    assert result["prompts"] == 20 and 0.0 <= result["same_as_keras"] <= 1.0
    assert (result["verdict"] == "pass") == (result["agreement"]["verdict"] == "pass")
