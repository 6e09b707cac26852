"""TFRecord files and ``tf.train.Example`` messages without importing TensorFlow.

Two pieces, both byte-compatible with TensorFlow's own:

- ``Example``: the message class of ``tensorflow/core/example/example.proto`` (``Example`` →
  ``Features`` → ``map<string, Feature>``, ``Feature`` = one of ``BytesList``, ``FloatList``,
  ``Int64List``), built from a descriptor with ``protobuf`` at import time (no ``protoc`` step).
- TFRecord framing (``tensorflow/core/lib/io/record_writer.cc``): each record is
  ``uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)``,
  little-endian, with CRC-32C masked as ``((crc >> 15 | crc << 17) + 0xa282ead8)``.

CRC-32C comes from ``google_crc32c`` (C code) when it is installed; without it, files are read and
written through TensorFlow's C++ record reader/writer, imported inside the functions. Either way
the checksums are written and verified, so a corrupt record is an AnnotationError naming the file.

Worker processes of ``od data convert`` use this module so that they never pay TensorFlow's
multi-second import.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Iterable, Iterator

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from od.errors import AnnotationError

try:  # optional C accelerator (Google's own package); TensorFlow's C++ code is the fallback
    import google_crc32c as _crc
except ImportError:  # pragma: no cover - depends on the environment
    _crc = None


def _build_example_class():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="od/tf_example.proto", package="tensorflow", syntax="proto3")
    F = descriptor_pb2.FieldDescriptorProto
    rep, opt = F.LABEL_REPEATED, F.LABEL_OPTIONAL
    fdp.message_type.add(name="BytesList").field.add(name="value", number=1, type=F.TYPE_BYTES,
                                                     label=rep)
    for name, typ in (("FloatList", F.TYPE_FLOAT), ("Int64List", F.TYPE_INT64)):
        fld = fdp.message_type.add(name=name).field.add(name="value", number=1, type=typ, label=rep)
        fld.options.packed = True
    feature = fdp.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for num, (name, typ) in enumerate((("bytes_list", "BytesList"), ("float_list", "FloatList"),
                                       ("int64_list", "Int64List")), start=1):
        feature.field.add(name=name, number=num, type=F.TYPE_MESSAGE, label=opt,
                          type_name=f".tensorflow.{typ}", oneof_index=0)
    features = fdp.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=F.TYPE_MESSAGE, label=opt,
                    type_name=".tensorflow.Feature")
    features.field.add(name="feature", number=1, type=F.TYPE_MESSAGE, label=rep,
                       type_name=".tensorflow.Features.FeatureEntry")
    fdp.message_type.add(name="Example").field.add(
        name="features", number=1, type=F.TYPE_MESSAGE, label=opt, type_name=".tensorflow.Features")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.Example"))


Example = _build_example_class()
"""``tf.train.Example`` wire-compatible message class (``Example().features.feature[key]``)."""

_MASK_DELTA = 0xA282EAD8


def _masked_crc(data: bytes) -> int:
    crc = _crc.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(data: bytes) -> bytes:
    """One record's bytes on disk: header, ``data``, footer (needs ``google_crc32c``)."""
    header = struct.pack("<Q", len(data))
    return b"".join((header, struct.pack("<I", _masked_crc(header)), data,
                     struct.pack("<I", _masked_crc(data))))


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> int:
    """Write serialized records to a TFRecord file at ``path`` (uncompressed); returns the count.

    Not atomic on its own: callers write into a temporary folder renamed when complete.
    """
    n = 0
    if _crc is None:  # pragma: no cover - fallback
        import tensorflow as tf
        with tf.io.TFRecordWriter(str(path)) as w:
            for r in records:
                w.write(r)
                n += 1
        return n
    with open(path, "wb") as f:
        for r in records:
            f.write(frame(r))
            n += 1
    return n


def iter_records(path: str | os.PathLike) -> Iterator[bytes]:
    """Yield each record of an uncompressed TFRecord file, checksums verified.

    Raises:
      AnnotationError: the file is missing, truncated or has a bad checksum (naming the file and
        the record's index). GZIP/ZLIB-compressed TFRecords are not supported.
    """
    path = Path(path)
    if _crc is None:  # pragma: no cover - fallback
        yield from _iter_records_tf(path)
        return
    try:
        f = open(path, "rb")
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read TFRecord file ({e.strerror}).") from None
    with f:
        k = 0
        while True:
            header = f.read(12)
            if not header:
                return
            if len(header) < 12:
                raise _corrupt(path, k, "truncated header")
            length, crc = struct.unpack("<QI", header)
            if _masked_crc(header[:8]) != crc:
                raise _corrupt(path, k, "bad length checksum (is it a GZIP/ZLIB TFRecord?)")
            data = f.read(length)
            footer = f.read(4)
            if len(data) < length or len(footer) < 4:
                raise _corrupt(path, k, "truncated record")
            if _masked_crc(data) != struct.unpack("<I", footer)[0]:
                raise _corrupt(path, k, "bad data checksum")
            yield data
            k += 1


def _corrupt(path: Path, k: int, what: str) -> AnnotationError:
    return AnnotationError(f"{path}: record {k} is corrupt ({what}). Re-create or re-download the "
                           "TFRecord file; od reads uncompressed TFRecords only.")


def _iter_records_tf(path: Path) -> Iterator[bytes]:  # pragma: no cover - fallback
    import tensorflow as tf
    if not path.is_file():
        raise AnnotationError(f"{path}: cannot read TFRecord file (not found).")
    try:
        for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
            yield raw
    except tf.errors.DataLossError as e:
        raise AnnotationError(f"{path}: corrupt TFRecord ({e.message}).") from None
