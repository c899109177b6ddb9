"""`dnnkit generate` and `dnnkit.generate`: a GRU language model trained from its shipped spec, exported, and
driven token by token through each verified step artifact in its own runtime (h state passed in and out)."""

import json
import subprocess
import sys

import numpy as np
import pytest

import dnnkit
from conftest import ROOT, cli, error_lines, run_spec
from dnnkit.cli import main
from dnnkit.core.generation import DEFAULT_STEP_ARTIFACTS
from dnnkit.errors import DataError, ModelLoadError

pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def gru_lm(tmp_path_factory):
    base = tmp_path_factory.mktemp("gru_lm")
    return base / "out", run_spec(base, "reverse_gru_lm").stdout


def test_every_step_artifact_of_a_gru_lm_generates_keras_tokens(gru_lm):
    out, stdout = gru_lm
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["reference"]["metrics"]["exact_match"] >= 0.9  # the spec's stated floor (teacher-forced)
    gen = manifest["generation"]
    assert gen["prompts"] >= 200 and gen["keras_exact_match"] >= 0.9 and gen["state"] == {"h_0": [1, 128]}
    assert gen["vocabulary"][gen["eos"]] == "<eos>" and set(gen["artifacts"]) == set(DEFAULT_STEP_ARTIFACTS)
    assert gen["keras_step_same_as_full"] == 1.0  # in Keras, stepping with the state = recomputing the prefix
    for name, entry in gen["artifacts"].items():
        assert entry["status"] == "verified", (name, entry.get("failures"))
        assert (out / entry["path"]).exists() and len(entry["sha256"]) == 64
        if entry["precision"] == "fp32":
            assert entry["same_as_keras"] == 1.0  # every token of every held-out prompt
            parity = entry["signature_parity"]  # prefill and decode logits against the Keras step's
            assert parity["verdict"] == "pass" and parity["max_diff"] <= parity["limit"] and parity["prompts"] == 8
        else:  # judged against Keras at 95 % confidence (agreement and exact-match drop)
            assert entry["same_as_keras"] >= 0.9 and entry["agreement"]["verdict"] == "pass"
        assert not {"WHILE", "Loop", "Scan"} & set(entry["ops"]) and not entry["flex_ops"]
    assert "decoder_onnx_fp32: 1.0000 of sequences as Keras's" in stdout
    page = (out / "report.html").read_text()
    assert "id='generation'" in page and page.count("<td>decoder_") >= len(DEFAULT_STEP_ARTIFACTS)
    sample = gen["sample"][0]
    shown = "".join(gen["vocabulary"][t] for t in sample["prompt"])
    assert f"<td>{shown}</td>" in page.replace("&lt;", "<").replace("&gt;", ">")


def samples(out):
    """The manifest's sample prompts with the tokens Keras generated for them (what every fp32 file must give)."""
    gen = json.loads((out / "manifest.json").read_text())["generation"]
    text = lambda tokens: "".join(gen["vocabulary"][t] for t in tokens if t != gen["eos"])  # noqa: E731
    return [(s["prompt"], s["keras"], text(s["prompt"]), text(s["keras"])) for s in gen["sample"]]


def test_generate_from_the_command_line_and_from_python(gru_lm, capsys):
    out, _ = gru_lm
    (prompt, keras_tokens, prompt_text, answer), (prompt2, keras2, _, answer2) = samples(out)[:2]
    assert main(["generate", str(out), "--text", prompt_text]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{prompt_text} -> {answer}"
    ids = " ".join(map(str, prompt))
    assert main(["generate", str(out), "--prompt", ids, "--artifact", "decoder_onnx_fp32", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tokens"] == keras_tokens and result["text"] == answer and result["format"] == "onnx"
    python = dnnkit.generate(out, np.array(prompt2, np.int32), artifact="decoder_saved_model")
    assert python["tokens"] == keras2 and python["text"] == answer2 and python["format"] == "saved_model"
    assert dnnkit.generate(out, prompt2, max_new=2)["tokens"] == keras2[:2]


@pytest.mark.parametrize("args, message", [
    (["--text", "3141592653589793="], "prompt: 17 tokens, expected at most 16 (the cache's capacity)"),
    (["--text", "31=", "--max-new", "15"], "max_new: 15 tokens after a prompt of 3 overflow the cache's capacity"),
    (["--prompt", "4 13"], "prompt: token id 13 is outside the vocabulary, expected 0 .. 12"),
    (["--prompt", "4 2.5"], "prompt: expected integer token ids, got '2.5'"),
    (["--text", "31=", "--artifact", "tflite_fp32"], "artifact: 'tflite_fp32' is no step artifact of this folder"),
])
def test_bad_generate_input_is_one_line_exit_2(gru_lm, capsys, args, message):
    out, _ = gru_lm
    assert main(["generate", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_process_sees_exit_2_and_no_traceback_and_python_sees_data_errors(gru_lm, tmp_path):
    out, _ = gru_lm
    result = cli("generate", str(out), "--prompt", "1 2 99")
    lines = error_lines(result.stderr)
    assert result.returncode == 2 and len(lines) == 1 and "outside the vocabulary" in lines[0], result.stderr
    with pytest.raises(DataError, match="prompt: expected integer token ids, got dtype float32"):
        dnnkit.generate(out, np.array([1.0, 2.0], np.float32))
    with pytest.raises(DataError, match="holds no manifest.json, expected a folder written by dnnkit run or export"):
        dnnkit.generate(ROOT / "tests", [1])
    (tmp_path / "classifier").mkdir()
    (tmp_path / "classifier" / "manifest.json").write_text('{"status": "verified", "artifacts": []}')
    with pytest.raises(DataError, match="holds no generation artifacts, expected the export of a causal_lm or seq2seq model"):
        dnnkit.generate(tmp_path / "classifier", [1])
    # a step file changed since its check is refused, not run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    path = copy / "artifacts" / "generation" / "decoder_fp32.tflite"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="changed since it was verified"):
        dnnkit.generate(copy, [4, 12], artifact="decoder_tflite_fp32")


def test_the_examples_generate_with_the_gru_state_using_only_their_runtime(gru_lm):
    out, _ = gru_lm
    _, keras_tokens, prompt_text, answer = samples(out)[0]
    for example in ("generate_tflite.py", "generate_onnx.py"):
        run = subprocess.run([sys.executable, str(ROOT / "examples" / example), str(out), "--text", prompt_text],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-2000:]
        assert run.stdout.strip().splitlines()[-1] == f"{prompt_text} -> {answer} (tokens {keras_tokens})"


def test_verify_checks_the_step_files_again_and_fails_a_changed_one(gru_lm, tmp_path):
    import shutil

    out, _ = gru_lm
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    again = cli("verify", str(copy))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["status"] == "verified" and "verified_again" in manifest
    assert all(e["status"] == "verified" and e["prompts"] >= 200 for e in manifest["generation"]["artifacts"].values())
    path = copy / "artifacts" / "generation" / "decoder_step.onnx"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    failed = cli("verify", str(copy))
    assert failed.returncode == 1
    entry = json.loads((copy / "manifest.json").read_text())["generation"]["artifacts"]["decoder_onnx_fp32"]
    assert entry["status"] == "failed" and "changed since export" in entry["failures"][0]
    assert "decoder_onnx_fp32" in failed.stdout
