"""The architecture's rules, checked on the code (every import, those inside functions too) and shown to
fail on a copy of the package that breaks them.

The contracts themselves are import-linter's (``[tool.importlinter]`` in pyproject.toml): stages import only
downward, formats and verification never import each other, no import circle at any depth. Beside them:
no module imports another's underscore name, a function imports dnnkit's own modules only where the module
imported would pull Keras (or, in the CLI, anything) into a light import, and each package's docstring says
what it may import, which its imports keep to.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from conftest import ROOT

PACKAGE = ROOT / "dnnkit"

# module -> why it imports dnnkit modules inside functions (anywhere else that is a violation)
LAZY_IMPORTS = {
    "dnnkit.cli": "each command imports what it runs when it runs: `dnnkit --help` imports argparse only",
    "dnnkit.cli.commands": "each command imports what it runs when it runs: `dnnkit --help` imports argparse only",
    "dnnkit.builders": "the builder modules define Keras models: importing them imports Keras",
    "dnnkit.builders.common": "dnnkit.builders.layers defines Keras layers",
    "dnnkit.passes.tfmot_engine": "dnnkit.passes.qat defines Keras layers",
    "dnnkit.sources.keras_file": "registering dnnkit's Keras classes imports Keras",
    "dnnkit.training.run": "dnnkit.training.keras_metrics defines a Keras metric",
    "dnnkit.jobs.generation": "dnnkit.builders.decoding defines a Keras model (a job imports Keras after its workers start)",
}
HEAVY = ("keras", "tensorflow", "tf_keras")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` (its pyproject.toml's contracts)."""
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command;"
                           "sys.exit(lint_imports_command())", "--no-cache", "--no-logo"],
                          cwd=root, capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin"},
                          timeout=120)


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def private_imports(package: Path = PACKAGE) -> list[str]:
    """``from dnnkit.X import _name`` and ``module._name`` on an imported dnnkit module, anywhere in the package."""
    found = []
    known = modules(package)
    for name, path in known.items():
        tree = ast.parse(path.read_text())
        aliases: dict[str, str] = {}  # local name -> dnnkit module it is bound to
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dnnkit"):
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        found.append(f"{name}:{node.lineno}: from {node.module} import {a.name}")
                    if f"{node.module}.{a.name}" in known:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("dnnkit") and a.asname:
                        aliases[a.asname] = a.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                found.append(f"{name}:{node.lineno}: {aliases[node.value.id]}.{node.attr}")
    return found


def function_level_imports(package: Path = PACKAGE) -> list[tuple[str, int, str]]:
    """``(module, line, imported module)`` for every import of a dnnkit module made inside a function."""
    found = []
    known = modules(package)
    for name, path in known.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and (sub.module or "").startswith("dnnkit"):
                    found.extend((name, sub.lineno, f"{sub.module}.{a.name}" if f"{sub.module}.{a.name}" in known
                                  else sub.module) for a in sub.names)
                elif isinstance(sub, ast.Import):
                    found.extend((name, sub.lineno, a.name) for a in sub.names if a.name.startswith("dnnkit"))
    return sorted(set(found))


def imports_heavy_at_top(path: Path) -> bool:
    """Whether a module imports Keras or TensorFlow at its top level."""
    for node in ast.parse(path.read_text()).body:
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n.split(".")[0] in HEAVY for n in names):
            return True
    return False


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("KEPT") == 3 and "BROKEN" not in result.stdout


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "dnnkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def _add(root: Path, module: str, line: str) -> None:
    path = root / (module.replace(".", "/") + ".py")
    path.write_text(path.read_text() + f"\n\ndef _added_by_the_test():\n    {line}\n")


@pytest.mark.parametrize("module, line, broken, named", [
    # a schema reading a stage's options (the circle issue 23 found: recipe -> optimization), inside a function
    ("dnnkit.config.recipe", "from dnnkit.optimization.candidates import CANDIDATES  # noqa: F401",
     "stages import only downward", "dnnkit.config.recipe -> dnnkit.optimization.candidates"),
    # a converter using the verifier
    ("dnnkit.formats.convert", "from dnnkit.verification.artifact import verify_artifact  # noqa: F401",
     "formats and verification never import each other", "dnnkit.formats.convert -> dnnkit.verification.artifact"),
    # two modules of one stage that import each other
    ("dnnkit.jobs.finish", "from dnnkit.jobs.package import with_packages  # noqa: F401",
     "no import circle", "- .finish -> .package"),
])
def test_the_contracts_fail_on_a_violating_import(tmp_path, module, line, broken, named):
    root = _copy(tmp_path)
    _add(root, module, line)
    result = lint_imports(root)
    assert result.returncode == 1, result.stdout
    report = " ".join(result.stdout.split())
    assert f"{broken}" in report and "BROKEN" in report
    assert named in result.stdout


