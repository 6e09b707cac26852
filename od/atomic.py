"""Atomic outputs: a file or folder appears under its final name only once it is complete.

Everything `od` writes (TFRecord shards, label maps, JSON reports, exports, downloads) goes through
these helpers, so an interrupted run never leaves a half-written output that looks whole: partial
work lives under a hidden ``.<name>.tmp-<pid>`` name in the same folder and is renamed (an atomic
``os.replace`` on one filesystem) at the end, or removed on error (also on Ctrl-C and on SIGTERM,
which ``od.cli.main`` turns into an exception). A run killed with SIGKILL cannot clean up; the next
``atomic_path`` in the same folder removes every ``.<name>.tmp-<pid>`` / ``.<name>.old-<pid>`` whose
process is gone.

A folder written by a command cleared by ``od.outputs.prepare_out`` gets the marker
``.od-output.json`` (the command and the top-level entries it wrote). An existing folder is
replaced whole only when everything in it is od's (listed in its marker); otherwise only od's
entries are replaced and the user's other files stay (see od.outputs).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

_LEFTOVER = re.compile(r"^\..+\.(?:tmp|old)-(\d+)$")
_cleaned: set = set()


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs. A zombie (ended, not yet reaped by its parent) does not,
    where ``/proc`` tells (Linux); a pid we may not signal does."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):  # no /proc: os.kill said it exists
        return True


def clean_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.NAME.tmp-PID`` / ``.NAME.old-PID`` entries of ``folder`` whose process PID is no
    longer running (left by a killed `od`); returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _LEFTOVER.match(e.name)
        if m and not pid_alive(int(m.group(1))):
            _remove(Path(e.path))
            removed.append(Path(e.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    Works for a file or a folder written at the yielded path. On an exception (Ctrl-C and
    SIGTERM included) the temporary is deleted and ``path`` is untouched. An existing folder at
    ``path`` is replaced (only od's own entries of it, see the module doc). Leftovers of killed
    runs beside ``path`` are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent not in _cleaned:  # once per folder and process: detect writes thousands
        clean_leftovers(path.parent)
        _cleaned.add(path.parent)
    tmp = _tmp_sibling(path)
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir():
            _commit_dir(tmp, path)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def _commit_dir(tmp: Path, path: Path) -> None:
    from od import outputs

    command = outputs.command_for(path)
    new = sorted(e.name for e in tmp.iterdir() if e.name != outputs.MARKER)
    if command:
        outputs.write_marker(tmp, command, new)
    if not path.is_dir():
        os.replace(tmp, path)
        return
    marker = outputs.read_marker(path) or {}
    ours = {outputs.MARKER}
    if command is None:  # not a user-facing output (e.g. the download cache): od's alone
        ours |= {e.name for e in path.iterdir()}
    elif marker.get("command") == command:
        ours |= set(marker.get("entries") or ())
    present = {e.name for e in path.iterdir()}
    if present <= ours:  # everything there is od's: swap the whole folder
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
        os.replace(tmp, path)
        _remove(old)
        return
    # The user's files live here too (--overwrite): replace od's entries only.
    for name in (ours - {outputs.MARKER}) - set(new):
        _remove(path / name)
    for name in new:
        target = path / name
        if target.exists() or target.is_symlink():
            old = path / f".{name}.old-{os.getpid()}"
            os.replace(target, old)
            os.replace(tmp / name, target)
            _remove(old)
        else:
            os.replace(tmp / name, target)
    if command:
        os.replace(tmp / outputs.MARKER, path / outputs.MARKER)
    _remove(tmp)


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p, ignore_errors=True)
    elif p.exists() or p.is_symlink():
        p.unlink()


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (fsync'd before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj) -> Path:
    """Write ``obj`` as indented UTF-8 JSON to ``path`` atomically."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
