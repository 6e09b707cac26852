"""CSV annotations: one row per box, pixel coordinates.

Generic form (the raccoon tutorial's ``xml_to_csv.py`` output)::

    filename,width,height,class,xmin,ymin,xmax,ymax
    raccoon-17.jpg,259,194,raccoon,95,60,167,118

Rows of the same ``filename`` make one image. A row whose ``class`` and box cells are empty
declares an image with no boxes (a negative). Coordinates are pixels, ``x / width`` normalised.
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from od import atomic
from od.data import values
from od.data.paths import resolve_under
from od import boxes as box_lib
from od.data.records import ImageAnnotation, ObjectBox, ReadResult
from od.errors import AnnotationError, undecodable_at

PIXEL_COLUMNS = ("filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax")
_NORMALISED_FIX = ("Multiply x by width and y by height, or write the file in the AutoML form "
                   "(normalised coordinates; --format automl).")


def _num(row: dict, key: str, where: str) -> float:
    raw = (row.get(key) or "").strip()
    try:
        value = float(raw)
    except ValueError:
        comma = "," in raw and _is_number(raw.replace(",", ".", 1))
        raise AnnotationError(f"{where}: column {key!r} is {raw!r}, not a number." + (
            " Write decimals with a point (1.5), not a comma." if comma else "")) from None
    return values.finite(value, f"column {key!r}", where)


def _delimiter(text: str) -> str:
    """``,``, or the ``;`` / tab that separates a header line holding no comma (Excel writes
    ``;`` where the decimal separator is a comma)."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if "," not in first:
        for d in (";", "\t"):
            if d in first:
                return d
    return ","


def _check_header(path: Path, header: list[str], raw: list[str]) -> None:
    """Refuse a header that lacks a column of ``PIXEL_COLUMNS`` or names one twice (which
    ``csv.DictReader`` would silently resolve to the last one); names are matched without case
    and surrounding spaces."""
    twice = sorted({c for c in header if c in PIXEL_COLUMNS and header.count(c) > 1})
    if twice:
        raise AnnotationError(f"{path}: the CSV header names column(s) {twice} more than once "
                              f"({raw}); keep one of each.")
    missing = [c for c in PIXEL_COLUMNS if c not in header]
    if not missing:
        return
    hint = " For the AutoML Vision form use --format automl."
    if len(raw) > 2 and all(_is_number(v) for v in raw[1:3]):
        hint = (" The first row looks like data, not a header: add the line "
                f"'{','.join(PIXEL_COLUMNS)}' at the top (columns in that order)." + hint)
    raise AnnotationError(f"{path}: CSV header {raw} lacks columns {missing}. Expected "
                          f"{','.join(PIXEL_COLUMNS)} (pixels).{hint}")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def read_text(path: Path, what: str = "CSV") -> str:
    """The text of a UTF-8 file (with or without a byte-order mark), or of a UTF-16 file that
    starts with its byte-order mark (Excel's "Unicode" export; the mark makes it unambiguous).

    Raises:
      AnnotationError: unreadable, or not UTF-8: the message gives the line and the bytes, and
        how to re-save the file (a CSV from Excel on Windows is often cp1252/latin-1; guessing
        the encoding could silently turn file names into names that do not exist).
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read {what} ({e.strerror}).") from None
    try:
        utf32 = data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff"))
        if data.startswith((b"\xff\xfe", b"\xfe\xff")) and not utf32:
            return data.decode("utf-16")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line, bad = undecodable_at(e)
        offset = e.start + len(data) - len(e.object)  # e.start counts after a stripped BOM
        raise AnnotationError(
            f"{path}:{line}: the {what} is not UTF-8 text (bytes {bad!r} at "
            f"offset {offset}). Save it as UTF-8 (in Excel: 'CSV UTF-8'; or run "
            f"iconv -f cp1252 -t utf-8 {path.name} > fixed{path.suffix}).") from None


def read(csv_path: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> ReadResult:
    """Read a pixel-coordinate CSV (columns ``filename,width,height,class,xmin,ymin,xmax,ymax``).

    Args:
      csv_path: the CSV file (header row required, names matched without case; extra
        columns are ignored; ``;`` or tab separators are taken where the header has no
        comma; coordinates that look normalised to [0, 1] are refused), or a folder
        holding ``{train,val,test}_labels.csv`` (the layout ``write`` makes; the split of each
        record is set, images default to the folder's ``images/``).
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
    if path.is_dir():
        return _read_folder(path, images_dir)
    images_dir = Path(images_dir) if images_dir else path.parent
    text = read_text(path)
    with io.StringIO(text, newline="") as f:
        reader = csv.DictReader(f, delimiter=_delimiter(text))
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        _check_header(path, header, reader.fieldnames or [])
        reader.fieldnames = header
        by_name: dict[str, dict] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            name = (row["filename"] or "").strip()
            width, height = values.image_size(_num(row, "width", where),
                                              _num(row, "height", where), where)
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
            values.pixel_box(xmin, ymin, xmax, ymax, width, height, where, _NORMALISED_FIX)
            entry["boxes"].append(ObjectBox(*box_lib.from_pixels((xmin, ymin, xmax, ymax),
                                                                 width, height), label))
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


def _read_folder(folder: Path, images_dir) -> ReadResult:
    files = [(folder / f"{s}_labels.csv", s) for s in ("train", "val", "test")
             if (folder / f"{s}_labels.csv").is_file()]
    if not files:
        raise AnnotationError(f"{folder}: no train_labels.csv / val_labels.csv / test_labels.csv "
                              "here; give the CSV file itself (--annotations FILE.csv).")
    images_dir = images_dir or (folder / "images" if (folder / "images").is_dir() else folder)
    result = ReadResult([], [])
    for f, split in files:
        part = read(f, images_dir)
        result.records.extend(r.replace(split=split) for r in part.records)
        result.class_names.extend(c for c in part.class_names if c not in result.class_names)
    return result


def image_folder(split: str) -> str:
    """Folder (relative to the output) where ``write`` expects the images."""
    return "images"


def write(records: list[ImageAnnotation], out_dir: str | os.PathLike, label_map=None
          ) -> list[Path]:
    """Write ``out_dir/{train,val,test}_labels.csv`` (columns ``PIXEL_COLUMNS``, pixels rounded to
    integers, filenames relative to ``out_dir/images``) for each split present.

    Read back with ``--format csv --images OUT/images --annotations train=OUT/train_labels.csv``.
    An image without boxes is one row with empty class and box cells.

    Args:
      records: images with ``split`` set (None is written as train), ``image_path`` under
        ``out_dir/images``; boxes normalised ``[ymin, xmin, ymax, xmax]``.
      label_map: unused (classes are written by name); accepted for the writers table.
    Returns:
      the CSV files written (atomically).
    """
    out_dir = Path(out_dir)
    images = out_dir / "images"
    written = []
    for split in ("train", "val", "test"):
        recs = [r for r in records if (r.split or "train") == split]
        if not recs:
            continue
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(PIXEL_COLUMNS)
        for r in recs:
            name = r.image_path.relative_to(images).as_posix()
            if not r.boxes:
                w.writerow([name, r.width, r.height, "", "", "", "", ""])
            for b in r.boxes:
                w.writerow([name, r.width, r.height, b.label,
                            *(round(v) for v in box_lib.to_pixels(b.yxyx, r.width, r.height))])
        written.append(atomic.write_text(out_dir / f"{split}_labels.csv", buf.getvalue()))
    return written
