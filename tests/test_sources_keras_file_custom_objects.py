"""`--custom-objects FILE.py`: models with custom layers export and verify with the option, and
without it give one line naming the missing class and the option (issue 9, part 3)."""

import json
import subprocess
import sys

from conftest import RECIPES, ROOT, cli, error_lines

LAYERS = '''
import keras


@keras.saving.register_keras_serializable(package="byo")
class Scale(keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
'''

MAKE = '''
import sys
import keras
sys.path.insert(0, sys.argv[1])
from mylayers import Scale
from dnnkit.data.load import load_data
from dnnkit.sources.target import spec_for_model
inp = keras.Input((64,), name="inputs")
h = keras.layers.Dense(32, activation="relu")(Scale(0.5)(inp))
model = keras.Model(inp, keras.layers.Dense(10, name="logits")(h))
ds = load_data(spec_for_model(model, "multiclass", "digits"))
model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(ds.x_train, ds.y_train, epochs=10, verbose=0)
model.save(sys.argv[2])
'''


def test_custom_layers_need_the_option_and_work_with_it(tmp_path):
    (tmp_path / "mylayers.py").write_text(LAYERS)
    model = tmp_path / "custom.keras"
    made = subprocess.run([sys.executable, "-c", MAKE, str(tmp_path), str(model)], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert made.returncode == 0, made.stderr[-2000:]
    args = ["export", str(model), "--recipe", str(RECIPES / "server-onnx.toml"), "--data", "digits"]

    without = cli(*args, "--out", str(tmp_path / "o1"))
    assert without.returncode == 2
    assert error_lines(without.stderr) == [
        f"dnnkit: error: model: {model} needs custom classes that are not registered here: byo>Scale; pass "
        "--custom-objects FILE.py, a Python file that defines and registers them (it runs code: only files you trust)"]
    assert not (tmp_path / "o1").exists()

    out = tmp_path / "o2"
    with_option = cli(*args, "--out", str(out), "--custom-objects", str(tmp_path / "mylayers.py"))
    assert with_option.returncode == 0, with_option.stdout[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["status"] for e in manifest["artifacts"]] == ["verified", "verified"]

    assert cli("verify", str(out)).returncode == 2  # the reference needs the class too
    again = cli("verify", str(out), "--custom-objects", str(tmp_path / "mylayers.py"))
    assert again.returncode == 0, again.stdout[-2000:]

    bad = cli(*args, "--out", str(tmp_path / "o3"), "--custom-objects", str(tmp_path / "nope.py"))
    assert bad.returncode == 2 and error_lines(bad.stderr) == [
        f"dnnkit: error: custom_objects: expected a Python file (.py) that defines the model's custom classes, "
        f"got {tmp_path / 'nope.py'}"]
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    failed = cli(*args, "--out", str(tmp_path / "o4"), "--custom-objects", str(broken))
    assert failed.returncode == 2
    assert error_lines(failed.stderr) == [f"dnnkit: error: custom_objects: importing {broken} failed: "
                                          "RuntimeError: boom"]
    assert not (tmp_path / "o3").exists() and not (tmp_path / "o4").exists()
