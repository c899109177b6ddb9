"""`import dnnkit` and `dnnkit --help` stay light: no TensorFlow, no Keras."""

import subprocess
import sys

from conftest import ROOT, cli


def test_import_does_not_load_tensorflow():
    code = "import dnnkit, sys; assert 'tensorflow' not in sys.modules; assert 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_help_does_not_load_tensorflow():
    code = ("import sys, dnnkit.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)


def test_every_subcommand_has_help():
    for sub in ("build", "train", "evaluate"):
        result = cli(sub, "--help")
        assert result.returncode == 0, result.stderr
        assert f"usage: dnnkit {sub}" in result.stdout
