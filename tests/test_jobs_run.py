"""The README's main job: `dnnkit run` with no arguments, then `dnnkit verify` on its output; a recipe's layer
selectors checked before any data is loaded."""

import json

import pytest

from conftest import MODELS, cli
from dnnkit.cli import main


def test_run_without_arguments_then_verify(tmp_path):
    result = cli("run", cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = tmp_path / "runs" / "digits_cnn-all"
    for header in ("artifact", "size", "accuracy", "parity", "p50 ms", "status"):
        assert header in result.stdout
    assert "7 of 7 artifacts verified" in result.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["training"]["metrics"]["accuracy"] >= 0.95
    assert (out / "run" / "model.keras").is_file()
    again = cli("verify", str(out))
    assert again.returncode == 0, again.stdout + again.stderr[-2000:]
    assert "7 of 7 artifacts verified" in again.stdout


SELECTOR_CASES = {
    "layers_string": ('layers = "conv_*"', 'passes[0].layers: expected a list of name patterns, '
                                           'e.g. ["conv_*", "dense_1"] (a bare string is not a list), got "conv_*"'),
    "unknown_type": ('types = ["dense"]', "passes[0].types: expected prunable layer classes, one of"),
    "no_match": ('layers = ["conv_*"]', "passes[0].layers: expected patterns that match layers of the model "
                                        "(inputs, dense_0"),
}


@pytest.mark.parametrize("case", sorted(SELECTOR_CASES))
def test_recipe_selectors_are_checked_before_any_data(case, tmp_path, capsys, monkeypatch):
    line, fragment = SELECTOR_CASES[case]
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'name = "r"\n[[passes]]\ntype = "prune"\n{line}\n[[artifacts]]\nname = "a"\nformat = "onnx"\n')

    def no_data(*a, **k):
        raise AssertionError("data was loaded before the selectors were checked")

    monkeypatch.setattr("dnnkit.jobs.run.load_data", no_data)
    code = main(["run", str(MODELS / "digits_mlp.toml"), "--recipe", str(recipe), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and fragment in err[0], err
    assert "got 'conv_*', which matches none" in err[0] or case != "no_match"
    assert "(unknown: 'dense')" in err[0] or case != "unknown_type"
    assert not (tmp_path / "o").exists()
