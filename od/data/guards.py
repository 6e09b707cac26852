"""Dataset-wide checks of ``od data convert``: options, empty sources, class names that differ
only by case, and where boxes go on an EXIF-rotated image.

EXIF orientation rule (``exif`` option, default ``'auto'``). A photo from a phone often stores its
pixels sideways with an EXIF tag telling viewers to turn it. Labelling tools disagree on which
picture the boxes are drawn on: LabelImg (Qt) has drawn on the stored pixels in many versions
(its issues #198, #342, #376), as darknet and the OD API's converters read them (and
``tf.io.decode_jpeg`` ignores EXIF); labelme (since its PR #305), CVAT and Roboflow show the turned
picture, and Roboflow's default "auto-orient" writes it turned with the tag removed. `od` stores
every image upright (and ``od detect`` reads images upright), so boxes drawn on the stored pixels
are moved with the image (``od.boxes.exif_transform``). Which picture the boxes belong to:

- ``'auto'``: the annotation's width x height decides: equal to the stored pixels' (and not
  the turned picture's) → the stored pixels, boxes moved; equal to the turned picture's → boxes
  kept; neither → ``size_mismatch``. Where both sizes are equal (a square image, or a 180° turn
  or a mirror) nothing tells: the boxes are taken to be on the stored pixels, the OD API's and
  LabelImg's convention (``--exif displayed`` says otherwise). AutoML CSV states
  no size; its records carry the stored size, so they follow the same convention.
- ``'stored'``: always the stored pixels (a size that is not theirs is ``size_mismatch``).
- ``'displayed'``: always the turned picture, as the tool showed it (size checked likewise).

Every image whose boxes were moved is counted in summary.json (``fixes.exif_boxes_rotated``).
"""
from __future__ import annotations

import math
import unicodedata
from pathlib import Path

from od.boxes import exif_transform
from od.data.images import EncodedImage
from od.data.records import ImageAnnotation, ObjectBox, ReadResult
from od.data.split import parse_ratios
from od.data.validate import Problem, check_size
from od.errors import AnnotationError, OdError

EXIF_POLICIES = ("auto", "stored", "displayed")


def check_options(*, shard_bytes, workers, split, exif: str, verify: str) -> None:
    """Refuse impossible convert options before any work.

    Raises:
      OdError: ``shard_bytes`` not a positive finite number, ``workers`` < 1, bad split ratios,
        unknown ``exif`` or ``verify`` value (the message names the option and the value).
    """
    if isinstance(shard_bytes, bool) or not isinstance(shard_bytes, (int, float)) \
            or not math.isfinite(shard_bytes) or shard_bytes < 1:
        raise OdError(f"shard size {shard_bytes!r} bytes is not a positive number; give "
                      "--shard-mb a size in MB greater than 0, e.g. --shard-mb 100.")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise OdError(f"workers={workers!r}: give --workers a whole number of processes, at "
                      "least 1 (or leave it out to use one per CPU).")
    parse_ratios(split)
    if exif not in EXIF_POLICIES:
        raise OdError(f"exif={exif!r} is not one of {', '.join(EXIF_POLICIES)}.")
    if verify not in ("fast", "full"):
        raise OdError(f"verify={verify!r} is not 'fast' or 'full'.")


def check_images_folder(images) -> None:
    """An OdError when ``--images`` is given but is not a folder (rather than one "image not
    found" per image)."""
    if images is not None and not Path(images).is_dir():
        what = "not a folder" if Path(images).exists() else "no such folder"
        raise OdError(f"--images {images}: {what}; give the folder that holds the images the "
                      "annotations name.")


def check_not_empty(read: ReadResult, annotations, label_map_given: bool = False) -> None:
    """An AnnotationError if the sources hold no images, or, unless a label map is given, not
    one box in any image (no class to train: an empty export, a wrong folder). With a label map
    a set of negatives only (e.g. background images for a test split) is allowed."""
    if not read.records:
        raise AnnotationError(f"{annotations}: the annotations hold no images. Check the path "
                              "and --format.")
    if not label_map_given and not any(r.boxes for r in read.records):
        raise AnnotationError(
            f"{annotations}: the annotations list {len(read.records)} image(s) but not one box; "
            "there is no class to train. Check the path and --format, or re-export with the "
            "boxes (to convert negatives only, pass --label-map).")


