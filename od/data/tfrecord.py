"""TFRecord shards of ``tf.train.Example`` in the Object Detection API's layout.

Feature keys are those of the OD API (``object_detection/core/standard_fields.py`` and
``dataset_tools/create_pascal_tf_record.py``), which Model Garden's ``TfExampleDecoder`` also reads:

=================================  ===========================================================
``image/encoded``                  bytes, the JPEG
``image/format``                   bytes, ``b'jpeg'``
``image/height``, ``image/width``  int64, pixels
``image/filename``                 bytes, file name relative to the images folder
``image/source_id``                bytes, a decimal image id (Model Garden parses it as int64)
``image/key/sha256``               bytes, hex SHA-256 of ``image/encoded``
``image/object/bbox/{ymin,xmin,ymax,xmax}``  float, normalised to [0, 1]
``image/object/class/text``        bytes, class name
``image/object/class/label``       int64, label-map id (>= 1)
``image/object/difficult``, ``truncated``, ``is_crowd``  int64 0/1
``image/object/area``              float, box area in pixels
=================================  ===========================================================

Examples are built and parsed with a wire-compatible message class and TFRecord framing from
``od.data.tfrecord_io``, so neither this module nor the convert workers import TensorFlow.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath


from od.data import values
from od.data.records import ImageAnnotation, ObjectBox, ReadResult
from od.data.tfrecord_io import Example, iter_records, write_records
from od.errors import AnnotationError
from od.layout import label_map_path

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
FILENAME = "image/filename"
SOURCE_ID = "image/source_id"
KEY_SHA256 = "image/key/sha256"
YMIN, XMIN = "image/object/bbox/ymin", "image/object/bbox/xmin"
YMAX, XMAX = "image/object/bbox/ymax", "image/object/bbox/xmax"
CLASS_TEXT = "image/object/class/text"
CLASS_LABEL = "image/object/class/label"
DIFFICULT = "image/object/difficult"
TRUNCATED = "image/object/truncated"
IS_CROWD = "image/object/is_crowd"
AREA = "image/object/area"


def shard_name(split: str, index: int, count: int) -> str:
    """``train-00000-of-00004.tfrecord`` (the OD API's ``-NNNNN-of-NNNNN`` sharding)."""
    return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def make_example(record: ImageAnnotation, encoded: bytes, image_format: str, class_ids: list[int],
                 source_id: int | str, filename: str) -> Example:
    """Build a ``tf.train.Example`` (wire-compatible, see od.data.tfrecord_io) for one image.

    Args:
      record: the image; its boxes are normalised ``[ymin, xmin, ymax, xmax]``; ``width`` and
        ``height`` (pixels) must be those of ``encoded``.
      encoded: the encoded image bytes to store; ``image_format`` e.g. ``'jpeg'``.
      class_ids: label-map id (>= 1) per box, same order as ``record.boxes``.
      source_id: image id, stored as its decimal string.
      filename: name stored in ``image/filename``.
    Returns:
      an ``Example`` message; ``.SerializeToString()`` gives the record bytes.
    Raises:
      AnnotationError: a box coordinate outside [0, 1] or NaN (a last guard: readers and
        ``check_boxes`` refuse or clip these first).
    """
    boxes = record.boxes
    if not all(0.0 <= v <= 1.0 for b in boxes for v in b.yxyx):  # NaN fails too
        bad = next(b for b in boxes if not all(0.0 <= v <= 1.0 for v in b.yxyx))
        raise AnnotationError(f"{record.source or filename}: box {bad.label!r} "
                              f"ymin,xmin,ymax,xmax={bad.yxyx} is not inside [0, 1]; only "
                              "validated boxes (od.data.validate.check_boxes) can be stored.")
    ex = Example()
    feat = ex.features.feature
    for key, vals in ((ENCODED, [encoded]), (FORMAT, [image_format.encode()]),
                        (FILENAME, [filename.encode()]), (SOURCE_ID, [str(source_id).encode()]),
                        (KEY_SHA256, [hashlib.sha256(encoded).hexdigest().encode()]),
                        (CLASS_TEXT, [x.label.encode() for x in boxes])):
        feat[key].bytes_list.value.extend(vals)
    for key, vals in ((HEIGHT, [record.height]), (WIDTH, [record.width]),
                        (CLASS_LABEL, list(class_ids)),
                        (DIFFICULT, [int(x.difficult) for x in boxes]),
                        (TRUNCATED, [int(x.truncated) for x in boxes]),
                        (IS_CROWD, [int(x.is_crowd) for x in boxes])):
        feat[key].int64_list.value.extend(vals)
    for key, vals in ((YMIN, [x.ymin for x in boxes]), (XMIN, [x.xmin for x in boxes]),
                        (YMAX, [x.ymax for x in boxes]), (XMAX, [x.xmax for x in boxes]),
                        (AREA, [(x.ymax - x.ymin) * record.height * (x.xmax - x.xmin)
                                * record.width for x in boxes])):
        feat[key].float_list.value.extend(vals)
    return ex


@dataclass(frozen=True)
class DecodedExample:
    """One example read back from a TFRecord.

    Attributes:
      record: ImageAnnotation with boxes ``[ymin, xmin, ymax, xmax]`` normalised as stored,
        ``image_path`` = the stored ``image/filename`` (not a real file), ``image_data`` = the
        stored image bytes.
      encoded: the stored image bytes; ``image_format``: the stored ``image/format``.
      class_ids: int [N] label-map ids (0 where the record has none); ``source_id``: as stored.
    """

    record: ImageAnnotation
    encoded: bytes
    class_ids: tuple[int, ...]
    source_id: str
    image_format: str = ""


def parse_example(serialized: bytes, source: str = "") -> DecodedExample:
    """Decode one serialized ``tf.train.Example`` with the keys above (OD API compatible).

    Records written by the OD API's own tools (``image/format`` ``'jpg'``, a file name as
    ``source_id``, no ``key/sha256``, no flags) are accepted; a box without ``class/text`` gets
    its ``class/label`` id, as a string, for a label.

    Raises:
      AnnotationError: not an Example, or box lists of different lengths (naming ``source``).
    """
    try:
        ex = Example.FromString(serialized)
    except Exception:  # protobuf's DecodeError
        raise AnnotationError(f"{source}: record is not a tf.train.Example.") from None
    feat = ex.features.feature

    def bl(key):
        return list(feat[key].bytes_list.value) if key in feat else []

    def il(key):
        return list(feat[key].int64_list.value) if key in feat else []

    def fl(key):
        return list(feat[key].float_list.value) if key in feat else []

    ymin, xmin, ymax, xmax = fl(YMIN), fl(XMIN), fl(YMAX), fl(XMAX)
    n = len(ymin)
    texts = [t.decode("utf-8", "replace") for t in bl(CLASS_TEXT)] or [""] * n
    ids = il(CLASS_LABEL) or [0] * n
    diff, trunc, crowd = il(DIFFICULT) or [0] * n, il(TRUNCATED) or [0] * n, il(IS_CROWD) or [0] * n
    if any(len(v) != n for v in (xmin, ymax, xmax, texts, ids, diff, trunc, crowd)):
        raise AnnotationError(f"{source}: the example's box lists have different lengths "
                              f"({n} ymin values); the record is malformed.")
    boxes = tuple(ObjectBox(ymin[k], xmin[k], ymax[k], xmax[k], texts[k] or str(ids[k]),
                            bool(diff[k]), bool(trunc[k]), bool(crowd[k])) for k in range(n))
    filename = (bl(FILENAME) or [b""])[0].decode("utf-8", "replace")
    height, width = (il(HEIGHT) or [0])[0], (il(WIDTH) or [0])[0]
    encoded = (bl(ENCODED) or [b""])[0]
    record = ImageAnnotation(Path(filename), width, height, boxes, source=source,
                             image_data=encoded)
    return DecodedExample(record, encoded, tuple(ids),
                          (bl(SOURCE_ID) or [b""])[0].decode("utf-8", "replace"),
                          (bl(FORMAT) or [b""])[0].decode("utf-8", "replace"))


def record_files(path: str | os.PathLike) -> list[Path]:
    """The TFRecord files a user means by ``path``: a file, a folder (its ``*.tfrecord``,
    ``*.record`` and ``*.tfrecord-*`` files) or a glob pattern; sorted.

    Raises:
      AnnotationError: nothing matches.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file() and not f.name.startswith(".") and
                 (f.suffix in (".tfrecord", ".record") or ".tfrecord-" in f.name
                  or ".record-" in f.name)]
    else:
        files = [Path(f) for f in glob.glob(str(p))]
    if not files:
        raise AnnotationError(f"{p}: no TFRecord files found (expected a .tfrecord/.record file, "
                              "a folder of them, or a glob pattern).")
    return sorted(files)


def read(pattern: str | os.PathLike) -> list[DecodedExample]:
    """Read every example of the TFRecord files ``record_files(pattern)`` finds, in file order.

    Raises:
      AnnotationError: no files, a corrupt record or a malformed example (naming file#index).
    """
    out = []
    for fn in record_files(pattern):
        for k, raw in enumerate(iter_records(fn)):
            out.append(parse_example(raw, f"{fn}#{k}"))
    return out


def split_of(path: Path) -> str | None:
    """The split a TFRecord file name states: ``train*``, ``val*``/``valid*``/``eval*``,
    ``test*``; None otherwise."""
    stem = path.name.lower()
    for prefix, split in (("train", "train"), ("val", "val"), ("eval", "val"), ("test", "test")):
        if stem.startswith(prefix):
            return split
    return None


def read_annotations(path: str | os.PathLike, images_dir=None) -> ReadResult:
    """Reader for ``--format tfrecord``: TFRecords of ``tf.train.Example`` as a ReadResult.

    Args:
      path: a TFRecord file, a folder of them (``od data convert`` output or OD API
        ``train.record``/``test.record``), or a glob.
      images_dir: unused (the images are inside the records); accepted for the READERS table.
    Returns:
      ReadResult whose records carry ``image_data``; ``image_path`` is the record folder joined
      with the base name of ``image/filename`` (never a path outside it), ``split`` comes from the
      file name (``split_of``). Labels missing from ``class/text`` are taken from a
      ``label_map.pbtxt`` beside the records, else the id as text.
    Raises:
      AnnotationError: see ``read``; no examples at all; a size or class id out of range
        (``od.data.values``).
    """
    files = record_files(path)
    lm_path = label_map_path(files[0].parent)
    names_by_id = {}
    if lm_path.is_file():
        from od import label_map
        names_by_id = {it.id: it.name for it in label_map.read(lm_path).items}
    records, class_names = [], []
    for fn in files:
        split = split_of(fn)
        for k, raw in enumerate(iter_records(fn)):
            d = parse_example(raw, f"{fn}#{k}")
            values.image_size(d.record.width, d.record.height, f"{fn}#{k}: image/width, height")
            for cid in d.class_ids:
                if cid:
                    values.class_id(cid, f"{fn}#{k}: image/object/class/label")
            base = PurePosixPath(str(d.record.image_path).replace("\\", "/")).name
            if base in ("", ".", ".."):
                base = f"{d.source_id or k}.{d.image_format or 'jpg'}"
            boxes = tuple(b if b.label != str(i) or i not in names_by_id
                          else dataclasses.replace(b, label=names_by_id[i])
                          for b, i in zip(d.record.boxes, d.class_ids))
            records.append(d.record.replace(image_path=fn.parent / base, boxes=boxes,
                                            split=split))
            class_names.extend(b.label for b in boxes if b.label not in class_names)
    if not records:
        raise AnnotationError(f"{path}: the TFRecord file(s) {', '.join(f.name for f in files)} "
                              "hold no examples. Check the path, or convert the dataset again.")
    return ReadResult(records, class_names)


def write_shard(path: str | os.PathLike, examples) -> int:
    """Write examples (messages with ``SerializeToString``, or bytes) to the TFRecord ``path``;
    returns the count. Not atomic on its own: callers write into a temporary folder that is
    renamed once every shard is complete."""
    return write_records(path, (e if isinstance(e, bytes) else e.SerializeToString()
                                for e in examples))

