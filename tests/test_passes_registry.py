"""Passes are found through one registry (issue 10, part 5): (pass type, engine) -> module:function;
pass modules do not import each other to dispatch, and every pass reads the same fine-tuning options."""

import ast
from pathlib import Path

import pytest

from dnnkit.passes.registry import PASSES, pass_function
from dnnkit.config.passes import ENGINES, FineTuneOptions, PassConfig, read_pass
from dnnkit.config.tables import TableReader

PASSES_DIR = Path(__file__).resolve().parents[1] / "dnnkit" / "passes"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_every_registered_pass_resolves_to_a_function():
    for (kind, engine), where in PASSES.items():
        options = read_pass(TableReader({"type": kind, **({"student": "s.toml"} if kind == "distill" else {}),
                                         **({"engine": engine} if kind != "distill" else {})}, "passes[0]", "r"))
        function = pass_function(options)
        assert f"{function.__module__}:{function.__name__}" == where
        assert isinstance(options.options, FineTuneOptions)


def test_pass_modules_do_not_import_each_other():
    modules = {"prune_pass": "dnnkit.passes.prune_pass", "tfmot_engine": "dnnkit.passes.tfmot_engine",
               "qat_pass": "dnnkit.passes.qat_pass", "distill": "dnnkit.passes.distill"}
    for name in modules:
        others = {m for n, m in modules.items() if n != name}
        assert not _imports(PASSES_DIR / f"{name}.py") & others, name


@pytest.mark.parametrize("kind, defaults", [("prune", (10, 1e-3, 32)), ("qat", (5, 1e-4, 32)),
                                            ("cluster", (5, 1e-4, 32)), ("distill", (30, 3e-3, 32))])
def test_one_fine_tuning_reader_with_per_pass_defaults(kind, defaults):
    extra = {"student": "s.toml"} if kind == "distill" else {}
    opts = read_pass(TableReader({"type": kind, **extra}, "passes[0]", "r")).options
    assert (opts.epochs, opts.learning_rate, opts.batch_size) == defaults
    opts = read_pass(TableReader({"type": kind, "epochs": 2, "learning_rate": 0.5, "batch_size": 8, **extra},
                                 "passes[0]", "r")).options
    assert (opts.epochs, opts.learning_rate, opts.batch_size) == (2, 0.5, 8)
    from dnnkit.errors import SpecError

    with pytest.raises(SpecError, match=r"r: passes\[0\]\.learning_rate: expected a number > 0, got 0"):
        read_pass(TableReader({"type": kind, "learning_rate": 0, **extra}, "passes[0]", "r"))


def test_an_unregistered_engine_is_a_clear_error():
    from dnnkit.errors import CompressionError
    from dnnkit.config.passes import DistillOptions

    assert "auto" in ENGINES
    with pytest.raises(CompressionError, match="'cluster' with engine 'native': expected one of prune/native"):
        pass_function(PassConfig("cluster", type("Options", (), {"engine": "native"})()))
    assert pass_function(PassConfig("distill", DistillOptions(student="s.toml"))).__name__ == "run_distill"


def test_selector_that_matches_is_accepted(trained_runs):
    from dnnkit.passes.registry import check_selectors
    from dnnkit.config.recipe import recipe_from_dict

    recipe = recipe_from_dict({"name": "r", "passes": [{"type": "prune", "layers": ["dense_*"], "types": ["Dense"]}],
                               "artifacts": [{"name": "a", "format": "onnx"}]})
    check_selectors(trained_runs["digits_mlp"].model, recipe.passes)  # no error
