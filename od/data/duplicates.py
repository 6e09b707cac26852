"""Duplicate images: the same picture annotated twice (a common result of merged downloads).

Two images are duplicates when the MD5 of their decoded pixels (upright RGB, uint8 [H, W, 3], plus
the size) is equal, so the same picture saved as two files, or as a PNG and its lossless copy, is
found. Decoding costs a full decode per image, done by worker processes (od.data.parallel); it
runs only when asked (``od data convert --dedupe``). ``by_bytes`` groups items by an already
known hash of their stored bytes, for the free report ``od data convert`` always gives.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

from od.data import parallel
from od.data.images import pixel_md5
from od.data.records import SPLITS, ImageAnnotation
from od.errors import ImageError


def _hash_one(item: tuple[Path, bytes | None]) -> str | None:
    path, data = item
    try:
        return pixel_md5(path, data)
    except ImageError:
        return None  # reported by name when the image is encoded


def pixel_hashes(records: list[ImageAnnotation], workers: int | None = None) -> list[str | None]:
    """Hex MD5 of each record's decoded pixels (None where the image cannot be decoded)."""
    items = [(r.image_path, r.image_data) for r in records]
    workers = min(workers or os.cpu_count() or 1, max(1, len(items) // 32))
    if workers <= 1:
        return [_hash_one(i) for i in items]
    return list(parallel.imap(_hash_one, items, workers,
                              chunksize=max(1, len(items) // (workers * 8))))


def groups_of(hashes: list[str | None]) -> list[list[int]]:
    """Indices sharing a hash, groups of two or more, each sorted, in order of first index."""
    by_hash: dict[str, list[int]] = defaultdict(list)
    for k, h in enumerate(hashes):
        if h is not None:
            by_hash[h].append(k)
    return sorted((g for g in by_hash.values() if len(g) > 1), key=lambda g: g[0])


def find_duplicates(records: list[ImageAnnotation], workers: int | None = None
                    ) -> list[list[int]]:
    """Groups of indices into ``records`` whose images have the same decoded pixels."""
    return groups_of(pixel_hashes(records, workers))


def remove_duplicates(records: list[ImageAnnotation], groups: list[list[int]]
                      ) -> tuple[list[ImageAnnotation], list[dict]]:
    """Keep the first image of each group; return (kept records, one report dict per removed
    image: ``{item, reason: 'duplicate', message}``, the message naming the image kept and
    whether the two annotations differ)."""
    drop: dict[int, int] = {k: g[0] for g in groups for k in g[1:]}
    kept, removed = [], []
    for k, r in enumerate(records):
        if k not in drop:
            kept.append(r)
            continue
        first = records[drop[k]]
        same = sorted(r.boxes, key=repr) == sorted(first.boxes, key=repr)
        removed.append({"item": str(r.image_path), "reason": "duplicate", "message": (
            f"{r.image_path} has the same pixels as {first.image_path}; kept the latter"
            + ("" if same else " (the two annotations differ: check which is right)") + ".")})
    return kept, removed


def report(names: list[str], groups: list[list[int]], method: str, removed: int = 0,
           splits: list[str] | None = None) -> dict:
    """The ``duplicates`` section of summary.json: ``{method, groups: [[name, ...]], removed}``;
    with ``splits`` (each name's split), also ``across_splits``: the images whose copy lies in
    an earlier split (train before val before test), which val/test scores would count although
    the model trained on (or was chosen by) that very picture."""
    out = {"method": method, "groups": [[names[k] for k in g] for g in groups],
           "duplicate_images": sum(len(g) - 1 for g in groups), "removed": removed}
    if splits is not None:
        order = {s: k for k, s in enumerate(SPLITS)}  # train before val before test
        out["across_splits"] = sum(order.get(splits[k], 3) > min(order.get(splits[j], 3) for j in g)
                                   for g in groups for k in g)
    return out
