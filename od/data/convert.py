"""``od data convert``: annotations in any supported format → any other format.

Default output (``to='tfrecord'``), written atomically: the folder appears only once every file
in it is complete::

    DATA/train-00000-of-00002.tfrecord ...   OD API tf.Example keys (see od.data.tfrecord)
    DATA/val-00000-of-00001.tfrecord
    DATA/test-00000-of-00001.tfrecord
    DATA/label_map.pbtxt                     ids from 1
    DATA/summary.json                        images and boxes per split and class, skipped items,
                                             duplicates, class balance

``to='voc' | 'coco' | 'csv' | 'automl'`` writes that format's layout instead of the shards (see
each module's ``write``), with the images as training will see them, plus the label map and
summary. Shards are sized by bytes (``shard_bytes``, default 100 MB of image data) and written by
parallel 'spawn' worker processes, each encoding and validating its own images; the workers never
import TensorFlow.
"""
from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from od import atomic
from od import label_map as label_map_lib
from od.data import automl, coco, duplicates, guards, parallel, tfrecord, voc
from od.data import balance as balance_lib
from od.data import csv as csv_reader
from od.data.images import encode_for_training
from od.data.records import SPLITS, ImageAnnotation, ReadResult
from od.data.split import DEFAULT_RATIOS, assign_splits
from od.data.tfrecord import shard_name
from od.data.validate import Problem, check_boxes
from od.errors import ImageError, MissingImageError, OdError
from od.layout import label_map_path

READERS = {
    "voc": voc.read,
    "csv": csv_reader.read,
    "coco": coco.read,
    "automl": automl.read,
    "tfrecord": tfrecord.read_annotations,
}
"""``--format`` → reader ``(annotations path, images folder or None) -> ReadResult``."""

WRITERS = {
    "voc": voc,
    "coco": coco,
    "csv": csv_reader,
    "automl": automl,
}
"""``--to`` → module with ``image_folder(split)`` and ``write(records, out_dir, label_map)``."""
TARGETS = ("tfrecord", *WRITERS)

DEFAULT_SHARD_BYTES = 100 * 1024 * 1024
_MAX_LISTED_PROBLEMS = 20


class InvalidDataError(OdError):
    """Some images failed validation and ``skip_invalid`` was not set."""


@dataclass
class ConvertSummary:
    """What ``convert`` wrote. ``skipped`` (invalid items) and ``removed`` (duplicates and
    balancing): dicts ``{item, reason, message}``; ``duplicates``: see od.data.duplicates.report;
    ``class_balance``: see od.data.balance.class_balance; ``fixes``: counts of repairs made
    (clipped/dropped/duplicate boxes, sizes taken from images, EXIF boxes turned, re-encoded
    images); ``notes``: one human line per kind of repair (the CLI prints them)."""

    out_dir: Path
    images: dict = field(default_factory=dict)
    boxes_per_class: dict = field(default_factory=dict)
    negatives: int = 0
    shards: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    fixes: dict = field(default_factory=dict)
    duplicates: dict = field(default_factory=dict)
    class_balance: dict = field(default_factory=dict)
    removed: list = field(default_factory=list)
    format: str = ""
    to: str = "tfrecord"
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        reasons = Counter(s["reason"] for s in self.skipped)
        return {"out_dir": str(self.out_dir), "format": self.format, "to": self.to,
                "images": self.images, "boxes_per_class": self.boxes_per_class,
                "negative_images": self.negatives, "shards": self.shards,
                "skipped_count": len(self.skipped), "skipped_by_reason": dict(reasons),
                "skipped": self.skipped, "fixes": self.fixes, "duplicates": self.duplicates,
                "class_balance": self.class_balance, "removed_count": len(self.removed),
                "removed": self.removed, "notes": self.notes}


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
    """Worker: encode and validate the job's images, then write them (a TFRecord shard, or image
    files for the other targets). Returns ``(source_id, problem, reencoded, sha256, name)`` per
    item, and the record with its boxes moved onto the upright image where EXIF asked for it
    (else None)."""
    import hashlib

    target, path, items, verify, exif = args
    examples, report = [], []
    for source_id, record, class_ids, name in items:
        try:
            enc = encode_for_training(record.image_path, record.image_data, verify=verify)
        except ImageError as e:
            reason = "missing_image" if isinstance(e, MissingImageError) else "undecodable_image"
            report.append((source_id, Problem(reason, str(e)), "", "", name, None))
            continue
        record, problem, moved = guards.place_boxes(record, enc, exif)
        if problem:
            report.append((source_id, problem, "", "", name, None))
            continue
        if Path(name).suffix.lower() not in (".jpg", ".jpeg"):  # stored bytes are JPEG
            name = str(Path(name).with_suffix(".jpg"))
        if target == "tfrecord":
            ex = tfrecord.make_example(record, enc.data, enc.format, class_ids, source_id, name)
            digest = ex.features.feature[tfrecord.KEY_SHA256].bytes_list.value[0].decode()
            examples.append(ex.SerializeToString())
        else:
            digest = hashlib.sha256(enc.data).hexdigest()
            out = Path(path) / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(enc.data)
        report.append((source_id, None, enc.reencoded, digest, name, record if moved else None))
    if target == "tfrecord":
        tfrecord.write_shard(path, examples)
    return report


