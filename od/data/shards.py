"""How ``od data convert`` cuts a split into TFRecord shards, and a shard into jobs.

A split's images are dealt round-robin into shards sized by bytes of image data (``plan``). With
worker processes, a shard is written by several jobs of at most a few dozen images (``chunks``),
each into a part file, so that the processes share the work evenly however few shards there
are; the parts are then joined, in order, into the shard (``join``). TFRecord framing is per
record, so the joined file is the one a single writer would have written.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

PARTS = ".parts"
"""Folder, inside the temporary output, of the part files of shards written by several jobs."""


def plan(records: list[tuple], shard_bytes: int, min_shards: int) -> list[list]:
    """Deal ``records`` (``(source_id, ImageAnnotation, class_ids, name)`` items) round-robin
    into ``max(1, ceil(image bytes / shard_bytes), min(min_shards, len(records)))`` shards; a
    missing image counts 0 bytes (it is reported when encoded). Shards may be empty."""
    sizes = []
    for _, r, _, _ in records:
        if r.image_data is not None:
            sizes.append(len(r.image_data))
            continue
        try:
            sizes.append(os.path.getsize(r.image_path))
        except OSError:
            sizes.append(0)
    n = max(1, math.ceil(sum(sizes) / shard_bytes), min(min_shards, len(records)))
    shards = [[] for _ in range(n)]
    for k, item in enumerate(records):
        shards[k % n].append(item)
    return shards


def chunks(items: list, size: int | None) -> list[list]:
    """``items`` in runs of ``size`` (one run if None); an empty list stays one empty run."""
    if size is None or len(items) <= size:
        return [items]
    return [items[k:k + size] for k in range(0, len(items), size)]


def join(parts: list[Path], shard: Path) -> None:
    """Write the files ``parts`` one after the other into ``shard`` (created) and remove them.

    Raises:
      OSError: a part cannot be read or the shard written (e.g. the disk is full).
    """
    fd = os.open(shard, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        for part in parts:
            src = os.open(part, os.O_RDONLY)
            try:
                _append(src, fd)
            finally:
                os.close(src)
            os.unlink(part)
    finally:
        os.close(fd)


def _append(src: int, dst: int) -> None:
    """Copy the rest of file ``src`` to ``dst`` at their current offsets: in the kernel where
    the system can (``copy_file_range``, Linux), else through a buffer."""
    try:
        while os.copy_file_range(src, dst, 1 << 30):
            pass
        return
    except (AttributeError, OSError):  # no copy_file_range here: both offsets are where it stopped
        pass
    while block := os.read(src, 1 << 20):
        view = memoryview(block)
        while view:
            view = view[os.write(dst, view):]
