"""Checks on one annotated image, each failure with a named reason.

Reasons (``Problem.reason``, used as keys in the convert summary):

- ``missing_image`` / ``undecodable_image``: the file is absent, unreadable, truncated or a bomb.
- ``size_mismatch``: the annotation's width/height differ from the real (upright) image.
- ``box_outside_image``: a box extends beyond [0, 1] by more than ``tolerance`` (normalised).
- ``degenerate_box``: a box of zero or negative width/height (after clipping).
- ``unknown_class``: a box label that is not in the given label map.
- ``invalid_box``: a coordinate that is NaN or infinite (readers refuse these where they parse
  them; this catches records that arrive already parsed, e.g. from a TFRecord).

Boxes that stick out by at most ``tolerance`` (1 pixel) are clipped silently and counted. A box
that repeats an earlier box of the same image exactly (same class, same coordinates: e.g. a
duplicated CSV row) is dropped and counted as ``duplicate_boxes``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from od import boxes as box_lib
from od.data.records import ImageAnnotation, ObjectBox
from od.errors import AnnotationError, LabelMapError
from od.label_map import LabelMap

BOX_POLICIES = ("error", "clip", "drop")


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def _clip(b: ObjectBox) -> ObjectBox:
    def c(v):
        return min(max(v, 0.0), 1.0)
    return ObjectBox(c(b.ymin), c(b.xmin), c(b.ymax), c(b.xmax), b.label, b.difficult,
                     b.truncated, b.is_crowd)


def check_boxes(record: ImageAnnotation, label_map: LabelMap | None, box_policy: str = "error"
                ) -> tuple[ImageAnnotation, list[Problem], dict]:
    """Check the boxes of ``record``.

    Args:
      record: boxes normalised ``[ymin, xmin, ymax, xmax]``.
      label_map: if given, every label must be in it.
      box_policy: what to do with a box outside the image or of zero size: ``'error'`` (report a
        Problem), ``'clip'`` (clip into the image; a box that is empty after clipping is dropped and
        counted), ``'drop'`` (drop the box, counted).
    Returns:
      (the fixed record, problems that make the image invalid, counts of fixes
      ``{'clipped_boxes': n, 'dropped_boxes': n, 'duplicate_boxes': n}``).
    """
    if box_policy not in BOX_POLICIES:
        raise AnnotationError(f"box policy {box_policy!r} is not one of {BOX_POLICIES}.")
    tol_y, tol_x = box_lib.pixel_tolerance(record.width, record.height)
    problems, kept = [], []
    counts = {"clipped_boxes": 0, "dropped_boxes": 0, "duplicate_boxes": 0}
    seen = set()
    for b in record.boxes:
        if not all(math.isfinite(v) for v in b.yxyx):
            problems.append(Problem("invalid_box", (
                f"{record.source}: box {b.label!r} has coordinates ymin,xmin,ymax,xmax="
                f"{b.yxyx} (normalised), which are not finite numbers. Fix or delete the box.")))
            continue
        if (b.label, b.yxyx) in seen:
            counts["duplicate_boxes"] += 1
            continue
        seen.add((b.label, b.yxyx))
        if label_map is not None:
            try:
                label_map.id_of(b.label, where=record.source)
            except LabelMapError as e:
                problems.append(Problem("unknown_class", str(e)))
                continue
        outside = (b.ymin < -tol_y or b.xmin < -tol_x or b.ymax > 1 + tol_y or b.xmax > 1 + tol_x)
        px = tuple(round(v, 1) for v in box_lib.to_pixels(b.yxyx, record.width, record.height))
        if outside and box_policy == "error":
            problems.append(Problem("box_outside_image", (
                f"{record.source}: box {b.label!r} at xmin,ymin,xmax,ymax={px} lies outside the "
                f"{record.width}x{record.height} image. Fix the box, or pass --clip-boxes to clip "
                "it (or --skip-invalid to leave the image out).")))
            continue
        if outside and box_policy == "drop":
            counts["dropped_boxes"] += 1
            continue
        clipped = _clip(b)
        if clipped.ymax <= clipped.ymin or clipped.xmax <= clipped.xmin:
            if box_policy == "error" and not outside:
                problems.append(Problem("degenerate_box", (
                    f"{record.source}: box {b.label!r} at xmin,ymin,xmax,ymax={px} has zero or "
                    "negative size (xmax <= xmin or ymax <= ymin). Fix or delete the box, or pass "
                    "--clip-boxes to drop such boxes.")))
            else:
                counts["dropped_boxes"] += 1
            continue
        counts["clipped_boxes"] += clipped != b  # within the tolerance too (module doc)
        kept.append(clipped)
    return record.replace(boxes=tuple(kept)), problems, counts


def check_size(record: ImageAnnotation, width: int, height: int) -> Problem | None:
    """A Problem if the annotation's size disagrees with the real image's ``width x height``."""
    if (record.width, record.height) == (width, height):
        return None
    return Problem("size_mismatch", (
        f"{record.source}: the annotation says {record.width}x{record.height} but "
        f"{record.image_path} is {width}x{height} (width x height). Check the width/height in "
        "your annotation, or re-save it in your labelling tool."))
