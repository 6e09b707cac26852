"""What ``od evaluate`` scores: the labelled images (the detector: :mod:`od.eval_models`, whose
names are re-exported here).

Data (``--data``): TFRecord shards, or any annotation source ``od data convert`` reads (a VOC
folder or devkit, a COCO JSON or Roboflow folder, a pixel CSV, an AutoML CSV), read directly by
the same readers (:func:`od.data.convert.read_annotations`) and checked by the same validation
(:func:`od.data.validate.check_boxes`, the image size and EXIF handling of
:func:`od.data.guards.place_boxes`); nothing is converted.
Class names are matched to the model's label map by name (then display name); boxes of classes the
model does not know are counted and reported (``unknown_classes``), not scored.
"""
from __future__ import annotations

import glob
import math
import numbers
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from od.detections import GroundTruth
from od.errors import AnnotationError, LabelMapError, OdError
from od.eval_models import (FROZEN_GRAPH, MODEL_FORMATS, FrozenGraphModel,  # noqa: F401
                            Model, load_model)

DATA_FORMATS = ("tfrecord", "voc", "coco", "csv", "automl")
_MAX_LISTED = 20


# ---- data -------------------------------------------------------------------------------------
def detect_format(path: str | os.PathLike) -> str:
    """Guess the annotation format of ``path`` (one of ``DATA_FORMATS``).

    TFRecord files/folders/globs; a ``.json`` file or a folder with COCO JSON (Roboflow layout);
    a ``.csv`` file (header with ``filename`` → pixel CSV, else AutoML) or a folder with
    ``*_labels.csv`` / ``automl.csv``; a folder with ``*.xml`` or a VOC devkit.
    Raises:
      AnnotationError: nothing recognisable at ``path``; the message names ``--data-format``.
    """
    from od.data.tfrecord import record_files

    p = Path(path)
    if glob.has_magic(str(path)) and not glob.glob(str(path)):
        raise AnnotationError(f"--data {path}: the pattern matches no file; check the folder and "
                              "the name (e.g. 'DATA/test-*.tfrecord').")
    if p.is_file() and p.suffix.lower() == ".json":
        return "coco"
    if p.is_file() and p.suffix.lower() == ".csv":
        with open(p, encoding="utf-8-sig", errors="replace") as f:
            head = f.readline().lower()
        return "csv" if "filename" in head and "xmin" in head else "automl"
    try:
        record_files(p)
        return "tfrecord"
    except OdError:
        pass
    if p.is_dir():
        if (p / "automl.csv").is_file():
            return "automl"
        if any(p.glob("*_labels.csv")):
            return "csv"
        if any(p.glob("*.xml")) or (p / "Annotations").is_dir():
            return "voc"
        if any(p.glob("*.json")) or any(p.glob("*/_annotations.coco.json")):
            return "coco"
    raise AnnotationError(f"{p}: no TFRecords or annotations recognised there; give "
                          f"--data-format ({', '.join(DATA_FORMATS)}) or check the path.")


