"""od/atomic.py: outputs appear whole or not at all, a failed write leaves nothing, leftovers of
killed processes are removed, and a folder holding a user's files keeps them."""
import json
import os
import subprocess
import sys

import pytest

from od import atomic


def test_file_appears_whole_and_failure_leaves_nothing(tmp_path):
    p = atomic.write_json(tmp_path / "a" / "x.json", {"k": 1})
    assert json.loads(p.read_text()) == {"k": 1}
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(tmp_path / "a" / "y.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert not (tmp_path / "a" / "y.bin").exists()
    assert sorted(q.name for q in (tmp_path / "a").iterdir()) == ["x.json"]


def test_folder_replaced_only_when_complete(tmp_path):
    out = tmp_path / "out"
    with atomic.atomic_path(out) as tmp:
        tmp.mkdir()
        (tmp / "one.txt").write_text("1")
    assert (out / "one.txt").read_text() == "1"
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_path(out) as tmp:
            tmp.mkdir()
            (tmp / "one.txt").write_text("2")
            raise KeyboardInterrupt
    assert (out / "one.txt").read_text() == "1"          # the old output stays intact
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_leftovers_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f".out.tmp-{dead}").mkdir()
    (tmp_path / f".x.json.old-{dead}").write_text("{}")
    mine = tmp_path / f".keep.tmp-{os.getpid()}"   # a live process: kept
    mine.write_text("")
    (tmp_path / "user.txt").write_text("mine")
    removed = {p.name for p in atomic.clean_leftovers(tmp_path)}
    assert removed == {f".out.tmp-{dead}", f".x.json.old-{dead}"}
    assert mine.exists() and (tmp_path / "user.txt").read_text() == "mine"
