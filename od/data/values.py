"""Range checks on every number read from an annotation source, each failure naming the place.

Readers call these on the raw values they parse, so a NaN, an infinity, a fractional or absurd
image size or a huge id is refused where it is read, with the file (and line, row or object), the
value and the fix, instead of travelling on into the TFRecords:

- coordinates (``finite``): any finite float. Where the box lies (outside the image, inverted, of
  zero size) is judged later, once per box, by ``od.data.validate.check_boxes``.
- image sizes (``image_size``): whole numbers (``2048.0`` is accepted as 2048), at least 1 and at
  most ``MAX_SIDE`` pixels.
- class ids (``class_id``): whole numbers from ``low`` to ``MAX_CLASS_ID``. A detector has one
  output per id up to the largest (ids may have gaps), so an id of 2,000,000,000 would make a
  classification head of two billion outputs (terabytes of weights); the largest public label
  sets (ImageNet-21k: 21,841 classes) stay far below 100,000.
- image ids (``image_id``): whole numbers from 0 to 2**63 - 1 (Model Garden parses
  ``image/source_id`` as int64).
"""
from __future__ import annotations

import math

from od.errors import AnnotationError

MAX_SIDE = 100_000
"""Largest image width or height accepted, in pixels (the decompression-bomb limit in
od.data.images refuses most images this long anyway)."""
MAX_CLASS_ID = 100_000
"""Largest class / category / label-map id accepted (see the module doc)."""
MAX_IMAGE_ID = 2**63 - 1


def finite(value: float, what: str, where: str, fix: str = "") -> float:
    """``value`` as a float if it is finite, else an AnnotationError naming ``where`` and
    ``what`` (e.g. ``"<xmin>"``)."""
    v = float(value)
    if not math.isfinite(v):
        raise AnnotationError(f"{where}: {what} is {value!r}, not a finite number. "
                              + (fix or "Fix or delete the value in the annotation."))
    return v


def whole(value, what: str, where: str, low: int, high: int, fix: str) -> int:
    """``value`` (an int, or a float with no fractional part such as ``2048.0``) as an int in
    ``[low, high]``; else an AnnotationError naming ``where``, ``what``, the value and ``fix``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AnnotationError(f"{where}: {what} is {value!r}; expected a whole number. {fix}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise AnnotationError(f"{where}: {what} is {value!r}, not a whole number. {fix}")
        value = int(value)
    if not low <= value <= high:
        raise AnnotationError(f"{where}: {what} is {value:,}, outside {low:,}..{high:,}. {fix}")
    return value


def image_size(width, height, where: str) -> tuple[int, int]:
    """(width, height) in pixels as ints: whole numbers from 1 to ``MAX_SIDE``.

    Raises:
      AnnotationError: NaN, infinite, fractional, zero, negative or huge (naming ``where``).
    """
    fix = ("Set the image's real size in pixels (or re-save the annotation in your labelling "
           "tool).")
    return (whole(width, "image width", where, 1, MAX_SIDE, fix),
            whole(height, "image height", where, 1, MAX_SIDE, fix))


def class_id(value, where: str, low: int = 1) -> int:
    """A class id as an int in ``[low, MAX_CLASS_ID]`` (see the module doc)."""
    return whole(value, "class id", where, low, MAX_CLASS_ID,
                 f"Number classes from {low} upwards without huge gaps (a model has one output "
                 f"per id up to the largest; {MAX_CLASS_ID:,} is the most od accepts).")


def image_id(value, where: str) -> int:
    """An image id as an int in ``[0, 2**63 - 1]``."""
    return whole(value, "image id", where, 0, MAX_IMAGE_ID,
                 "Give every image a non-negative whole-number id.")


def pixel_box(xmin: float, ymin: float, xmax: float, ymax: float, width: int, height: int,
              where: str, fix: str) -> None:
    """Refuse a box of a pixel-coordinate format whose corners all lie in [0, 1] with one of
    them fractional, on an image larger than 1x1: a box of less than a pixel is no annotation,
    it is coordinates normalised to [0, 1] written where pixels belong (read as pixels they
    would silently make a box in the image's top-left pixel). ``(0, 0, 1, 1)`` stays a 1-pixel
    box.

    Raises:
      AnnotationError: naming ``where``, the values and ``fix``.
    """
    corners = (xmin, ymin, xmax, ymax)
    if max(width, height) > 1 and all(0.0 <= v <= 1.0 for v in corners) \
            and any(v != int(v) for v in corners):
        raise AnnotationError(
            f"{where}: box xmin,ymin,xmax,ymax={corners} lies inside the image's first pixel "
            f"({width}x{height} image): these look like coordinates normalised to [0, 1], but "
            f"this format takes pixels. {fix}")