def _number(value) -> float | None:
    """``value`` as a float if it is a real number (not a bool, not a string), else None."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    return float(value) if real else None


def check_options(min_score, max_images, iou_threshold=None) -> None:
    """Raise OdError, before anything loads, for a ``min_score`` outside [0, 1], an
    ``iou_threshold`` outside (0, 1] (NaN, inf and non-numbers included) or a ``max_images`` that
    is not a whole number >= 0."""
    x = _number(min_score)
    if min_score is not None and not (x is not None and 0.0 <= x <= 1.0):
        raise OdError(f"--min-score {min_score!r} must be a number in [0, 1] (the confusion "
                      "matrix's score threshold; default: the model's eval.min_score).")
    x = _number(iou_threshold)
    if iou_threshold is not None and not (x is not None and 0.0 < x <= 1.0):
        raise OdError(f"--iou-threshold {iou_threshold!r} must be a number in (0, 1] (the IoU at "
                      "which a detection matches a box in the threshold table and confusion "
                      "matrix; default: the model's eval.iou_threshold).")
    x = _number(max_images)
    if x is None or not math.isfinite(x) or x != int(x) or x < 0:
        raise OdError(f"--max-images {max_images!r} must be a whole number >= 0 (0: all images).")


@dataclass(frozen=True)
class EvalData:
    """Labelled images ready to score.

    Attributes:
      records: the ImageAnnotations scored, in source order (image id k+1 for records[k]).
      groundtruth: one GroundTruth per record, class ids from the model's label map; boxes of
        classes the model does not know are left out (counted in ``unknown_classes``).
      source, format, split: where the images came from (``split`` None: all of them).
      unknown_classes: {data class name: boxes} for names the model's label map lacks.
      skipped: items the reader left out (``{"item", "reason"}``).
    """

    records: list
    groundtruth: list[GroundTruth]
    source: str
    format: str
    split: str | None
    unknown_classes: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)

    def image(self, k: int) -> np.ndarray:
        """Decoded uint8 RGB [H, W, 3] of ``records[k]`` as training sees it."""
        return load_image(self.records[k])

    def summary(self) -> dict:
        return {"source": self.source, "format": self.format, "split": self.split,
                "images": len(self.records),
                "boxes": sum(len(g.class_ids) for g in self.groundtruth),
                "unknown_classes": dict(self.unknown_classes),
                "unknown_class_boxes": sum(self.unknown_classes.values()),
                "skipped": self.skipped}


def load_image(record) -> np.ndarray:
    """uint8 RGB [H, W, 3] of an ImageAnnotation: stored bytes (TFRecord) decoded as training
    does (``tf.io.decode_image``); a file decoded upright by ``od.data.images.decode_rgb``.

    Raises:
      ImageError: missing or undecodable image (named).
    """
    if record.image_data is not None:
        from od.evaluate import decode_image
        return decode_image(record.image_data, record.source or str(record.image_path))
    from od.data.images import decode_rgb
    return np.asarray(decode_rgb(record.image_path))


def _pick_split(records, split: str | None, source) -> tuple[list, str | None]:
    present = sorted({r.split for r in records if r.split})
    if split is None:
        if not present:
            return records, None
        split = present[0] if len(present) == 1 else "test"
    if not present:
        raise AnnotationError(f"{source}: the source defines no train/val/test split, so --split "
                              f"{split} cannot pick one; leave --split out to score all "
                              f"{len(records)} images.")
    chosen = [r for r in records if r.split == split]
    if not chosen:
        raise AnnotationError(f"{source}: no images in split {split!r} (splits present: "
                              f"{', '.join(present)}); pick one with --split.")
    return chosen, split


def _image_size(r) -> tuple[int, int, int]:
    """(width, height, EXIF orientation) of the pixels evaluation decodes for record ``r``:
    a TFRecord's stored bytes as ``tf.io.decode_image`` reads them (EXIF ignored, as in
    training), an image file upright (``od.data.images.decode_rgb``). Reads the header, and
    decodes a JPEG that lacks its end marker (cut off?) as ``od data convert`` does.
    Raises ImageError (missing, undecodable or truncated file or bytes, named)."""
    from od.data.images import header, turned  # the same checks as convert's
    stored = r.image_data is not None
    path = Path(f"{r.source or r.image_path}") if stored else Path(r.image_path)
    w, h, orientation = header(path, r.image_data, complete=True)
    orientation = 1 if stored else orientation
    return (*turned(w, h, orientation), orientation)


def _validate(records, box_policy: str, images_given: bool) -> list:
    """check_boxes, and the annotation's size against the image header, as ``od data convert``
    does (``od.data.guards.place_boxes``, EXIF ``auto``: boxes drawn on the stored pixels of an
    EXIF-rotated photo are turned with it); a size missing from the annotation is taken from the
    image. Every problem is listed in one InvalidDataError."""
    from od.data import guards
    from od.data.convert import InvalidDataError
    from od.data.images import EncodedImage
    from od.data.validate import check_boxes
    from od.errors import ImageError, MissingImageError

    checked, problems, kinds = [], [], set()
    for r in records:
        fixed, probs, _ = check_boxes(r, None, box_policy)
        kinds.update(getattr(p, "reason", "") for p in probs)
        try:
            w, h, orientation = _image_size(r)
        except ImageError as e:
            kinds.add("missing_image" if isinstance(e, MissingImageError) else "image")
            probs = probs + [str(e)]
        else:
            if not (r.width and r.height):  # OD API records and some VOC files omit it
                fixed = fixed.replace(width=w, height=h)
            if r.image_data is not None and (fixed.width, fixed.height) != (w, h):
                probs = probs + [f"{r.source}: image/width, height say {fixed.width}x"
                                 f"{fixed.height} but the stored image is {w}x{h} (width x "
                                 "height); convert the dataset again (od data convert)."]
            elif (fixed.width, fixed.height) != (w, h) or orientation != 1:
                fixed, size, _ = guards.place_boxes(
                    fixed, EncodedImage(b"", "", w, h, "", orientation), "auto")
                probs = probs + ([size] if size else [])
        problems.extend(p if isinstance(p, str) else p.message for p in probs)
        checked.append(fixed)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = len(problems) - _MAX_LISTED
        hints = (["pass --clip-boxes to clip boxes that leave the image"]
                 if "box_outside_image" in kinds else [])
        if "missing_image" in kinds and not images_given:
            hints.append("give the images folder with --images")
        raise InvalidDataError(f"{len(problems)} invalid item(s) in the evaluation data; nothing "
                               f"was scored:\n  {listed}"
                               + (f"\n  ... and {more} more" if more > 0 else "")
                               + f"\nFix them{' (or ' + '; '.join(hints) + ')' if hints else ''}"
                               ".")
    return checked


def _class_id(lm, name: str) -> int | None:
    try:
        return lm.id_of(name)
    except LabelMapError:
        return None


def read_data(data: str | os.PathLike, label_map, *, format: str | None = None,
              split: str | None = None, images=None, box_policy: str = "error",
              max_images: int = 0) -> EvalData:
    """Read, validate and class-match the evaluation images (module doc).

    Args:
      data: TFRecord file/folder/glob or annotation source.
      label_map: the model's od.label_map.LabelMap; data classes are matched to it by name.
      format: one of ``DATA_FORMATS``; None: :func:`detect_format`.
      split: 'train', 'val' or 'test' where the source has splits; None: the only split, else
        'test'; a source without splits is scored whole.
      images: images folder for an annotation source (as ``od data convert --images``).
      box_policy: 'error' or 'clip' (``od.data.validate``).
      max_images: score only the first N images (0 = all).
    Raises:
      AnnotationError: unrecognised or empty source, missing split; InvalidDataError: invalid
        boxes or image sizes (all listed); LabelMapError: no data class is in the label map.
    """
    from od.data.convert import read_annotations

    format = format or detect_format(data)
    if format not in DATA_FORMATS:
        raise AnnotationError(f"unknown data format {format!r}; choose {', '.join(DATA_FORMATS)}.")
    source = Path(data)
    if format == "tfrecord" and source.is_dir():  # an `od data convert` folder: read one split
        shards = source / f"{split or 'test'}-*.tfrecord"
        source = shards if glob.glob(str(shards)) else source
    read = read_annotations(str(source), format, images)
    if not read.records:
        raise AnnotationError(f"{data}: the {format} source holds no images; nothing to evaluate.")
    records, split = _pick_split(read.records, split, data)
    if max_images:
        records = records[:max_images]
    records = _validate(records, box_policy, images is not None)
    names = Counter(b.label for r in records for b in r.boxes)
    ids = {n: _class_id(label_map, n) for n in names}
    unknown = {n: c for n, c in sorted(names.items()) if ids[n] is None}
    if names and len(unknown) == len(names):
        fix = ("the records name their classes by id only: put the dataset's label_map.pbtxt "
               "beside them" if format == "tfrecord" and all(n.isdigit() for n in names) else
               "evaluate with a model trained on these classes, or fix the class names")
        raise LabelMapError(
            f"{data}: none of the data's classes ({', '.join(sorted(names)[:_MAX_LISTED])}) is in "
            f"the model's label map {label_map.source} ({', '.join(label_map.names[:_MAX_LISTED])})"
            f"; {fix}.")
    gts = []
    for k, r in enumerate(records):
        kept = [b for b in r.boxes if ids[b.label] is not None]
        gts.append(GroundTruth.make(k + 1, r.width, r.height, [b.yxyx for b in kept],
                                    [ids[b.label] for b in kept], [b.is_crowd for b in kept],
                                    name=str(r.image_path)))
    skipped = [{"item": s.item, "reason": s.reason} for s in read.skipped]
    return EvalData(records, gts, str(data), format, split, unknown, skipped)
