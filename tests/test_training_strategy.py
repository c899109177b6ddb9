"""tf.distribute: MirroredStrategy on two logical CPUs, MultiWorkerMirroredStrategy with two
worker processes on 127.0.0.1, and a SIGKILLed run resuming from BackupAndRestore."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import MODELS, ROOT, cli


def test_mirrored_two_logical_cpus_trains_cnn(tmp_path):
    out = tmp_path / "run"
    result = cli("train", str(MODELS / "digits_cnn.toml"), "--out", str(out), "--strategy",
                 "mirrored", "--cpu-devices", "2", "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads((out / "run.json").read_text())
    assert info["strategy"] == "mirrored" and info["replicas"] == 2
    assert info["global_batch_size"] == 64  # 32 per replica
    assert json.loads((out / "metrics.json").read_text())["accuracy"] >= 0.93


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_two_processes_train_mlp(tmp_path):
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    out = tmp_path / "run"
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
               "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dnnkit", "train", str(MODELS / "digits_mlp.toml"), "--out", str(out),
             "--quiet"], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=400)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0], outputs[0][-2000:] + outputs[1][-2000:]
    info = json.loads((out / "run.json").read_text())
    assert info["strategy"] == "multi_worker" and info["replicas"] == 2  # chosen by `auto`
    assert json.loads((out / "metrics.json").read_text())["accuracy"] >= 0.90
    assert (out / ".worker-1" / "run.json").is_file(), "the non-chief worker writes apart"


@pytest.mark.slow
def test_killed_run_resumes_from_backup(tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "dnnkit", "train", str(MODELS / "digits_cnn.toml"), "--out", str(out),
            "--epochs", "40", "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    meta = out / "backup" / "training_metadata.json"
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if json.loads(meta.read_text())["epoch"] >= 3:
                    break
            except (OSError, ValueError, KeyError):
                pass
            assert proc.poll() is None, "training ended before it could be killed"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    saved = json.loads(meta.read_text())["epoch"]
    assert 3 <= saved < 40
    assert not (out / "model.keras").exists(), "a killed run leaves no finished model"

    result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"resumed from epoch {saved}" in result.stdout
    info = json.loads((out / "run.json").read_text())
    assert info["resumed_from_epoch"] == saved
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == list(range(40)), "history spans both processes"
    assert json.loads((out / "metrics.json").read_text())["accuracy"] >= 0.95
