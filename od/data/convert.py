"""``od data convert``: annotations in any supported format → sharded TFRecords + label map.

Output folder layout (written atomically: it appears only once every file in it is complete)::

    DATA/train-00000-of-00002.tfrecord ...   OD API tf.Example keys (see od.data.tfrecord)
    DATA/val-00000-of-00001.tfrecord
    DATA/test-00000-of-00001.tfrecord
    DATA/label_map.pbtxt                     ids from 1
    DATA/summary.json                        images and boxes per split and class, skipped items

Shards are sized by bytes (``shard_bytes``, default 100 MB of image data) and written by parallel
worker processes, each encoding and validating its own images.
"""
from __future__ import annotations

import math
import multiprocessing
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from od import atomic
from od import label_map as label_map_lib
from od.data import csv as csv_reader
from od.data import voc
from od.data.images import encode_for_training
from od.data.records import SPLITS, ImageAnnotation, ReadResult
from od.data.split import DEFAULT_RATIOS, assign_splits
from od.data.tfrecord import shard_name
from od.data.validate import Problem, check_boxes, check_size
from od.errors import ImageError, OdError

READERS = {
    "voc": voc.read,
    "csv": csv_reader.read,
}

DEFAULT_SHARD_BYTES = 100 * 1024 * 1024
_MAX_LISTED_PROBLEMS = 20


class InvalidDataError(OdError):
    """Some images failed validation and ``skip_invalid`` was not set."""


@dataclass
class ConvertSummary:
    """What ``convert`` wrote. ``skipped``: dicts ``{item, reason, message}``."""

    out_dir: Path
    images: dict = field(default_factory=dict)
    boxes_per_class: dict = field(default_factory=dict)
    negatives: int = 0
    shards: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    fixes: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        reasons = Counter(s["reason"] for s in self.skipped)
        return {"out_dir": str(self.out_dir), "images": self.images,
                "boxes_per_class": self.boxes_per_class, "negative_images": self.negatives,
                "shards": self.shards, "skipped_count": len(self.skipped),
                "skipped_by_reason": dict(reasons), "skipped": self.skipped, "fixes": self.fixes}


def _parse_source(entry) -> tuple[str | None, Path]:
    text = str(entry)
    head, sep, tail = text.partition("=")
    if sep and head in SPLITS:
        return head, Path(tail)
    return None, Path(text)


def read_annotations(annotations, format: str = "voc", images=None) -> ReadResult:
    """Read one or more annotation sources of one format into a ReadResult.

    Args:
      annotations: a path or a list of paths (a VOC folder, a CSV file...). An entry written
        ``train=PATH``, ``val=PATH`` or ``test=PATH`` puts all its images in that split.
      format: a key of ``READERS``.
      images: images folder the annotation filenames are relative to.
    Raises:
      OdError: unknown format; the readers' AnnotationError / UnsafePathError.
    """
    if format not in READERS:
        raise OdError(f"unknown annotation format {format!r}; choose one of "
                      f"{', '.join(sorted(READERS))}.")
    entries = annotations if isinstance(annotations, (list, tuple)) else [annotations]
    result = ReadResult([], [], [])
    for entry in entries:
        split, path = _parse_source(entry)
        part = READERS[format](path, images)
        recs = part.records if split is None else [r.replace(split=split) for r in part.records]
        result.records.extend(recs)
        result.skipped.extend(part.skipped)
        result.class_names.extend(c for c in part.class_names if c not in result.class_names)
    return result


def _encode_shard(args):
    """Worker: encode and validate the shard's images and write the shard. Returns per-item info."""
    from od.data import tfrecord

    path, items = args
    examples, report = [], []
    for source_id, record, class_ids in items:
        try:
            enc = encode_for_training(record.image_path)
        except ImageError as e:
            reason = "missing_image" if "not found" in str(e) else "undecodable_image"
            report.append((source_id, Problem(reason, str(e)), ""))
            continue
        problem = check_size(record, enc.width, enc.height)
        if problem:
            report.append((source_id, problem, ""))
            continue
        examples.append(tfrecord.make_example(record, enc.data, enc.format, class_ids, source_id,
                                              record.image_path.name))
        report.append((source_id, None, enc.reencoded))
    tfrecord.write_shard(path, examples)
    return report


def _plan_shards(records: list[tuple[int, ImageAnnotation, list[int]]], split: str,
                 shard_bytes: int, min_shards: int) -> list[list]:
    sizes = []
    for _, r, _ in records:
        try:
            sizes.append(os.path.getsize(r.image_path))
        except OSError:
            sizes.append(0)
    n = max(1, math.ceil(sum(sizes) / shard_bytes), min(min_shards, len(records)))
    shards = [[] for _ in range(n)]
    for k, item in enumerate(records):
        shards[k % n].append(item)
    return shards


