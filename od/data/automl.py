"""Google Cloud AutoML Vision / Vertex AI object-detection CSV (no header row).

Format (``cloud.google.com/vision/automl/object-detection/docs/csv-format``)::

    SET,PATH,LABEL,X_MIN,Y_MIN,,,X_MAX,Y_MAX,,
    TRAIN,gs://bucket/img/a.jpg,cat,0.1,0.2,,,0.5,0.6,,
    TEST,img/b.jpg,dog,0.1,0.2,0.5,0.2,0.5,0.6,0.1,0.6
    UNASSIGNED,img/c.jpg

Coordinates are normalised to [0, 1]: two vertices (top-left, bottom-right, the others empty) or
all four. ``SET`` is ``TRAIN``, ``VALIDATION``, ``TEST`` or ``UNASSIGNED`` (split by ratio). A
row with only a set and a path declares an image without boxes.

Paths: a ``gs://bucket/dir/a.jpg`` URI is looked for as ``IMAGES/dir/a.jpg``, then
``IMAGES/a.jpg``; a relative path is relative to ``IMAGES`` (default: the CSV's folder). No path
may leave that folder. The image size is read from each image's header (the format has none).
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from od import atomic
from od.data.images import probe
from od.data import values
from od.data.csv import read_text
from od.data.paths import resolve_under
from od.data.records import ImageAnnotation, ObjectBox, ReadResult
from od.errors import AnnotationError, ImageError

SETS = {"TRAIN": "train", "VALIDATION": "val", "VALIDATE": "val", "TEST": "test",
        "UNASSIGNED": None}
"""AutoML ``SET`` column → od split (None: split by ratio)."""
WRITE_SETS = {"train": "TRAIN", "val": "VALIDATION", "test": "TEST", None: "UNASSIGNED"}
CSV_NAME = "automl.csv"


def image_folder(split: str) -> str:
    """Folder (relative to the output) where ``write`` expects the images."""
    return "images"


def _resolve(images_dir: Path, raw: str, where: str) -> Path:
    if "://" in raw:
        rest = raw.split("://", 1)[1].split("/", 1)
        rel = rest[1] if len(rest) > 1 else ""
        candidate = resolve_under(images_dir, rel, source=where)
        if candidate.is_file():
            return candidate
        return resolve_under(images_dir, rel.rsplit("/", 1)[-1], source=where)
    return resolve_under(images_dir, raw, source=where)


def _num(cell: str, where: str, col: int) -> float | None:
    cell = cell.strip()
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise AnnotationError(f"{where}: column {col + 1} is {cell!r}, not a number.") from None
    value = values.finite(value, f"column {col + 1}", where,
                          "Coordinates are fractions of the image size, from 0 to 1.")
    if not -1.0 <= value <= 2.0:  # far outside [0, 1]: not a fraction (a box outside the image
        raise AnnotationError(     # by less is judged, and may be clipped, like any other)
            f"{where}: column {col + 1} is {cell!r}, but AutoML coordinates are fractions of the "
            "image size, from 0 to 1; pixels? Divide x by the image width and y by its height, "
            "or use the pixel CSV form (filename,width,height,class,xmin,ymin,xmax,ymax; "
            "--format csv).")
    return value


def read(csv_path: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> ReadResult:
    """Read an AutoML Vision object-detection CSV.

    Args:
      csv_path: the CSV file (no header; a header row starting ``set,`` is skipped), or a folder
        holding ``automl.csv`` (the layout ``write`` makes).
      images_dir: folder the paths are resolved under (see module doc); default: the CSV's.
    Returns:
      ReadResult, one record per distinct path (first-seen order), boxes
      ``[ymin, xmin, ymax, xmax]`` normalised as given, ``split`` from ``SET``. ``width`` and
      ``height`` are read from the image header; they are 0 when the image is missing or
      undecodable (``od data convert`` then reports it by name as ``missing_image`` /
      ``undecodable_image``).
    Raises:
      AnnotationError: an unknown SET, a path given two different SETs, a box without two
        vertices, non-numeric or out-of-[0, 1]-format cells, naming ``file:line``.
      UnsafePathError: a path escapes ``images_dir``.
    """
    path = Path(csv_path)
    if path.is_dir():
        path = path / CSV_NAME
    images_dir = Path(images_dir) if images_dir else path.parent
    text = read_text(path, "AutoML CSV")
    by_path: dict[str, dict] = {}
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        where = f"{path}:{line}"
        if not row or not "".join(row).strip():
            continue
        if line == 1 and row[0].strip().lower() == "set":
            continue
        if len(row) < 2:
            raise AnnotationError(f"{where}: expected SET,PATH[,LABEL,X_MIN,Y_MIN,,,X_MAX,Y_MAX,,]"
                                  f", got {','.join(row)!r}.")
        set_name = row[0].strip().upper()
        if set_name not in SETS:
            raise AnnotationError(f"{where}: SET is {row[0]!r}; use one of {', '.join(SETS)}. "
                                  "(Is this a pixel CSV? Use --format csv.)")
        raw = row[1].strip()
        entry = by_path.setdefault(raw, {"split": SETS[set_name], "boxes": [], "where": where})
        if entry["split"] != SETS[set_name]:
            raise AnnotationError(f"{where}: {raw} is in set {set_name} here but in another set "
                                  f"at {entry['where']}; an image belongs to one set.")
        label = row[2].strip() if len(row) > 2 else ""
        nums = [_num(c, where, k) for k, c in enumerate(row[3:11], start=3)]
        if not label and all(v is None for v in nums):
            continue  # an image without boxes
        if not label:
            raise AnnotationError(f"{where}: a box without a label; fill column 3.")
        xs = [v for v in nums[0::2] if v is not None]
        ys = [v for v in nums[1::2] if v is not None]
        if len(xs) < 2 or len(ys) < 2 or len(xs) != len(ys):
            raise AnnotationError(f"{where}: box {label!r} needs two vertices (X_MIN,Y_MIN,,,"
                                  "X_MAX,Y_MAX,,) or four, normalised to [0, 1].")
        entry["boxes"].append(ObjectBox(min(ys), min(xs), max(ys), max(xs), label))
    if not by_path:
        raise AnnotationError(f"{path}: the CSV has no rows.")
    records, names = [], []
    for raw, e in by_path.items():
        image_path = _resolve(images_dir, raw, e["where"])
        try:  # the stored pixels' size: boxes are taken to be on them (od.data.convert, EXIF)
            width, height = probe(image_path, upright=False)
        except ImageError:
            width = height = 0  # reported by name when the image is encoded
        records.append(ImageAnnotation(image_path, width, height, tuple(e["boxes"]),
                                       source=e["where"], split=e["split"]))
        names.extend(b.label for b in e["boxes"] if b.label not in names)
    return ReadResult(records, names)


def write(records: list[ImageAnnotation], out_dir: str | os.PathLike, label_map=None
          ) -> list[Path]:
    """Write ``out_dir/automl.csv`` (two-vertex form, 6 decimals, paths relative to ``out_dir``).

    Args:
      records: images under ``out_dir``; boxes normalised ``[ymin, xmin, ymax, xmax]``.
      label_map: unused (labels are written by name); accepted for the writers table.
    Returns:
      [the CSV path] (written atomically).
    """
    out_dir = Path(out_dir)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in records:
        rel = r.image_path.relative_to(out_dir).as_posix()
        if not r.boxes:
            w.writerow([WRITE_SETS[r.split], rel])
        for b in r.boxes:
            w.writerow([WRITE_SETS[r.split], rel, b.label, f"{b.xmin:.6f}", f"{b.ymin:.6f}", "",
                        "", f"{b.xmax:.6f}", f"{b.ymax:.6f}", "", ""])
    return [atomic.write_text(out_dir / CSV_NAME, buf.getvalue())]
