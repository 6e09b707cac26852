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
summary. Shards are sized by bytes (``shard_bytes``, default 100 MB of image data). With more
than one worker, one ``od.data.parallel.Pool`` of worker processes serves the whole run, the
calling process working alongside: VOC files are parsed there in chunks, then each shard's images
are encoded and validated in chunks (``od.data.convert_work``), each chunk written to a part file
that is joined, in order, into its shard as soon as the shard's parts are done. The result is the
same as with one process. The workers never import TensorFlow.
"""
from __future__ import annotations

import contextlib
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
from od.data import shards as shards_lib
from od.data.convert_work import encode_chunk
from od.data.records import SPLITS, ImageAnnotation, ReadResult
from od.data.split import DEFAULT_RATIOS, assign_splits, empty_split_notes
from od.data.tfrecord import shard_name
from od.data.validate import BOX_POLICIES, Problem, check_boxes
from od.errors import LabelMapError, OdError
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
_MOST_PER_JOB = 32
"""Images per encoding job at most (a job of raccoon-sized images takes ~10 ms)."""
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


def read_annotations(annotations, format: str = "voc", images=None, *, pool=None
                     ) -> ReadResult:
    """Read one or more annotation sources of one format into a ReadResult.

    Args:
      annotations: a path or a list of paths (a VOC folder, a CSV file...). An entry written
        ``train=PATH``, ``val=PATH`` or ``test=PATH`` puts all its images in that split.
      format: a key of ``READERS``.
      images: images folder the annotation filenames are relative to.
      pool: an ``od.data.parallel.Pool``: VOC files are parsed in it (same result).
    Raises:
      OdError: unknown format; the readers' AnnotationError / UnsafePathError.
    """
    if format not in READERS:
        raise OdError(f"unknown annotation format {format!r}; choose one of "
                      f"{', '.join(sorted(READERS))}.")
    guards.check_images_folder(images)
    entries = annotations if isinstance(annotations, (list, tuple)) else [annotations]
    result = ReadResult([], [], [])
    for entry in entries:
        split, path = _parse_source(entry)
        part = (voc.read(path, images, pool=pool) if format == "voc" and pool is not None
                else READERS[format](path, images))
        recs = part.records if split is None else [r.replace(split=split) for r in part.records]
        result.records.extend(recs)
        result.skipped.extend(part.skipped)
        result.class_names.extend(c for c in part.class_names if c not in result.class_names)
    return result


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


def _clean(record: ImageAnnotation, lm, known: dict[str, bool]) -> bool:
    """True when ``check_boxes(record, lm, ...)`` would return ``record`` unchanged with no
    problem and no fix, whatever the policy: every box finite, inside [0, 1] with a positive
    size, none repeated, every label in ``lm`` (``known`` caches the answers by label). The
    common case, checked without check_boxes' per-box messages."""
    seen = set()
    for b in record.boxes:
        if not (0.0 <= b.ymin < b.ymax <= 1.0 and 0.0 <= b.xmin < b.xmax <= 1.0):
            return False
        key = (b.label, b.ymin, b.xmin, b.ymax, b.xmax)
        if key in seen:
            return False
        seen.add(key)
        if b.label not in known:
            try:
                known[b.label] = bool(lm.id_of(b.label))
            except LabelMapError:
                known[b.label] = False
        if not known[b.label]:
            return False
    return True


def _prepare(read: ReadResult, lm, *, box_policy, dedupe, balance_policy, split, seed, workers):
    """Validate boxes, dedupe, balance and split; returns (records, skipped, problems, fixes,
    duplicates report or None, removed report)."""
    skipped = [{"item": s.item, "reason": s.reason, "message": s.reason} for s in read.skipped]
    fixes: Counter = Counter()
    problems: list[Problem] = []
    checked, known = [], {}
    fast = box_policy in BOX_POLICIES and bool(read.records)
    if fast:  # the counts of a record check_boxes leaves as it is: every key, 0
        fixes.update(check_boxes(ImageAnnotation(Path(), 1, 1), None, box_policy)[2])
    for r in read.records:
        if fast and _clean(r, lm, known):
            checked.append(r)
            continue
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
    workers = workers or os.cpu_count() or 1
    with parallel.Pool(workers) if workers > 1 else contextlib.nullcontext() as pool:
        read = read_annotations(annotations, format, images, pool=pool)
        guards.check_not_empty(read, guards.first_source(annotations), bool(label_map))
        guards.check_one_record_per_image(read.records)
        lm = (label_map_lib.read(label_map) if label_map
              else label_map_lib.LabelMap.from_names(sorted(read.class_names)))
        guards.check_case_clashes(read.records, set(lm.names) if label_map else None)
        checked, skipped, problems, fixes, dup_report, removed = _prepare(
            read, lm, box_policy=box_policy, dedupe=dedupe, balance_policy=balance, split=split,
            seed=seed, workers=workers)
        summary = ConvertSummary(out)
        with atomic.atomic_path(out) as tmp:
            tmp.mkdir(parents=True)
            jobs, joins, by_id = _plan_jobs(checked, lm, tmp, to, summary, shard_bytes=shard_bytes,
                                            workers=workers, pool=pool, verify=verify, exif=exif)
            reports = _run_jobs(jobs, joins, pool, progress)
            if pool is not None:
                pool.check()
            digests, written = _summarize(summary, reports, by_id, checked, problems, skipped,
                                          fixes, tmp, to)
            if problems and not skip_invalid:
                listed = "\n  ".join(p.message for p in problems[:_MAX_LISTED_PROBLEMS])
                more = len(problems) - _MAX_LISTED_PROBLEMS
                raise InvalidDataError(
                    f"{len(problems)} invalid item(s) in the annotations; nothing was written:"
                    f"\n  {listed}" + (f"\n  ... and {more} more" if more > 0 else "") +
                    "\nFix them, or pass --skip-invalid to leave them out (they are counted in "
                    "summary.json).")
            if to != "tfrecord":
                WRITERS[to].write([r for _, r in sorted(written, key=lambda x: x[0])], tmp, lm)
            ids = sorted(digests)
            groups = duplicates.groups_of([digests[i] for i in ids])
            summary.duplicates = dup_report or duplicates.report(
                [str(by_id[i].image_path) for i in ids], groups, "bytes",
                splits=[by_id[i].split for i in ids])
            summary.class_balance = balance_lib.class_balance([by_id[i] for i in ids])
            summary.removed = removed
            summary.skipped = skipped
            summary.notes = guards.notes({"fixes": summary.fixes}) + empty_split_notes(
                split, summary.images, any(r.split is None for r in read.records))
            summary.format, summary.to = format, to
            label_map_lib.write(lm, label_map_path(tmp))
            atomic.write_json(tmp / "summary.json", summary.to_json())
    return summary