def convert(annotations, out, *, format: str = "voc", images=None, label_map=None,
            split=DEFAULT_RATIOS, seed: int = 0, box_policy: str = "error",
            skip_invalid: bool = False, shard_bytes: int = DEFAULT_SHARD_BYTES,
            workers: int | None = None) -> ConvertSummary:
    """Convert annotations to TFRecord shards, a label map and a summary (see module doc).

    Args:
      annotations, format, images: see ``read_annotations``.
      out: output folder (replaced atomically if it exists).
      label_map: path of a ``label_map.pbtxt`` to use; a class not in it is an error
        (``unknown_class``). Default: one built from the class names, sorted, ids from 1.
      split: (train, val, test) ratios for images whose source defines no split.
      seed: split seed. box_policy: ``'error'``, ``'clip'`` or ``'drop'`` (see od.data.validate).
      skip_invalid: leave invalid images out (counted, with reasons, in summary.json) instead of
        failing.
      shard_bytes: target bytes of image data per shard. workers: processes (default: CPUs).
    Returns:
      ConvertSummary (also written as ``summary.json``).
    Raises:
      InvalidDataError: some images are invalid and ``skip_invalid`` is False; the message lists
        each (file, reason, fix). Nothing is written then.
    """
    out = Path(out)
    read = read_annotations(annotations, format, images)
    lm = (label_map_lib.read(label_map) if label_map
          else label_map_lib.LabelMap.from_names(sorted(read.class_names)))
    skipped = [{"item": s.item, "reason": s.reason, "message": s.reason} for s in read.skipped]
    fixes: Counter = Counter()
    problems: list[Problem] = []
    checked = []
    for r in read.records:
        fixed, probs, counts = check_boxes(r, lm, box_policy)
        fixes.update(counts)
        if probs:
            problems.extend(probs)
            skipped.extend({"item": r.source, "reason": p.reason, "message": p.message}
                           for p in probs[:1])
            continue
        checked.append(fixed)
    checked = assign_splits(checked, split, seed)

    workers = workers or os.cpu_count() or 1
    jobs, by_id = [], {}
    summary = ConvertSummary(out)
    with atomic.atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        for sp in SPLITS:
            items = [(k + 1, r, [lm.id_of(b.label) for b in r.boxes])
                     for k, r in enumerate(checked) if r.split == sp]
            by_id.update({sid: r for sid, r, _ in items})
            if not items:
                continue
            shards = _plan_shards(items, sp, shard_bytes, workers if len(items) >= 64 else 1)
            names = [shard_name(sp, i, len(shards)) for i in range(len(shards))]
            summary.shards[sp] = names
            jobs.extend((tmp / n, s) for n, s in zip(names, shards))
        if workers > 1 and len(jobs) > 1:
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(min(workers, len(jobs))) as pool:
                reports = pool.map(_encode_shard, jobs, chunksize=1)
        else:
            reports = [_encode_shard(j) for j in jobs]
        reencoded = 0
        for report in reports:
            for sid, problem, why in report:
                rec = by_id[sid]
                if problem:
                    problems.append(problem)
                    skipped.append({"item": str(rec.image_path), "reason": problem.reason,
                                    "message": problem.message})
                    continue
                reencoded += bool(why)
                summary.images[rec.split] = summary.images.get(rec.split, 0) + 1
                summary.negatives += not rec.boxes
                for b in rec.boxes:
                    per = summary.boxes_per_class.setdefault(b.label, {})
                    per[rec.split] = per.get(rec.split, 0) + 1
        if problems and not skip_invalid:
            listed = "\n  ".join(p.message for p in problems[:_MAX_LISTED_PROBLEMS])
            more = len(problems) - _MAX_LISTED_PROBLEMS
            raise InvalidDataError(
                f"{len(problems)} invalid item(s) in the annotations; nothing was written:\n  "
                f"{listed}" + (f"\n  ... and {more} more" if more > 0 else "") +
                "\nFix them, or pass --skip-invalid to leave them out (they are counted in "
                "summary.json).")
        summary.skipped = skipped
        summary.fixes = dict(fixes, reencoded_images=reencoded)
        label_map_lib.write(lm, tmp / "label_map.pbtxt")
        atomic.write_json(tmp / "summary.json", summary.to_json())
    return summary

