"""The per-image work of ``od data convert``, run in its worker processes (and in the calling
process, which works alongside them: ``od.data.parallel.Pool``).

A job is a chunk of one output file's images: each image is read, checked and encoded
(``od.data.images.encode_for_training``), its boxes are checked against the real image size
(``od.data.guards.place_boxes``), and the chunk is written: TFRecord examples to one file (a
whole shard, or one part of a shard that ``od.data.convert`` joins in order), or image files
for the other targets. This module imports what that needs and no more (no TensorFlow, no NumPy
unless an image needs it), since every worker imports it when it starts.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from od.data import tfrecord
from od.data.images import encode_for_training
from od.errors import ImageError, MissingImageError

_JPEG_SUFFIXES = (".jpg", ".jpeg")


def encode_chunk(job: tuple) -> list[tuple]:
    """Worker: encode and validate the job's images, then write them.

    Args:
      job: ``(target, path, items, verify, exif)``: ``target`` ``'tfrecord'`` (write the
        examples to the file ``path``) or another format (write the images into the folder
        ``path``); ``items``: ``(source_id, record, class_ids, name)`` each; ``verify`` and
        ``exif``: as ``od.data.convert.convert``.
    Returns:
      ``(source_id, problem, reencoded, sha256, name, moved)`` per item: the
      ``od.data.validate.Problem`` that leaves it out (else None), why its bytes were
      re-encoded, the hex SHA-256 of the stored bytes, the stored name, and the record with its
      boxes moved onto the upright image where EXIF asked for it (else None).
    Raises:
      OSError: the output cannot be written; AnnotationError: a box outside [0, 1] reached the
        writer (``tfrecord.make_example``).
    """
    target, path, items, verify, exif = job
    examples, report = [], []
    for source_id, record, class_ids, name in items:
        try:
            enc = encode_for_training(record.image_path, record.image_data, verify=verify)
        except ImageError as e:
            from od.data.validate import Problem
            reason = "missing_image" if isinstance(e, MissingImageError) else "undecodable_image"
            where = f"{record.source}: " if record.source else ""  # the annotation naming it
            report.append((source_id, Problem(reason, where + str(e)), "", "", name, None))
            continue
        if enc.orientation == 1 and (record.width, record.height) == (enc.width, enc.height):
            problem, moved = None, False  # what guards.place_boxes says of an upright image
        else:
            from od.data import guards
            record, problem, moved = guards.place_boxes(record, enc, exif)
        if problem:
            report.append((source_id, problem, "", "", name, None))
            continue
        if target != "tfrecord" and Path(name).suffix.lower() not in _JPEG_SUFFIXES:
            name = str(Path(name).with_suffix(".jpg"))  # a file of JPEG bytes; a TFRecord keeps
            # the source's name in image/filename (image/format says what is stored)
        if target == "tfrecord":
            ex = tfrecord.make_example(record, enc.data, enc.format, class_ids, source_id, name)
            digest = ex.features.feature[tfrecord.KEY_SHA256].bytes_list.value[0].decode()
            examples.append(ex.SerializeToString())
        else:
            digest = hashlib.sha256(enc.data).hexdigest()
            out = Path(path) / name
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(enc.data)
        report.append((source_id, None, enc.reencoded, digest, name, record if moved else None))
    if target == "tfrecord":
        tfrecord.write_shard(path, examples)
    return report
