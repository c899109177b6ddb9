"""One writer per output folder, and a command's results published all at once (dnnkit.core.staging)."""

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dnnkit.core.staging import FolderError, folder_lock, owned_staging, publish, staged


def _tree(folder):
    return sorted((str(p.relative_to(folder)), p.read_bytes() if p.is_file() else None)
                  for p in folder.rglob("*"))


def test_a_block_that_raises_publishes_nothing_and_leaves_the_previous_folder(tmp_path):
    out = tmp_path / "o"
    with staged(out, "--out", keep=False) as work:
        (work / "manifest.json").write_text("first")
        (work / "artifacts").mkdir()
        (work / "artifacts" / "a.tflite").write_bytes(b"one")
        assert not out.exists()  # nothing is visible before the block ends
    before = _tree(out)
    with pytest.raises(RuntimeError):
        with staged(out, "--out", keep=False) as work:
            (work / "manifest.json").write_text("second")
            (work / "artifacts").mkdir()
            (work / "artifacts" / "b.onnx").write_bytes(b"two")
            raise RuntimeError("killed halfway")
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no staging area or lock left


def test_a_new_folder_replaces_the_old_one_whole(tmp_path):
    out = tmp_path / "o"
    with staged(out, "--out", keep=False) as work:
        (work / "old.onnx").write_bytes(b"old")
    with staged(out, "--out", keep=False) as work:
        (work / "new.tflite").write_bytes(b"new")
    assert [p.name for p in out.iterdir()] == ["new.tflite"]  # the earlier export's file did not survive


def test_an_update_starts_from_a_copy_and_never_touches_the_original_until_published(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "manifest.json").write_text("v1")
    (out / "big.bin").write_bytes(b"x" * 1000)
    with pytest.raises(KeyboardInterrupt):
        with staged(out, "out_dir", keep=True) as work:
            assert (work / "big.bin").read_bytes() == b"x" * 1000
            tmp = work / "manifest.json.tmp"
            tmp.write_text("v2")
            os.replace(tmp, work / "manifest.json")  # dnnkit's writes replace files (atomic renames)
            raise KeyboardInterrupt
    assert (out / "manifest.json").read_text() == "v1"
    with staged(out, "out_dir", keep=True) as work:
        tmp = work / "manifest.json.tmp"
        tmp.write_text("v2")
        os.replace(tmp, work / "manifest.json")
    assert (out / "manifest.json").read_text() == "v2" and (out / "big.bin").stat().st_size == 1000


def test_nested_calls_write_into_the_outer_staged_folder(tmp_path):
    out = tmp_path / "o"
    with staged(out, "--out", keep=False) as work:
        assert owned_staging(out / "passes") == work / "passes"
        with staged(out / "passes", "--out", keep=False) as inner:
            assert inner == work / "passes"
        with staged(work, "--out", keep=False) as again:
            assert again == work
    assert owned_staging(out) is None


def test_a_killed_commands_staging_is_cleared_except_what_it_carries(tmp_path):
    out = tmp_path / "o"
    area = tmp_path / ".o.dnnkit-staging"
    (area / "o" / "run").mkdir(parents=True)
    (area / "o" / "run" / "backup").write_text("epoch 3")
    (area / "o" / "artifacts").mkdir()
    (area / "o" / "artifacts" / "half.tflite").write_bytes(b"half")
    with staged(out, "--out", keep=False, carry=("run",)) as work:
        assert (work / "run" / "backup").read_text() == "epoch 3"
        assert not (work / "artifacts").exists()
    assert not area.exists()


def test_publish_swaps_in_one_step(tmp_path):
    final, work = tmp_path / "o", tmp_path / "w"
    final.mkdir()
    (final / "old").write_text("old")
    work.mkdir()
    (work / "new").write_text("new")
    publish(work, final)
    assert [p.name for p in final.iterdir()] == ["new"]


HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from dnnkit.core.staging import folder_lock
    with folder_lock(Path(sys.argv[1]), "--out"):
        print("held", flush=True)
        time.sleep(60)
""")


def hold_lock(out):
    """A process holding ``out``'s lock (until killed)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_is_refused_with_a_line_naming_the_holder(tmp_path):
    out = tmp_path / "o"
    holder = hold_lock(out)
    try:
        with pytest.raises(FolderError) as err:
            with staged(out, "--out", keep=False):
                pass
        assert f"pid {holder.pid}" in str(err.value) and "being written by" in str(err.value)
        assert str(err.value).startswith("--out: ")
    finally:
        holder.kill()
        holder.wait()
    # the operating system released the killed holder's lock
    begin = time.monotonic()
    with folder_lock(out, "--out"):
        assert time.monotonic() - begin < 5


@pytest.mark.parametrize("case", ["file", "unwritable"])
def test_a_folder_that_cannot_be_written_is_refused_before_anything_is_staged(tmp_path, case):
    if case == "file":
        out = tmp_path / "notes.txt"
        out.write_text("mine")
        expected = "is a file"
    else:
        out = tmp_path / "ro" / "o"
        (tmp_path / "ro").mkdir()
        os.chmod(tmp_path / "ro", 0o500)
        if os.access(tmp_path / "ro", os.W_OK):  # root ignores permissions: procfs refuses everyone
            out = Path("/proc/dnnkit-out")
        expected = "refuses new entries"
    try:
        with pytest.raises(FolderError, match=expected):
            with staged(out, "--out", keep=False):
                pass
    finally:
        if (tmp_path / "ro").exists():
            os.chmod(tmp_path / "ro", 0o700)
    assert not (out.parent / f".{out.name}.dnnkit-staging").exists()