def _plan_jobs(checked, lm, tmp: Path, to: str, summary: ConvertSummary, *, shard_bytes,
               workers, pool, verify, exif) -> tuple[list, dict, dict]:
    """The encoding jobs (``od.data.convert_work.encode_chunk``) of every split's shards, in
    order; with a pool, each shard is cut into jobs of up to ``_MOST_PER_JOB`` images written to
    part files. Returns (jobs, ``{index of a shard's last job: (its part files, the shard)}``,
    ``{source_id: record}``); sets ``summary.shards``."""
    names = _unique_names(checked) if to != "tfrecord" else [r.image_path.name for r in checked]
    ids: dict[str, int] = {}

    def class_ids(r: ImageAnnotation) -> list[int]:
        return [ids.get(b.label) or ids.setdefault(b.label, lm.id_of(b.label)) for b in r.boxes]

    per_job = pool.chunk_size(len(checked), _MOST_PER_JOB) if pool is not None else None
    jobs, joins, by_id = [], {}, {}
    for sp in SPLITS:
        items = [(k + 1, r, class_ids(r), names[k]) for k, r in enumerate(checked)
                 if r.split == sp]
        by_id.update({it[0]: it[1] for it in items})
        if not items:
            continue
        shards = shards_lib.plan(items, shard_bytes, workers if len(items) >= 64 else 1)
        if to != "tfrecord":
            folder = tmp / WRITERS[to].image_folder(sp)
            jobs.extend((to, folder, c, verify, exif)
                        for s in shards for c in shards_lib.chunks(s, per_job))
            continue
        files = [shard_name(sp, i, len(shards)) for i in range(len(shards))]
        summary.shards[sp] = files
        for name, shard in zip(files, shards):
            chunks = shards_lib.chunks(shard, per_job)
            if len(chunks) == 1:
                jobs.append(("tfrecord", tmp / name, shard, verify, exif))
                continue
            parts = [tmp / shards_lib.PARTS / f"{name}.{i:05d}" for i in range(len(chunks))]
            jobs.extend(("tfrecord", p, c, verify, exif) for p, c in zip(parts, chunks))
            joins[len(jobs) - 1] = (parts, tmp / name)
    if joins:
        (tmp / shards_lib.PARTS).mkdir()
    return jobs, joins, by_id


def _run_jobs(jobs: list, joins: dict, pool, progress: bool) -> list:
    """Run the jobs (in ``pool`` if given), joining each shard's parts as soon as they are all
    written; returns the jobs' reports in order."""
    bar = tqdm(total=sum(len(job[2]) for job in jobs), unit="image", disable=not progress,
               desc="convert")
    try:
        results = pool.map(encode_chunk, jobs) if pool is not None else map(encode_chunk, jobs)
        reports = []
        for k, report in enumerate(results):
            reports.append(report)
            if k in joins:
                shards_lib.join(*joins[k])
            bar.update(len(jobs[k][2]))
        if joins:
            next(iter(joins.values()))[0][0].parent.rmdir()  # the part files' folder, now empty
        return reports
    finally:
        bar.close()


def _summarize(summary: ConvertSummary, reports: list, by_id: dict, checked: list,
               problems: list, skipped: list, fixes: Counter, tmp: Path, to: str
               ) -> tuple[dict, list]:
    """Count the jobs' reports into ``summary`` (images, negatives, boxes per class, fixes) and
    ``problems``/``skipped``; returns (``{source_id: sha256}`` of the images written,
    ``[(source_id, record as written)]`` for the non-TFRecord targets)."""
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
    summary.fixes = dict(fixes, reencoded_images=reencoded)
    return digests, written
