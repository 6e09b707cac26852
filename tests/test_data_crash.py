"""Crash safety of `od data convert`: kill -9 mid-run leaves no worker process, no change to the
input, and a rerun succeeds. The dataset is generated at test time (one noise PNG copied N times:
each copy is decoded and re-encoded, which keeps two workers busy for several seconds)."""
from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from od.cli import main

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="process checks read /proc (Linux)")


def _dataset(root: Path, n: int = 300, side: int = 384) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    images, ann = root / "images", root / "ann"
    images.mkdir(parents=True)
    ann.mkdir()
    for k in range(n):
        (images / f"im{k:04d}.png").write_bytes(buf.getvalue())
        (ann / f"im{k:04d}.xml").write_text(
            f"<annotation><filename>im{k:04d}.png</filename><size><width>{side}</width>"
            f"<height>{side}</height></size><object><name>{'ab'[k % 2]}</name><bndbox>"
            "<xmin>10</xmin><ymin>10</ymin><xmax>90</xmax><ymax>90</ymax></bndbox></object>"
            "</annotation>")
    return ann, images


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        h.update(str(f.relative_to(folder)).encode())
        if f.is_file():
            h.update(f.read_bytes())
    return h.hexdigest()


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of a live process, None if gone (a zombie counts as gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = text.rsplit(")", 1)[1].split()[:2]
    return (None if state == "Z" else (int(ppid), state))


def _descendants(pid: int) -> list[int]:
    """Live processes below ``pid``: its children (fork server, resource tracker) and theirs
    (the workers, forked by the fork server)."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _stat(int(d.name))
            if st:
                parents.setdefault(st[0], []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out.extend(kids)
        todo.extend(kids)
    return out


def test_kill_9_of_convert_leaves_no_worker_and_no_damage(tmp_path):
    ann, images = _dataset(tmp_path / "src")
    before = _digest(tmp_path / "src")
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "od.cli", "data", "convert", "--annotations", str(ann),
           "--images", str(images), "--out", str(out), "--workers", "2", "--shard-mb", "1",
           "--split", "1,0,0"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 120
        tmp = out.parent / f".{out.name}.tmp-{proc.pid}"
        # wait until both workers (and the fork server, resource tracker) run and the first
        # shard is being written
        while time.monotonic() < deadline and proc.poll() is None:
            seen.update(_descendants(proc.pid))
            if len(seen) >= 4 and tmp.is_dir() and any(tmp.iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None, "convert ended before it could be killed: make the data bigger"
        assert len(seen) >= 2, f"expected worker processes, saw {seen}"
        seen.update(_descendants(proc.pid))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(_stat(p) for p in seen):
            time.sleep(0.1)
        left = [p for p in seen if _stat(p)]
        assert not left, f"processes of the killed convert still run: {left}"
    finally:
        proc.kill()
        proc.wait()
        for p in seen:  # only processes this test started
            if _stat(p):
                os.kill(p, signal.SIGKILL)
    assert _digest(tmp_path / "src") == before  # the input is untouched
    assert not out.exists()  # nothing under the final name until a run completes
    # the rerun succeeds (in-process, one worker: quick) and removes the dead run's hidden
    # .out.tmp-PID folder (od.atomic's cleanup of leftovers whose process is gone)
    assert main(["data", "convert", "--annotations", str(ann), "--images", str(images),
                 "--out", str(out), "--workers", "1", "--split", "1,0,0"]) == 0
    assert sorted(p.name for p in out.glob("train-*.tfrecord"))
    assert not tmp.exists(), f"{tmp} (left by the killed run) was not cleaned by the rerun"
    assert not [p.name for p in out.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert _digest(tmp_path / "src") == before