def _plan_shards(records: list[tuple], shard_bytes: int, min_shards: int) -> list[list]:
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


def _unique_names(records: list[ImageAnnotation]) -> list[str]:
    """A file name per record, unique by stem (case-insensitive): ``a.jpg``, ``a_1.png``..."""
    seen, names = set(), []
    for r in records:
        stem, suffix = r.image_path.stem or "image", r.image_path.suffix or ".jpg"
        name, k = stem, 0
        while name.lower() in seen:
            k += 1
            name = f"{stem}_{k}"
        seen.add(name.lower())
        names.append(name + suffix)
    return names


def _prepare(read: ReadResult, lm, *, box_policy, dedupe, balance_policy, split, seed, workers):
    """Validate boxes, dedupe, balance and split; returns (records, skipped, problems, fixes,
    duplicates report or None, removed report)."""
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
    dup_report, removed = None, []
    if dedupe:
        groups = duplicates.find_duplicates(checked, workers)
        dup_report = duplicates.report([str(r.image_path) for r in checked], groups, "pixels")
        checked, dropped = duplicates.remove_duplicates(checked, groups)
        dup_report["removed"] = len(dropped)
        removed.extend(dropped)
    if balance_policy is not None:
        if balance_policy not in balance_lib.POLICIES:
            raise OdError(f"balance policy {balance_policy!r} is not one of "
                          f"{balance_lib.POLICIES}.")
        checked, dropped = balance_lib.undersample(checked, seed)
        removed.extend(dropped)
    checked = assign_splits(checked, split, seed)
    return checked, skipped, problems, fixes, dup_report, removed


