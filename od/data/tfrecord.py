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

TensorFlow is imported inside the functions, so the data readers stay importable without it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from od.data.records import ImageAnnotation, ObjectBox

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
                 source_id: int, filename: str):
    """Build a ``tf.train.Example`` for one image.

    Args:
      record: the image; its boxes are normalised ``[ymin, xmin, ymax, xmax]``.
      encoded: the encoded image bytes to store; ``image_format`` e.g. ``'jpeg'``.
      class_ids: label-map id per box (same order as ``record.boxes``).
      source_id: integer image id, stored as its decimal string.
      filename: name stored in ``image/filename``.
    """
    import tensorflow as tf

    def b(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))

    def i(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    def f(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))

    boxes = record.boxes
    feature = {
        ENCODED: b([encoded]),
        FORMAT: b([image_format.encode()]),
        HEIGHT: i([record.height]),
        WIDTH: i([record.width]),
        FILENAME: b([filename.encode()]),
        SOURCE_ID: b([str(source_id).encode()]),
        KEY_SHA256: b([hashlib.sha256(encoded).hexdigest().encode()]),
        YMIN: f([x.ymin for x in boxes]),
        XMIN: f([x.xmin for x in boxes]),
        YMAX: f([x.ymax for x in boxes]),
        XMAX: f([x.xmax for x in boxes]),
        CLASS_TEXT: b([x.label.encode() for x in boxes]),
        CLASS_LABEL: i(list(class_ids)),
        DIFFICULT: i([int(x.difficult) for x in boxes]),
        TRUNCATED: i([int(x.truncated) for x in boxes]),
        IS_CROWD: i([int(x.is_crowd) for x in boxes]),
        AREA: f([(x.ymax - x.ymin) * record.height * (x.xmax - x.xmin) * record.width
                 for x in boxes]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


@dataclass(frozen=True)
class DecodedExample:
    """One example read back from a TFRecord.

    Attributes:
      record: ImageAnnotation with ``image_path`` = the stored ``image/filename`` (not a real file).
      encoded: the stored image bytes.
      class_ids: int [N] label-map ids; ``source_id``: the stored id string.
    """

    record: ImageAnnotation
    encoded: bytes
    class_ids: tuple[int, ...]
    source_id: str


def parse_example(serialized: bytes, source: str = "") -> DecodedExample:
    """Decode one serialized ``tf.train.Example`` with the keys above (OD API compatible)."""
    import tensorflow as tf

    ex = tf.train.Example.FromString(serialized)
    feat = ex.features.feature

    def bl(key):
        return list(feat[key].bytes_list.value) if key in feat else []

    def il(key):
        return list(feat[key].int64_list.value) if key in feat else []

    def fl(key):
        return list(feat[key].float_list.value) if key in feat else []

    ymin, xmin, ymax, xmax = fl(YMIN), fl(XMIN), fl(YMAX), fl(XMAX)
    n = len(ymin)
    texts = [t.decode() for t in bl(CLASS_TEXT)] or [""] * n
    ids = il(CLASS_LABEL) or [0] * n
    diff, trunc, crowd = il(DIFFICULT) or [0] * n, il(TRUNCATED) or [0] * n, il(IS_CROWD) or [0] * n
    boxes = tuple(ObjectBox(ymin[k], xmin[k], ymax[k], xmax[k], texts[k] or str(ids[k]),
                            bool(diff[k]), bool(trunc[k]), bool(crowd[k])) for k in range(n))
    filename = (bl(FILENAME) or [b""])[0].decode()
    height, width = (il(HEIGHT) or [0])[0], (il(WIDTH) or [0])[0]
    record = ImageAnnotation(Path(filename), width, height, boxes, source=source)
    return DecodedExample(record, (bl(ENCODED) or [b""])[0], tuple(ids),
                          (bl(SOURCE_ID) or [b""])[0].decode())


def read(pattern: str | os.PathLike) -> list[DecodedExample]:
    """Read every example from the TFRecord files matching ``pattern`` (a glob), in file order."""
    import tensorflow as tf

    files = sorted(tf.io.gfile.glob(str(pattern)))
    out = []
    for fn in files:
        for k, raw in enumerate(tf.data.TFRecordDataset(fn).as_numpy_iterator()):
            out.append(parse_example(raw, f"{fn}#{k}"))
    return out


def write_shard(path: str | os.PathLike, examples) -> int:
    """Write serialized examples to ``path``; returns the count. Not atomic on its own: callers
    write into a temporary folder that is renamed once every shard is complete."""
    import tensorflow as tf

    n = 0
    with tf.io.TFRecordWriter(str(path)) as w:
        for ex in examples:
            w.write(ex.SerializeToString())
            n += 1
    return n


def boxes_array(record: ImageAnnotation) -> np.ndarray:
    """float32 [N, 4] ``[ymin, xmin, ymax, xmax]`` normalised boxes of ``record``."""
    return np.array([b.yxyx for b in record.boxes], dtype=np.float32).reshape(-1, 4)
