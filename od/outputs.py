"""Guards for every folder `od` writes: a command never overwrites its own inputs or a user's files.

Every library function that writes an output folder (``convert``, ``inspect``, ``export``,
``evaluate``, ``detect_folder``, ``quickstart.run``) calls :func:`prepare_out` first, before any
work. It refuses, with an :class:`OutputError` naming both paths:

- an ``out`` that is, contains, or lies inside one of the command's inputs (images folder,
  annotation files/folders, run folder, export folder, the folder of a TFRecord glob), after
  resolving symlinks and ``..``;
- an ``out`` that is an existing file, or whose parent is a file or cannot be created/written;
- an existing, non-empty ``out`` that is not a previous output of the same command, unless
  ``overwrite=True`` (``--overwrite``).

A previous output is recognised by the marker file ``.od-output.json`` that `od` writes into each
output folder: ``{"command": "export", "entries": [top-level names od wrote]}``, or, for folders
written before markers existed, by the files that command always writes (``SIGNATURES``).

Replacing a folder removes only what `od` wrote there: ``od.atomic.atomic_path`` swaps the whole
folder only when every entry in it is listed in its marker; otherwise (a user's folder given with
``--overwrite``) it moves the new entries in one by one, replacing same-named entries, removing
entries the old marker lists, and leaving every other file alone.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import stat as stat_lib
from pathlib import Path

from od.errors import OdError
from od.layout import LABEL_MAP_FILE

MARKER = ".od-output.json"

SIGNATURES = {
    "convert": (LABEL_MAP_FILE, "summary.json"),
    "inspect": ("summary.json", "samples.png"),
    "export": ("saved_model", "export_check.json"),
    "evaluate": ("metrics.json",),
    "detect": ("detections.json",),
    "quickstart": ("shapes",),
}
"""Files each command always writes: an unmarked folder holding all of them is its output."""

_COMMANDS: dict[Path, str] = {}  # resolved out folder → command, for atomic_path's marker


class OutputError(OdError):
    """An output folder would overwrite an input or a user's files, or cannot be written."""


def _resolve(path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(str(path)))).resolve()


def _input_paths(entry) -> list[Path]:
    """The paths an input names: ``SPLIT=PATH`` entries, globs (their folder), plain paths."""
    text = str(entry)
    head, sep, tail = text.partition("=")
    if sep and head in ("train", "val", "test") and "/" not in head:
        text = tail
    if glob.has_magic(text):
        paths = [Path(p) for p in glob.glob(text)]
        prefix = text[:min(text.index(c) for c in "*?[" if c in text)]
        return [Path(os.path.dirname(prefix) or "."), *paths]
    return [Path(text)]


def _inside(a: Path, b: Path) -> bool:
    """True when ``a`` is ``b`` or lies under it."""
    return a == b or b in a.parents


def read_marker(folder: str | os.PathLike) -> dict | None:
    """The marker of an output folder (``{"command", "entries"}``), or None."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("command"), str) else None


def output_of(folder: str | os.PathLike) -> str | None:
    """Which command wrote ``folder`` (marker, else ``SIGNATURES``), or None."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker:
        return marker["command"]
    for command, names in SIGNATURES.items():
        if all((folder / n).exists() for n in names):
            return command
    return None


