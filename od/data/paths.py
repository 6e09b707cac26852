"""Resolving image names from annotation files without ever leaving the user's folders."""
from __future__ import annotations

import functools
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from od.errors import UnsafePathError


def resolve_under(root: str | os.PathLike, name: str, *, source: str) -> Path:
    """Join ``name`` (a filename from an annotation) to ``root`` and check it stays inside.

    Absolute names and ``..`` components that escape ``root`` (after resolving symlinks) are
    refused, so an annotation cannot make `od` read or write outside the folders the user gave.

    Raises:
      UnsafePathError: naming the annotation ``source``, the value and the root.
    """
    root = _resolved(os.path.abspath(root))
    if name and not _SPECIAL.intersection(name) and name not in (".", ".."):
        candidate = root / name  # a plain file name in an already resolved root
        if not os.path.islink(candidate):
            return candidate  # nothing to escape (what the checks below conclude, faster)
    if not name or PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() \
            or PureWindowsPath(name).drive:
        raise UnsafePathError(
            f"{source}: image name {name!r} is empty or absolute; annotations must name images "
            f"relative to the images folder {root}.")
    name = name.replace("\\", "/")
    if "/" not in name and name not in (".", "..") and not os.path.islink(root / name):
        return root / name  # a plain file name in an already resolved root: nothing to escape
    candidate = (root / name).resolve()
    if candidate != root and root not in candidate.parents:
        raise UnsafePathError(
            f"{source}: image name {name!r} points outside the images folder {root}; refusing to "
            "read it. Fix the filename in the annotation.")
    return candidate


_SPECIAL = frozenset("/\\:")
"""Characters that can make a name absolute, a drive or a path of several parts."""


@functools.lru_cache(maxsize=64)
def _resolved(root: str) -> Path:
    return Path(root).resolve()