def test_no_module_has_an_import_circle():
    # the same as import-linter's acyclic contract, said directly: the strongly connected modules of the graph
    graph = grimp.build_graph("dnnkit", cache_dir=None)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    sys.setrecursionlimit(10_000)
    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    assert not circles


def test_no_module_imports_another_modules_underscore_names(tmp_path):
    assert private_imports() == []
    root = _copy(tmp_path)
    _add(root, "dnnkit.jobs.run", "from dnnkit.jobs.export import _export_loaded  # noqa: F401")
    assert private_imports(root / "dnnkit") == [
        f"dnnkit.jobs.run:{len((root / 'dnnkit/jobs/run.py').read_text().splitlines())}: "
        "from dnnkit.jobs.export import _export_loaded"]


def test_function_level_imports_are_where_they_keep_keras_out():
    found = function_level_imports()
    assert {m for m, _, _ in found} <= set(LAZY_IMPORTS), [f for f in found if f[0] not in LAZY_IMPORTS]
    known = modules()
    for module, line, target in found:
        if module.startswith("dnnkit.cli"):
            continue
        assert imports_heavy_at_top(known[target]), f"{module}:{line} imports {target} lazily, which imports no Keras"
    # and so the light modules stay light: the jobs, the workers and the API import no Keras or TensorFlow
    code = ("import sys, dnnkit.api, dnnkit.jobs.run, dnnkit.jobs.optimize, dnnkit.jobs.package, dnnkit.workers.converter, "
            "dnnkit.workers.verifier; assert not {'keras', 'tensorflow'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def declared_imports(package: str) -> set[str]:
    """The ``dnnkit.X`` packages a package's docstring says it may import (its "May import:" paragraph)."""
    doc = ast.get_docstring(ast.parse(modules()[package].read_text())) or ""
    match = re.search(r"May import:(.*?)(?:\n\n|\Z)", doc, re.S)
    assert match, f"{package}'s docstring says nothing of what it may import"
    return set(re.findall(r":mod:`(dnnkit\.\w+)`", match.group(1)))


def test_each_package_says_what_it_may_import_and_keeps_to_it():
    graph = grimp.build_graph("dnnkit", cache_dir=None)
    stages = sorted(m for m in modules() if m.count(".") == 1 and (PACKAGE / m.split(".")[1]).is_dir())
    assert len(stages) >= 14
    for stage in stages:
        declared = declared_imports(stage)
        imported = {".".join(w.split(".")[:2]) for v in graph.find_descendants(stage) | {stage}
                    for w in graph.find_modules_directly_imported_by(v)}
        imported -= {stage, "dnnkit", "dnnkit.errors"}
        assert imported <= declared, f"{stage} imports {sorted(imported - declared)} beyond its docstring"


def test_no_module_is_large_and_no_package_is_flat():
    known = modules()
    sizes = {m: len(p.read_text().splitlines()) for m, p in known.items()}
    assert max(sizes.values()) <= 400, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    top = [m for m in known if m.count(".") == 1 and not (PACKAGE / m.split(".")[1]).is_dir()]
    assert sorted(top) == ["dnnkit.__main__", "dnnkit.api", "dnnkit.errors"]


# test files that test no one module: the architecture itself, and the examples/ scripts
NOT_ONE_MODULE = {"test_architecture.py", "test_examples.py", "test_readme.py"}


def test_each_test_file_is_named_for_the_module_it_tests():
    # tests/test_<package>_<module>[_<aspect>].py: the longest module name its name starts with
    flat = {m[len("dnnkit."):].replace(".", "_"): m for m in modules() if m != "dnnkit"}
    unnamed = []
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        if path.name in NOT_ONE_MODULE:
            continue
        stem = path.stem[len("test_"):]
        if not any(stem == f or stem.startswith(f + "_") for f in flat):
            unnamed.append(path.name)
    assert not unnamed, f"test files not named for a module of dnnkit: {unnamed}"