def check_case_clashes(records: list[ImageAnnotation], wanted: set[str] | None = None) -> None:
    """An AnnotationError naming both spellings and where each is used when two class names
    differ only by letter case or Unicode form (``Raccoon`` and ``raccoon``, or a composed and a
    decomposed ``café``, would become two classes that split one object's examples). Names that
    a user-given label map lists both of (``wanted``) are taken as meant.

    The fix is the user's: rename in the annotations, or give ``--label-map`` listing both
    names if they really are different classes. `od` does not merge them itself: which spelling
    is right, and whether the two are the same class, is not something it can know.
    """
    first: dict[str, tuple[str, str]] = {}
    for r in records:
        for b in r.boxes:
            key = unicodedata.normalize("NFKC", b.label).casefold()
            if key not in first:
                first[key] = (b.label, r.source)
                continue
            other, where = first[key]
            if other != b.label and not (wanted and {other, b.label} <= wanted):
                raise AnnotationError(
                    f"class names {other!r} ({where}) and {b.label!r} ({r.source}) differ only "
                    "by letter case or Unicode form, so they would become two classes. Rename one "
                    "spelling in the annotations; if they really are different classes, pass a "
                    "--label-map that lists both.")


def check_one_record_per_image(records: list[ImageAnnotation]) -> None:
    """An AnnotationError when two records name the same image file: two VOC files with one
    ``<filename>``, two COCO ``images`` entries with one ``file_name``, one file spelt two ways
    in a CSV (``a.jpg``, ``./a.jpg``), two AutoML ``gs://`` paths found as one local file.
    Converted as they are, the image would be stored twice, each copy with part of its boxes
    (the rest taught as background), perhaps one in train and one in test. Records carrying
    their own bytes (TFRecords) are not files and are not compared."""
    first: dict[Path, str] = {}
    for r in records:
        if r.image_data is not None:
            continue
        if r.image_path not in first:
            first[r.image_path] = r.source
            continue
        raise AnnotationError(
            f"{r.image_path} is annotated twice: by {first[r.image_path]} and by {r.source}. "
            "One image needs one annotation holding all its boxes: merge the two (or remove "
            "one), or put the images where their names say (an AutoML gs://b/x/a.jpg is looked "
            "for as IMAGES/x/a.jpg, then IMAGES/a.jpg).")


def place_boxes(record: ImageAnnotation, enc: EncodedImage, exif: str = "auto"
                ) -> tuple[ImageAnnotation, Problem | None, bool]:
    """Check ``record``'s size against the stored image ``enc`` and move its boxes onto the
    upright image when they were drawn on the stored pixels (module doc).

    Returns:
      (the record with the upright size and boxes, a ``size_mismatch`` Problem or None, whether
      the boxes were moved).
    """
    upright = (enc.width, enc.height)
    if enc.orientation == 1:
        return record, check_size(record, *upright), False
    stored, given = enc.stored_size, (record.width, record.height)
    if exif == "displayed" or (exif == "auto" and given != stored):
        problem = check_size(record, *upright)
        if problem:
            problem = Problem("size_mismatch", problem.message + (
                f" (The file is stored {stored[0]}x{stored[1]} and turned by its EXIF "
                f"orientation {enc.orientation}.)"))
        return record, problem, False
    if given != stored:  # exif == "stored"
        return record, check_size(record, *stored), False
    moved = exif_transform([b.yxyx for b in record.boxes], enc.orientation)
    boxes = tuple(ObjectBox(*map(float, yxyx), b.label, b.difficult, b.truncated, b.is_crowd)
                  for b, yxyx in zip(record.boxes, moved))
    return record.replace(width=upright[0], height=upright[1], boxes=boxes), None, True


def notes(summary: dict) -> list[str]:
    """One console line per kind of fix ``od data convert`` made (from summary.json)."""
    fixes, lines = summary.get("fixes", {}), []
    if fixes.get("duplicate_boxes"):
        lines.append(f"dropped {fixes['duplicate_boxes']} duplicate box(es) (same class and "
                     "coordinates as another box of the same image); see summary.json")
    if fixes.get("clipped_boxes"):
        lines.append(f"clipped {fixes['clipped_boxes']} box(es) to their image's edges (boxes "
                     "sticking out by up to 1 pixel, or more with --clip-boxes)")
    if fixes.get("size_from_image"):
        lines.append(f"{fixes['size_from_image']} annotation(s) had no image size (<size> 0x0 "
                     "or missing): took it from the image file")
    if fixes.get("exif_boxes_rotated"):
        lines.append(f"{fixes['exif_boxes_rotated']} EXIF-rotated image(s) stored upright with "
                     "their boxes turned along (boxes drawn on the stored pixels; see --exif)")
    return lines


def first_source(annotations) -> str:
    """The annotation source(s) as a short string for messages."""
    if isinstance(annotations, (list, tuple)):
        return ", ".join(str(Path(str(a))) for a in annotations)
    return str(annotations)
