"""A keras-hub GPT-2 causal LM a user brings (trained briefly on a learnable pattern) exports its step artifacts
like a spec's language model: every file generates Keras's tokens, and `dnnkit generate` gives what keras-hub's
own generate() gives."""

import keras
import numpy as np
import pytest

import dnnkit
from dnnkit.config.recipe import recipe_from_dict
from dnnkit.core.generation import DEFAULT_STEP_ARTIFACTS

keras_hub = pytest.importorskip("keras_hub")
pytestmark = pytest.mark.slow

VOCAB, LENGTH = 40, 16
ONE = {"name": "one", "artifacts": [{"name": "onnx_fp32", "format": "onnx"}]}


def counting(n, rng):
    """Rows that count up from a random start (mod the vocabulary, token 0 left for padding), of varied length."""
    start = rng.integers(1, VOCAB, (n, 1))
    ids = ((start + np.arange(LENGTH)) % (VOCAB - 1) + 1).astype("int32")
    mask = np.ones_like(ids)
    for i, size in enumerate(rng.integers(6, LENGTH + 1, n)):
        ids[i, size:], mask[i, size:] = 0, 0
    return ids, mask


def test_a_keras_hub_gpt2_exports_step_files_that_generate_as_keras_hub_does(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    backbone = keras_hub.models.GPT2Backbone(vocabulary_size=VOCAB, num_layers=2, num_heads=2, hidden_dim=32,
                                             intermediate_dim=64, max_sequence_length=32)
    model = keras_hub.models.GPT2CausalLM(backbone=backbone, preprocessor=None)
    ids, mask = counting(2000, rng)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True), sampler="greedy")
    model.fit({"token_ids": ids[:, :-1], "padding_mask": mask[:, :-1]}, ids[:, 1:], sample_weight=mask[:, 1:],
              epochs=4, batch_size=64, verbose=0)
    ids, mask = counting(1100, rng)
    out = tmp_path / "out"
    manifest = dnnkit.export(model, recipe_from_dict(ONE), out, data=({"token_ids": ids, "padding_mask": mask}, None))
    gen = manifest["generation"]
    assert gen["prompts"] >= 200 and gen["capacity"] == LENGTH and gen["keras_exact_match"] is None
    assert set(gen["artifacts"]) == set(DEFAULT_STEP_ARTIFACTS)
    for name, entry in gen["artifacts"].items():
        assert entry["status"] == "verified", (name, entry.get("failures"))
        if entry["precision"] == "fp32":
            assert entry["same_as_keras"] == 1.0 and entry["signature_parity"]["verdict"] == "pass"
    assert manifest["status"] == "verified", manifest.get("failures")
    # the step files continue a prompt as keras-hub's own jit-compiled generate() does
    for prompt in ([5, 6, 7], [30, 31, 32, 33, 34]):
        padded = np.zeros((1, LENGTH), np.int32)
        padded[0, :len(prompt)] = prompt
        hub = model.generate({"token_ids": padded, "padding_mask": padded > 0}, stop_token_ids=None)
        want = [int(t) for t in hub["token_ids"][0, len(prompt):]]
        for artifact in ("decoder_tflite_fp32", "decoder_onnx_fp32"):
            assert dnnkit.generate(out, prompt, artifact=artifact, max_new=len(want))["tokens"] == want
