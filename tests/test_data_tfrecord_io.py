"""od/data/tfrecord_io.py: TFRecord framing without TensorFlow, checksums verified."""
import pytest

from od.data import tfrecord_io
from od.errors import AnnotationError


def test_written_records_read_back_and_tensorflow_reads_them(tmp_path):
    path = tmp_path / "a.tfrecord"
    assert tfrecord_io.write_records(path, [b"one", b"", b"three" * 100]) == 3
    assert list(tfrecord_io.iter_records(path)) == [b"one", b"", b"three" * 100]
    tf = pytest.importorskip("tensorflow")
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == [b"one", b"",
                                                                      b"three" * 100]


def test_tensorflows_own_records_read(tmp_path):
    tf = pytest.importorskip("tensorflow")
    with tf.io.TFRecordWriter(str(tmp_path / "t.tfrecord")) as w:
        w.write(b"abc")
    assert (tmp_path / "t.tfrecord").read_bytes() == tfrecord_io.frame(b"abc")


@pytest.mark.parametrize("damage,match", [
    (lambda b: b[:-2], "record 1 is corrupt \\(truncated record\\)"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "record 1 is corrupt \\(bad data checksum\\)"),
    (lambda b: b + b"\x00" * 5, "record 2 is corrupt \\(truncated header\\)"),
])
def test_damage_is_named_by_file_and_record(tmp_path, damage, match):
    path = tmp_path / "a.tfrecord"
    tfrecord_io.write_records(path, [b"first", b"second"])
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(AnnotationError, match=r"a\.tfrecord: " + match):
        list(tfrecord_io.iter_records(path))
    with pytest.raises(AnnotationError, match="cannot read TFRecord file"):
        list(tfrecord_io.iter_records(tmp_path / "missing.tfrecord"))
