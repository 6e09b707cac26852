"""CSV annotations: one row per box, pixel coordinates.

Generic form (the raccoon tutorial's ``xml_to_csv.py`` output)::

    filename,width,height,class,xmin,ymin,xmax,ymax
    raccoon-17.jpg,259,194,raccoon,95,60,167,118

Rows of the same ``filename`` make one image. A row whose ``class`` and box cells are empty
declares an image with no boxes (a negative). Coordinates are pixels, ``x / width`` normalised.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from od.data.paths import resolve_under
from od.data.records import ImageAnnotation, ObjectBox, ReadResult
from od.errors import AnnotationError

PIXEL_COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")


def _num(row: dict, key: str, where: str) -> float:
    raw = (row.get(key) or "").strip()
    try:
        return float(raw)
    except ValueError:
        raise AnnotationError(f"{where}: column {key!r} is {raw!r}, not a number.") from None


def read(csv_path: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> ReadResult:
    """Read a pixel-coordinate CSV (columns ``filename,width,height,class,xmin,ymin,xmax,ymax``).

    Args:
      csv_path: the CSV file (header row required; extra columns are ignored).
      images_dir: folder the filenames are relative to; defaults to the CSV's folder.
    Returns:
      ReadResult: one ImageAnnotation per distinct filename (first-seen order), boxes
      ``[ymin, xmin, ymax, xmax]`` normalised by the row's width/height.
    Raises:
      AnnotationError: missing columns, non-numeric cells, or a filename whose width/height differ
        between rows — each naming ``file:line``.
      UnsafePathError: a filename escapes ``images_dir``.
    """
    path = Path(csv_path)
    images_dir = Path(images_dir) if images_dir else path.parent
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read CSV ({e.strerror}).") from None
    with f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        missing = [c for c in PIXEL_COLUMNS if c not in header]
        if missing:
            raise AnnotationError(
                f"{path}: CSV header {header} lacks columns {missing}. Expected "
                f"{','.join(PIXEL_COLUMNS)} (pixels). For the AutoML Vision form use --format "
                "automl.")
        reader.fieldnames = header
        by_name: dict[str, dict] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            name = (row["filename"] or "").strip()
            width, height = int(_num(row, "width", where)), int(_num(row, "height", where))
            if width <= 0 or height <= 0:
                raise AnnotationError(f"{where}: image size {width}x{height} is not positive.")
            entry = by_name.setdefault(name, {"size": (width, height), "boxes": [], "where": where})
            if entry["size"] != (width, height):
                raise AnnotationError(
                    f"{where}: {name} is {width}x{height} here but {entry['size'][0]}x"
                    f"{entry['size'][1]} at {entry['where']}; one image has one size.")
            label = (row["class"] or "").strip()
            if not label and not (row["xmin"] or "").strip():
                continue  # a negative image: no boxes
            if not label:
                raise AnnotationError(f"{where}: a box without a class; fill the 'class' column.")
            xmin, ymin, xmax, ymax = (_num(row, k, where) for k in ("xmin", "ymin", "xmax", "ymax"))
            entry["boxes"].append(ObjectBox(ymin / height, xmin / width, ymax / height,
                                            xmax / width, label))
    if not by_name:
        raise AnnotationError(f"{path}: the CSV has a header but no rows.")
    records, names = [], []
    for name, e in by_name.items():
        image_path = resolve_under(images_dir, name, source=e["where"])
        records.append(ImageAnnotation(image_path, e["size"][0], e["size"][1], tuple(e["boxes"]),
                                       source=e["where"]))
        for b in e["boxes"]:
            if b.label not in names:
                names.append(b.label)
    return ReadResult(records, names)
