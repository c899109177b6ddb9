"""The shipped recipes and specs: inside the package, named from any folder, listed by ``dnnkit recipes``."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT, cli, error_lines


def test_recipes_and_specs_are_named_from_any_folder(tmp_path, monkeypatch):
    from dnnkit.config.model import load_spec
    from dnnkit.config.recipe import load_recipe

    monkeypatch.chdir(tmp_path)  # no export/ or models/ here
    assert load_recipe("mobile").name == "mobile"
    assert [a.name for a in load_recipe("server-onnx").artifacts] == ["onnx_fp32", "onnx_int8"]
    assert load_spec("digits_mlp").name == "digits_mlp"
    student = next(p for p in load_recipe("distill").passes if p.type == "distill").options.student
    assert str(student).endswith("digits_cnn_small.toml")


def test_a_name_that_is_neither_a_file_nor_shipped_lists_the_shipped_ones(tmp_path, monkeypatch):
    from dnnkit.config.recipe import load_recipe
    from dnnkit.config.recipe import RecipeError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(RecipeError) as err:
        load_recipe("mobil")
    message = str(err.value)
    assert "mobil" in message and "mobile" in message and "edge-int8" in message and "\n" not in message


def test_dnnkit_recipes_lists_every_shipped_recipe_with_what_it_makes(tmp_path):
    result = cli("recipes", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    shipped = sorted(p.stem for p in (ROOT / "dnnkit" / "recipes").glob("*.toml"))
    assert len(shipped) >= 9
    listed = [line.split()[0] for line in result.stdout.splitlines()[:-1]]
    assert listed == shipped
    assert any(line.startswith("mobile ") and "TFLite" in line for line in result.stdout.splitlines())
    assert not error_lines(result.stderr)


def test_the_built_wheel_carries_the_recipes_and_specs(tmp_path):
    source = tmp_path / "src"
    shutil.copytree(ROOT / "dnnkit", source / "dnnkit", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True)
    names = zipfile.ZipFile(next((tmp_path / "wheel").glob("*.whl"))).namelist()
    for folder in ("recipes", "models"):
        expected = {f"dnnkit/{folder}/{p.name}" for p in (ROOT / "dnnkit" / folder).glob("*.toml")}
        assert expected and expected <= set(names), sorted(expected - set(names))
