"""The shipped encoder-decoder (addition as text, an LSTM with attention) trained, exported and generating token by
token through each step artifact in its runtime: `encode` once, then the decoder from its start token."""

import json
import subprocess
import sys

import pytest

import dnnkit
from conftest import ROOT, run_spec
from dnnkit.cli import main
from dnnkit.core.generation import DEFAULT_STEP_ARTIFACTS
from dnnkit.errors import DataError

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def addition(tmp_path_factory):
    base = tmp_path_factory.mktemp("addition")
    run_spec(base, "addition_lstm", "onnx_fp32")
    return base / "out", json.loads((base / "out" / "manifest.json").read_text())


def test_addition_generates_keras_tokens_through_every_step_artifact(addition):
    out, manifest = addition
    assert manifest["reference"]["metrics"]["exact_match"] >= 0.9  # the spec's stated floor (teacher-forced)
    gen = manifest["generation"]
    assert gen["keras_exact_match"] >= 0.9 and gen["prompts"] >= 200 and gen["source_steps"] == 5
    assert gen["vocabulary"][gen["decoder_start"]] == "<bos>" and gen["vocabulary"][gen["eos"]] == "<eos>"
    assert set(gen["artifacts"]) == set(DEFAULT_STEP_ARTIFACTS) and gen["keras_step_same_as_full"] == 1.0
    for name, entry in gen["artifacts"].items():
        assert entry["status"] == "verified", (name, entry.get("failures"))
        if entry["precision"] == "fp32":
            assert entry["same_as_keras"] == 1.0 and entry["signature_parity"]["verdict"] == "pass"
        if entry["format"] == "onnx":  # the encoder beside the decoder's step, both recorded
            assert entry["encoder_path"].endswith(".onnx") and (out / entry["encoder_path"]).exists()
            assert len(entry["encoder_sha256"]) == 64
        if entry["format"] == "tflite":
            assert not {"WHILE", "UNIDIRECTIONAL_SEQUENCE_LSTM"} & set(entry["ops"]) and not entry["flex_ops"]


def test_generate_reads_a_sum_and_answers_as_keras_does(addition, capsys):
    out, manifest = addition
    gen = manifest["generation"]
    for sample in gen["sample"][:3]:
        source = "".join(gen["vocabulary"][t] for t in sample["prompt"][:gen["source_steps"]] if t != gen["pad"])
        answer = "".join(gen["vocabulary"][t] for t in sample["keras"] if t != gen["eos"])
        assert main(["generate", str(out), "--text", source, "--artifact", "decoder_onnx_fp32"]) == 0
        assert capsys.readouterr().out.splitlines()[0] == f"{source} -> {answer}"
        assert dnnkit.generate(out, text=source)["tokens"] == sample["keras"]
    with pytest.raises(DataError, match=r"prompt: 6 source tokens, expected at most 5 \(the encoder's source steps\)"):
        dnnkit.generate(out, text="123+45")
    for example in ("generate_tflite.py", "generate_onnx.py"):
        run = subprocess.run([sys.executable, str(ROOT / "examples" / example), str(out), "--text", source],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip().splitlines()[-1] == f"{source} -> {answer} (tokens {sample['keras']})"
