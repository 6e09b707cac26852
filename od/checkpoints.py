"""Checkpoint sources: whatever a user names as a checkpoint becomes one checkpoint prefix.

A source is a zoo name (``retinanet_mobilenetv2_coco``), an ``http(s)://``, ``gs://`` or
``file://`` URL of a tarball, a local tarball (``.tar.gz``, ``.tgz``, ``.tar``, ...), a folder
(searched for the checkpoint its ``checkpoint`` state file names, else its single ``*.index``),
or a prefix (``PATH/ckpt-7``, the path without ``.index``; one of its files, ``PATH/ckpt-7.index``,
stands for it). Downloads and archives go through
:mod:`od.download` (cached, checksummed, resumable); this module decides what a source is and
finds the prefix. Used by ``train.fine_tune_checkpoint``, ``model=<zoo name>`` and
``od zoo download``.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from od.errors import CheckpointError


def _is_remote_or_archive(src: str) -> bool:
    from od import download, zoo

    return ("://" in src or download.is_archive(src)
            or (src in {e.name for e in zoo.ZOO} and not os.path.exists(src)))


def resolve(source: str | os.PathLike, *, what: str = "train.fine_tune_checkpoint",
            progress: bool = True) -> str:
    """The checkpoint prefix of ``source`` ('' for an empty source).

    Zoo names, URLs and tarballs are fetched once into the od cache (:func:`od.download.download`).
    Raises:
      CheckpointError: a local path that is neither a checkpoint folder nor a prefix, or a folder
        holding no checkpoint (``what`` names the setting in the message).
      ZooError: an unknown zoo name, a failed download, a bad checksum or an unsafe archive.
    """
    src = os.fspath(source)
    if not src:
        return ""
    if _is_remote_or_archive(src):
        from od import download
        return prefix_in(download.download(src, progress=progress))
    path = Path(src).expanduser()
    if path.is_dir():
        return prefix_in(path)
    # one of the checkpoint's files (PREFIX.index, PREFIX.data-00000-of-00001): its prefix
    m = re.fullmatch(r"(.+)\.(index|data-\d{5}-of-\d{5})", str(path))
    if m and path.is_file() and Path(f"{m.group(1)}.index").is_file():
        return m.group(1)
    if not Path(f"{path}.index").exists():
        raise CheckpointError(f"{what}: {src!r} is neither a checkpoint folder nor a checkpoint "
                              "prefix (PREFIX.index), a zoo name, a URL or a tarball. Give the "
                              "folder, e.g. ../shared/weights/mobilenet_v2_1.0_imagenet.")
    return str(path)


def prefix_in(folder: str | os.PathLike) -> str:
    """The checkpoint prefix in ``folder`` (searched recursively): the one named by a
    ``checkpoint`` state file, as ``tf.train.latest_checkpoint`` reads it, else the single
    ``*.index`` file. A prefix given directly is returned as is.

    Raises:
      CheckpointError: the folder does not exist, holds no checkpoint, or several without a
        state file.
    """
    folder = Path(folder)
    if Path(f"{folder}.index").exists():
        return str(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder {folder} does not exist; download it first "
                              f"(`od zoo download NAME`) or check the path.")
    for state in sorted(folder.rglob("checkpoint")):
        if not state.is_file():
            continue
        m = re.search(r'^model_checkpoint_path:\s*"(.*)"', state.read_text(errors="replace"), re.M)
        if m:
            prefix = state.parent / m.group(1)
            if Path(f"{prefix}.index").exists():
                return str(prefix)
    indexes = sorted(folder.rglob("*.index"))
    if len(indexes) == 1:
        return str(indexes[0])[: -len(".index")]
    if not indexes:
        raise CheckpointError(f"{folder} holds no TensorFlow checkpoint (no 'checkpoint' state "
                              "file and no *.index file); give the folder of a checkpoint.")
    found = ", ".join(str(p) for p in indexes[:5])
    raise CheckpointError(f"cannot tell the checkpoint in {folder}: {found}; pass the prefix "
                          "itself (the path without .index).")
