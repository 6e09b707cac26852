"""od/data/tfrecord.py: TF Example records written by od and by the OD API read back exactly."""
import pytest

from od.data import tfrecord
from od.data.convert import convert
from od.errors import AnnotationError

from test_data_formats import RACCOON, beside, make_image, needs_raccoon, write_voc


@needs_raccoon
def test_od_api_test_record_reads_back_box_for_box():
    import csv
    rows = list(csv.DictReader(open(RACCOON / "data" / "test_labels.csv")))
    r = tfrecord.read_annotations(RACCOON / "data" / "test.record")
    assert len(r.records) == 40 and r.class_names == ["raccoon"]
    assert all(x.split == "test" and x.image_data[:2] == b"\xff\xd8" for x in r.records)
    expected = sorted((x["filename"], int(x["width"]), int(x["height"]), float(x["xmin"]),
                       float(x["ymin"]), float(x["xmax"]), float(x["ymax"])) for x in rows)
    got = sorted((x.image_path.name, x.width, x.height, b.xmin * x.width, b.ymin * x.height,
                  b.xmax * x.width, b.ymax * x.height) for x in r.records for b in x.boxes)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g[:3] == e[:3]
        assert all(abs(a - b) < 1e-3 for a, b in zip(g[3:], e[3:]))


def test_tfrecord_corrupt_record_is_named(tmp_path):
    make_image(tmp_path / "a.jpg")
    write_voc(tmp_path, "a.jpg", objects=[("cat", 64, 64, 192, 192, 0, 0)])
    convert(tmp_path, beside(tmp_path), split="1,0,0", workers=1)
    shard = next(beside(tmp_path).glob("train-*.tfrecord"))
    data = bytearray(shard.read_bytes())
    data[40] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(AnnotationError, match=r"train-00000-of-00001\.tfrecord: record 0"):
        tfrecord.read(shard)


def test_written_records_decode_in_tensorflow(tmp_path):
    tf = pytest.importorskip("tensorflow")
    make_image(tmp_path / "a.jpg")
    write_voc(tmp_path, "a.jpg", objects=[("cat", 64, 64, 192, 192, 0, 0)])
    convert(tmp_path, beside(tmp_path), split="1,0,0", workers=1)
    shard = next(beside(tmp_path).glob("train-*.tfrecord"))
    raw = next(iter(tf.data.TFRecordDataset(str(shard))))
    ex = tf.train.Example.FromString(raw.numpy()).features.feature
    assert list(ex["image/object/bbox/xmin"].float_list.value) == [0.25]
    assert list(ex["image/object/class/label"].int64_list.value) == [1]
    assert tf.io.decode_jpeg(ex["image/encoded"].bytes_list.value[0]).shape == (256, 256, 3)