def _check_folder_path(real: Path, label: str) -> Path | None:
    """Raise OutputError when ``real`` is a file or lies under one; return its nearest existing
    parent (None if none)."""
    if real.exists() and not real.is_dir():
        raise OutputError(f"{label} is an existing file, not a folder; give a folder path.")
    parent = next((p for p in real.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputError(f"{label}: {parent} is a file, so the folder cannot be created; "
                          "give another path.")
    return parent


def prepare_out(out: str | os.PathLike, *, inputs=(), command: str, overwrite: bool = False,
                inside_ok=(), what: str = "--out") -> Path:
    """Check that ``command`` may write the folder ``out``; call before any work.

    Args:
      out: the output folder.
      inputs: paths the command reads (files, folders, globs, ``SPLIT=PATH``; None is skipped).
      command: the command's name (``'export'``...), recorded in the folder's marker.
      overwrite: allow an existing, non-empty folder that is not a previous ``command`` output.
      inside_ok: inputs that ``out`` may lie inside (not be, nor contain): a run folder holds
        its default ``eval/``, a data folder its default ``inspect/``.
      what: the option that names ``out`` in messages (``--model-dir`` for ``od train``).
    Returns:
      ``out`` as a Path (as given, not resolved).
    Raises:
      OutputError: see the module doc; the message names ``out``, the input and the fix.
    """
    given = Path(out)
    real = _resolve(out)
    near = {_resolve(p) for p in inside_ok if p is not None}
    for entry in inputs:
        if entry is None:
            continue
        for path in _input_paths(entry):
            inp = _resolve(path)
            if real == inp:
                raise OutputError(f"{what} {given} is the input {path}; {command} would overwrite "
                                  "it. Give a new folder for the output.")
            if _inside(inp, real):
                raise OutputError(f"{what} {given} contains the input {path}; {command} would "
                                  "replace it. Give a folder outside the inputs.")
            if _inside(real, inp) and inp not in near:
                raise OutputError(f"{what} {given} lies inside the input {path}; give a folder "
                                  "outside the inputs (e.g. a sibling).")
    parent = _check_folder_path(real, f"{what} {given}")
    writable = real if real.is_dir() else parent
    if writable is not None and not os.access(writable, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {given}: {writable} is not writable; give a folder you can "
                          "write to.")
    if real.is_dir() and any(real.iterdir()) and not overwrite:
        previous = output_of(real)
        if previous != command:
            kind = (f"an output of `od {previous}`" if previous else "not an output of od")
            raise OutputError(f"{what} {given} exists, is not empty and is {kind}; {command} "
                              "would overwrite files in it. Give a new folder, or pass "
                              "--overwrite (overwrite=True) to write into it (only files od "
                              "writes are replaced).")
    _COMMANDS[real] = command
    return given


def prepare_file(path: str | os.PathLike | None, what: str = "--out") -> None:
    """Check that a single output file (e.g. the zoo speed JSON) can be written at ``path``.

    Raises:
      OutputError: ``path`` is a folder, lies under a file, or its folder is not writable.
    """
    if path is None:
        return
    real = _resolve(path)
    if real.is_dir():
        raise OutputError(f"{what} {path} is a folder; give a file path (e.g. speeds.json).")
    parent = next((p for p in real.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputError(f"{what} {path}: {parent} is a file, so {path} cannot be written; give "
                          "another path.")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: {parent} is not writable; give another path.")


def prepare_folder(path: str | os.PathLike | None, what: str) -> None:
    """Check that ``path`` (a cache or work folder od creates and fills) is not a file and can be
    created. Raises OutputError naming ``what`` and ``path``."""
    if path is None:
        return
    _check_folder_path(_resolve(path), f"{what} {path}")


def command_for(folder: str | os.PathLike) -> str | None:
    """The command that ``prepare_out`` cleared to write ``folder`` in this process, if any."""
    return _COMMANDS.get(_resolve(folder))


def write_marker(folder: str | os.PathLike, command: str, entries=(), files=None, *,
                 prune: bool = False) -> None:
    """Record ``folder`` as an output of ``command`` with the top-level ``entries`` od wrote
    (merged with the entries of an existing marker of the same command; ``prune``: only those of
    them still in ``folder``, for a command that has just removed its stale files there, never in
    a temporary folder that is to replace ``folder``) and, for a command that writes file by file
    (detect), ``files``: ``{relative path: [size, mtime_ns]}`` of every file this run wrote
    (:func:`stamps`; None: keep the existing marker's), so the next run can remove those it does
    not write again, if nobody changed them since (:func:`remove_stale`)."""
    from od import atomic

    folder = Path(folder)
    old = read_marker(folder)
    names = set(entries)
    same = bool(old and old["command"] == command)
    if same:
        names |= {e for e in old.get("entries") or ()
                  if not prune or (folder / e).exists() or (folder / e).is_symlink()}
    names.discard(MARKER)
    doc = {"command": command, "entries": sorted(names)}
    if files is None and same:
        files = written_files(folder, command)
    if files:
        doc["files"] = {str(k): list(v) for k, v in sorted(files.items())}
    atomic.write_json(folder / MARKER, doc)


def stamps(folder: str | os.PathLike, names) -> dict[str, list[int]]:
    """``{name: [size, mtime_ns]}`` of the plain files ``names`` (relative paths) in ``folder``;
    missing ones are left out."""
    out = {}
    for name in names:
        with contextlib.suppress(OSError):
            st = os.stat(Path(folder) / name, follow_symlinks=False)
            if stat_lib.S_ISREG(st.st_mode):
                out[str(name)] = [st.st_size, st.st_mtime_ns]
    return out


def written_files(folder: str | os.PathLike, command: str) -> dict[str, list[int]]:
    """The files (relative path → ``[size, mtime_ns]`` when written) that the last run of
    ``command`` recorded in ``folder``'s marker (:func:`write_marker`); empty for another
    command's folder or a marker without them."""
    marker = read_marker(folder) or {}
    files = marker.get("files") if marker.get("command") == command else None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, list)
            and len(v) == 2 and all(isinstance(x, int) for x in v)}


def remove_stale(folder: str | os.PathLike, stale: dict) -> list[str]:
    """Remove the files of ``stale`` (``{relative path: [size, mtime_ns]}`` an earlier run of od
    recorded in ``folder``'s marker and this run did not write again) that are still as od wrote
    them (same size and modification time: a pre-label the user edited since is kept), then
    sub-folders left empty by that. Only plain files inside ``folder`` are removed: never a link,
    a folder's other contents, or a path leaving ``folder``. Returns the names removed; the marker
    is left as it is (the caller's next ``write_marker(..., prune=True)`` drops vanished names).
    """
    folder = Path(folder)
    removed, parents = [], set()
    for name in sorted(stale):
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts or rel.name == MARKER:
            continue
        if stamps(folder, [name]).get(name) != list(stale[name]):
            continue  # gone, a link, or changed since od wrote it
        try:
            (folder / rel).unlink()
        except OSError:
            continue
        removed.append(name)
        parents.update(p for p in rel.parents if p != Path("."))
    for sub in sorted(parents, key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            (folder / sub).rmdir()  # only when empty
    return removed


def start_output(out: str | os.PathLike, command: str) -> Path:
    """Create ``out`` for a command that writes file by file (detect, evaluate, inspect) and
    mark it as that command's output."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--out {out}: cannot create the folder ({e.strerror}); give a folder "
                          "you can write to.") from None
    write_marker(out, command)
    return out