def convert(annotations, out, *, format: str = "voc", images=None, label_map=None,
            split=DEFAULT_RATIOS, seed: int = 0, box_policy: str = "error",
            skip_invalid: bool = False, shard_bytes: int = DEFAULT_SHARD_BYTES,
            workers: int | None = None, to: str = "tfrecord", dedupe: bool = False,
            balance: str | None = None, verify: str = "fast", progress: bool = False,
            exif: str = "auto", overwrite: bool = False) -> ConvertSummary:
    """Convert annotations to TFRecord shards (or another format), a label map and a summary.

    Args:
      annotations, format, images: see ``read_annotations``.
      out: output folder (replaced atomically if it exists).
      label_map: path of a ``label_map.pbtxt`` to use; a class not in it is an error
        (``unknown_class``). Default: one built from the class names, sorted, ids from 1.
      split: (train, val, test) ratios for images whose source defines no split.
      seed: split and balance seed. box_policy: ``'error'``, ``'clip'`` or ``'drop'`` (see
        od.data.validate).
      skip_invalid: leave invalid images out (counted, with reasons, in summary.json) instead of
        failing.
      shard_bytes: target bytes of image data per shard. workers: processes (default: CPUs).
      to: output format, one of ``TARGETS``.
      dedupe: remove images whose decoded pixels equal an earlier image's (reported). Without
        it, images with byte-identical stored data are reported, not removed.
      balance: None, or ``'undersample'`` (od.data.balance.undersample).
      verify: ``'fast'`` or ``'full'`` image check (od.data.images.encode_for_training).
      progress: show a tqdm progress bar over the written jobs.
      exif: which picture the boxes of an EXIF-rotated image are drawn on: ``'auto'``,
        ``'stored'`` or ``'displayed'`` (od.data.guards explains the rule).
      overwrite: write into an existing folder that is not a previous convert output
        (od.outputs.prepare_out).
    Returns:
      ConvertSummary (also written as ``summary.json``). ``fixes`` counts what was repaired:
      ``duplicate_boxes`` (dropped), ``size_from_image``, ``exif_boxes_rotated``,
      ``clipped_boxes``, ``dropped_boxes``, ``reencoded_images``; ``notes`` has one line each.
    Raises:
      InvalidDataError: some images are invalid and ``skip_invalid`` is False; the message lists
        each (file, reason, fix). Nothing is written then.
      OdError: unknown format or target, impossible options (od.data.guards.check_options);
        the readers' errors; no images or no boxes at all; class names that differ only by case.
        OutputError: ``out`` is, holds or lies inside an input, or is not writable
        (od.outputs.prepare_out).
    """
    from od import outputs
    sources = annotations if isinstance(annotations, (list, tuple)) else [annotations]
    outputs.prepare_out(out, inputs=[*sources, images, label_map], command="convert",
                        overwrite=overwrite)
    if to not in TARGETS:
        raise OdError(f"unknown output format {to!r}; choose one of {', '.join(TARGETS)}.")
    guards.check_options(shard_bytes=shard_bytes, workers=workers, split=split, exif=exif,
                         verify=verify)
    out = Path(out)
    read = read_annotations(annotations, format, images)
    guards.check_not_empty(read, guards.first_source(annotations), bool(label_map))
    lm = (label_map_lib.read(label_map) if label_map
          else label_map_lib.LabelMap.from_names(sorted(read.class_names)))
    guards.check_case_clashes(read.records, set(lm.names) if label_map else None)
    workers = workers or os.cpu_count() or 1
    checked, skipped, problems, fixes, dup_report, removed = _prepare(
        read, lm, box_policy=box_policy, dedupe=dedupe, balance_policy=balance, split=split,
        seed=seed, workers=workers)

    jobs, by_id = [], {}
    summary = ConvertSummary(out)
    names = _unique_names(checked) if to != "tfrecord" else [r.image_path.name for r in checked]
    with atomic.atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        for sp in SPLITS:
            items = [(k + 1, r, [lm.id_of(b.label) for b in r.boxes], names[k])
                     for k, r in enumerate(checked) if r.split == sp]
            by_id.update({it[0]: it[1] for it in items})
            if not items:
                continue
            shards = _plan_shards(items, shard_bytes, workers if len(items) >= 64 else 1)
            if to == "tfrecord":
                files = [shard_name(sp, i, len(shards)) for i in range(len(shards))]
                summary.shards[sp] = files
                jobs.extend(("tfrecord", tmp / n, s, verify, exif)
                            for n, s in zip(files, shards))
            else:
                folder = tmp / WRITERS[to].image_folder(sp)
                jobs.extend((to, folder, s, verify, exif) for s in shards)
        reports = _run_jobs(jobs, workers, progress)
        reencoded, digests, written = 0, {}, []
        fixes["size_from_image"] = sum(r.size_from_image for r in checked)
        fixes["exif_boxes_rotated"] = 0
        for report in reports:
            for sid, problem, why, digest, name, moved in report:
                if moved is not None:
                    by_id[sid] = moved
                    fixes["exif_boxes_rotated"] += 1
                rec = by_id[sid]
                if problem:
                    problems.append(problem)
                    skipped.append({"item": str(rec.image_path), "reason": problem.reason,
                                    "message": problem.message})
                    continue
                reencoded += bool(why)
                digests[sid] = digest
                if to != "tfrecord":
                    folder = tmp / WRITERS[to].image_folder(rec.split)
                    written.append((sid, rec.replace(image_path=folder / name, image_data=None)))
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
        if to != "tfrecord":
            WRITERS[to].write([r for _, r in sorted(written, key=lambda x: x[0])], tmp, lm)
        ids = sorted(digests)
        groups = duplicates.groups_of([digests[i] for i in ids])
        summary.duplicates = dup_report or duplicates.report(
            [str(by_id[i].image_path) for i in ids], groups, "bytes")
        summary.class_balance = balance_lib.class_balance(
            [by_id[i] for i in ids])
        summary.removed = removed
        summary.skipped = skipped
        summary.fixes = dict(fixes, reencoded_images=reencoded)
        summary.notes = guards.notes({"fixes": summary.fixes})
        summary.format, summary.to = format, to
        label_map_lib.write(lm, label_map_path(tmp))
        atomic.write_json(tmp / "summary.json", summary.to_json())
    return summary


def _run_jobs(jobs: list, workers: int, progress: bool) -> list:
    bar = tqdm(total=len(jobs), unit="shard", disable=not progress, desc="convert")
    try:
        results = (parallel.imap(_encode_shard, jobs, min(workers, len(jobs)))
                   if workers > 1 and len(jobs) > 1 else map(_encode_shard, jobs))
        reports = []
        for rep in results:
            reports.append(rep)
            bar.update()
        return reports
    finally:
        bar.close()
