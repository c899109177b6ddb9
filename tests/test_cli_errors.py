"""Bad input: one line on stderr naming the field, value and expectation; exit 2; no traceback."""

import numpy as np
import pytest

from conftest import MODELS, cli, error_lines
from dnnkit.cli import main

GOOD = (MODELS / "digits_mlp.toml").read_text()


def spec_text(**replace):
    text = GOOD
    for old, new in replace.items():
        text = text.replace(old.replace("__", " = ").replace("_Q_", '"'), new)
    return text


# (spec text or None, extra files, CLI args, expected message fragment)
CASES = {
    "unknown_top_key": (GOOD + "\nflavour = 3\n", {}, "flavour: unknown key"),
    "unknown_model_key": (GOOD.replace("dropout = 0.1", "dropout = 0.1\nfliters = [3]"), {},
                          "model.fliters: unknown key"),
    "wrong_type": (GOOD.replace("epochs = 30", 'epochs = "thirty"'), {},
                   'train.epochs: expected a positive integer, got "thirty"'),
    "negative_size": (GOOD.replace("units = [128, 64]", "units = [128, -3]"), {},
                      "model.units: expected a non-empty list of positive integers, got [128, -3]"),
    "unknown_family": (GOOD.replace('family = "mlp"', 'family = "resnet"'), {},
                       "model.family: expected one of 'mlp', 'cnn', 'rnn', 'transformer', got \"resnet\""),
    "unknown_activation": (GOOD.replace('activation = "relu"', 'activation = "relux"'), {},
                           'model.activation: expected one of'),
    "unknown_optimizer": (GOOD.replace('optimizer = "adam"', 'optimizer = "adagrad"'), {},
                          'train.optimizer: expected one of \'sgd\', \'adam\', \'adamw\', \'rmsprop\', got "adagrad"'),
    "dropout_out_of_range": (GOOD.replace("dropout = 0.1", "dropout = 1.5"), {},
                             "model.dropout: expected a number >= 0 and < 1, got 1.5"),
    "missing_name": (GOOD.replace('name = "digits_mlp"', ""), {}, "name: required field is missing"),
    "bad_toml": (GOOD + "\n[[[", {}, "not valid TOML"),
    "loss_mismatch": (GOOD.replace("[train]", '[train]\nloss = "binary_crossentropy"'), {},
                      "train.loss: expected a loss for a multiclass head"),
    "metric_for_wrong_task": (GOOD.replace('metrics = ["accuracy", "f1"]', 'metrics = ["rmse"]'), {},
                              "train.metrics: expected each one of"),
    "input_shape_mismatch": (GOOD.replace("input_shape = [64]", "input_shape = [32]"), {},
                             "data.layout: digits cannot be laid out for model.input_shape [32]"),
    "cnn_rank": (GOOD.replace('family = "mlp"', 'family = "cnn"').replace("units = [128, 64]\n", ""), {},
                 "model.input_shape: expected 3 dimensions for a 2d convolution"),
    "missing_data_file": (GOOD.replace('source = "digits"', 'source = "nowhere.npz"').replace(
        'layout = "flat"\n', ""), {}, "data.source: file not found: nowhere.npz"),
    "csv_without_label_column": (GOOD.replace('source = "digits"', 'source = "d.csv"').replace(
        'layout = "flat"\n', ""), {"d.csv": "a,b\n1,2\n"}, "data.label_column: required field is missing"),
    "label_column_absent": (GOOD.replace('source = "digits"', 'source = "d.csv"\nlabel_column = "y"')
                            .replace('layout = "flat"\n', ""), {"d.csv": "a,b\n1,2\n3,4\n"},
                            "column 'y' not found; columns are ['a', 'b']"),
    "npz_shape_mismatch": (GOOD.replace('source = "digits"', 'source = "d.npz"').replace(
        'layout = "flat"\n', ""), {"d.npz": ("x_train", (40, 8, 8))},
        "x_train: per-sample shape [8, 8] does not match model.input_shape [64]"),
    "units_beyond_any_machine": (GOOD.replace("units = [128, 64]", "units = [100000000000, 64]"), {},
                                 "model.units: expected each at most 65536"),
    "npz_truncated": (GOOD.replace('source = "digits"', 'source = "d.npz"').replace('layout = "flat"\n', ""),
                      {"d.npz": "truncated"}, "d.npz: not a readable .npz file (BadZipFile"),
    "npz_missing_array": (GOOD.replace('source = "digits"', 'source = "d.npz"').replace(
        'layout = "flat"\n', ""), {"d.npz": ("x_only", (40, 64))}, "array 'x_train' is missing"),
}


def _write(tmp_path, text, files):
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    for name, content in files.items():
        if content == "truncated":  # half of a valid .npz, as an interrupted copy leaves it
            np.savez(tmp_path / name, x_train=np.zeros((40, 64), np.float32), y_train=np.arange(40) % 10)
            blob = (tmp_path / name).read_bytes()
            (tmp_path / name).write_bytes(blob[:len(blob) // 2])
        elif isinstance(content, tuple):
            key, shape = content
            arrays = {key: np.zeros(shape, np.float32)}
            if key == "x_train":
                arrays["y_train"] = np.arange(shape[0]) % 10
            np.savez(tmp_path / name, **arrays)
        else:
            (tmp_path / name).write_text(content)
    return spec


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_spec_or_data_is_one_line_exit_2(case, tmp_path, capsys):
    text, files, fragment = CASES[case]
    spec = _write(tmp_path, text, files)
    code = main(["train", str(spec), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("dnnkit: error: "), err
    assert fragment in err[0]
    assert not (tmp_path / "run").exists(), "nothing may be written for bad input"


def test_missing_spec_file(capsys):
    from dnnkit.config.shipped import MODELS

    shipped = ", ".join(sorted(p.stem for p in MODELS.glob("*.toml")))
    assert main(["build", "models/nope.toml"]) == 2
    assert capsys.readouterr().err.strip() == ("dnnkit: error: models/nope.toml: spec file not found; expected a file "
                                               f"or one of the shipped names: {shipped}")


def test_bad_epochs_flag_is_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", str(MODELS / "digits_mlp.toml"), "--out", "x", "--epochs", "-1"])
    assert exc.value.code == 2
    assert "expected a positive integer, got '-1'" in capsys.readouterr().err


def test_evaluate_missing_model(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "none.keras"), "--data", "digits"]) == 2
    assert "model: file not found" in capsys.readouterr().err


def test_evaluate_not_a_keras_file(tmp_path, capsys):
    bogus = tmp_path / "m.keras"
    bogus.write_text("not a zip")
    assert main(["evaluate", str(bogus), "--data", "digits"]) == 2
    assert "expected a Keras 3 .keras archive" in capsys.readouterr().err


def test_evaluate_not_a_run_dir(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "is not a run directory" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["unknown_family", "npz_shape_mismatch"])
def test_errors_from_a_real_process_have_no_traceback(case, tmp_path):
    text, files, fragment = CASES[case]
    spec = _write(tmp_path, text, files)
    result = cli("train", str(spec), "--out", str(tmp_path / "run"))
    lines = error_lines(result.stderr)
    assert result.returncode == 2
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in result.stderr


def test_main_leaves_no_progress_printer_behind(tmp_path, capsys):
    # main() from Python (a notebook, a test) must not make later API calls print per-item lines
    from dnnkit.child import items

    before = items.PROGRESS
    assert main(["generate", str(tmp_path), "--prompt", "1"]) == 2  # a command with per-item progress lines
    assert items.PROGRESS is before
    assert "holds no manifest.json" in capsys.readouterr().err
