"""Readers and writers of every annotation format: exact values, empty and odd cases first."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from od.data import automl, coco, tfrecord, voc
from od.data import csv as csv_fmt
from od.data.convert import convert, read_annotations
from od.errors import AnnotationError

SHARED = Path(__file__).parents[1].parent / "shared"
RACCOON = SHARED / "data" / "raccoon"
CHESS = SHARED / "data" / "chess_coco"
needs_raccoon = pytest.mark.skipif(not RACCOON.is_dir(), reason="../shared/data/raccoon absent "
                                   "(a user clone has no shared/)")
needs_chess = pytest.mark.skipif(not CHESS.is_dir(), reason="../shared/data/chess_coco absent "
                                 "(a user clone has no shared/)")


def make_image(path: Path, size=(256, 256), mode="RGB", fmt="JPEG", color=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = color if color is not None else (0 if mode == "L" else (120, 60, 30)[:len(mode)])
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def voc_xml(filename: str, w: int, h: int, objects=(), extra: str = "") -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><truncated>{t}</truncated><bndbox>"
        f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for n, x0, y0, x1, y1, d, t in objects)
    return (f"{extra}<annotation><filename>{filename}</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size>{objs}</annotation>")


def write_voc(folder: Path, name: str, w=256, h=256, objects=(), extra="") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / (Path(name).stem + ".xml")
    p.write_text(voc_xml(name, w, h, objects, extra))
    return p


# ---- VOC -------------------------------------------------------------------------------------
def test_voc_exact_normalised_box(tmp_path):
    write_voc(tmp_path, "a.jpg", objects=[("cat", 64, 64, 192, 192, 0, 0)])
    rec = voc.read(tmp_path).records[0]
    b = rec.boxes[0]
    assert (b.ymin, b.xmin, b.ymax, b.xmax) == (0.25, 0.25, 0.75, 0.75)
    assert rec.image_path == (tmp_path / "a.jpg").resolve()


def test_voc_keeps_difficult_and_truncated(tmp_path):
    write_voc(tmp_path, "a.jpg", objects=[("cat", 1, 2, 3, 4, 1, 0), ("dog", 1, 2, 3, 4, 0, 1)])
    b1, b2 = voc.read(tmp_path).records[0].boxes
    assert (b1.difficult, b1.truncated, b2.difficult, b2.truncated) == (True, False, False, True)


def test_voc_image_without_boxes_is_a_negative(tmp_path):
    write_voc(tmp_path, "a.jpg")
    r = voc.read(tmp_path)
    assert r.records[0].boxes == () and r.class_names == []


def test_voc_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(AnnotationError, match="no .xml files"):
        voc.read(tmp_path)


def test_voc_devkit_splits(tmp_path):
    root = tmp_path / "VOC2007"
    for stem in ("a", "b", "c"):
        write_voc(root / "Annotations", f"{stem}.jpg", objects=[("cat", 1, 1, 9, 9, 0, 0)])
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (root / "ImageSets" / "Main" / "test.txt").write_text("b\n")
    (root / "ImageSets" / "Main" / "cat_train.txt").write_text("c  1\n")
    recs = voc.read(root).records
    assert [r.split for r in recs] == ["train", "test", None]
    assert recs[0].image_path == (root / "JPEGImages" / "a.jpg").resolve()


# ---- COCO ------------------------------------------------------------------------------------
def coco_doc(**over):
    doc = {"categories": [{"id": 0, "name": "animals", "supercategory": "none"},
                          {"id": 3, "name": "cat", "supercategory": "animals"},
                          {"id": 7, "name": "dog", "supercategory": "animals"}],
           "images": [{"id": 10, "file_name": "a.jpg", "width": 256, "height": 256},
                      {"id": 11, "file_name": "b.jpg", "width": 100, "height": 50}],
           "annotations": [{"id": 1, "image_id": 10, "category_id": 7,
                            "bbox": [64, 64, 128, 128], "iscrowd": 1, "area": 1}]}
    doc.update(over)
    return doc


def test_coco_gaps_unused_parent_iscrowd_and_negative(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps(coco_doc()))
    r = coco.read(tmp_path / "x.json")
    assert r.class_names == ["dog"]  # 'animals' (unused parent) and unused 'cat' are not classes
    a, b = r.records
    assert a.boxes[0].yxyx == (0.25, 0.25, 0.75, 0.75) and a.boxes[0].is_crowd
    assert b.boxes == () and (b.width, b.height) == (100, 50)


def test_coco_unknown_category_names_file_and_id(tmp_path):
    doc = coco_doc(annotations=[{"id": 5, "image_id": 10, "category_id": 99, "bbox": [0, 0, 1, 1]}])
    (tmp_path / "x.json").write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match=r"x\.json: annotation 5: category_id 99"):
        coco.read(tmp_path / "x.json")


def test_coco_bad_bbox_and_bad_json(tmp_path):
    doc = coco_doc(annotations=[{"id": 5, "image_id": 10, "category_id": 3, "bbox": [0, 0, 1]}])
    (tmp_path / "x.json").write_text(json.dumps(doc))
    with pytest.raises(AnnotationError, match="bbox"):
        coco.read(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{not json")
    with pytest.raises(AnnotationError, match="not valid JSON"):
        coco.read(tmp_path / "y.json")


def test_coco_roboflow_layout_gives_splits(tmp_path):
    for folder in ("train", "valid", "test"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / coco.ROBOFLOW_JSON).write_text(json.dumps(coco_doc()))
    r = coco.read(tmp_path)
    assert [x.split for x in r.records] == ["train", "train", "val", "val", "test", "test"]
    assert r.records[2].image_path == (tmp_path / "valid" / "a.jpg").resolve()


@needs_chess
def test_chess_coco_reads_with_its_quirks():
    r = coco.read(CHESS)
    assert len(r.records) == 289 and sum(len(x.boxes) for x in r.records) == 2870
    assert "pieces" not in r.class_names
    assert sum(not x.boxes for x in r.records if x.split == "test") == 1
    assert {(x.width, x.height) for x in r.records} == {(2048, 1371)}


# ---- CSV and AutoML --------------------------------------------------------------------------
def test_csv_exact_values_and_negative_row(tmp_path):
    (tmp_path / "l.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                    "a.jpg,256,256,cat,64,64,192,192\nb.jpg,10,10,,,,,\n")
    a, b = csv_fmt.read(tmp_path / "l.csv").records
    assert a.boxes[0].yxyx == (0.25, 0.25, 0.75, 0.75) and b.boxes == ()


def test_automl_two_and_four_vertices_sets_and_negative(tmp_path):
    make_image(tmp_path / "img" / "a.jpg")
    make_image(tmp_path / "b.jpg", (100, 50))
    (tmp_path / "l.csv").write_text(
        "TRAIN,gs://bucket/img/a.jpg,cat,0.25,0.25,,,0.75,0.75,,\n"
        "TEST,img/a.jpg,dog,0.1,0.2,0.5,0.2,0.5,0.6,0.1,0.6\n"
        "UNASSIGNED,b.jpg\n".replace("TEST,img/a.jpg", "TRAIN,gs://bucket/img/a.jpg"))
    a, b = automl.read(tmp_path / "l.csv").records
    assert a.image_path == (tmp_path / "img" / "a.jpg").resolve() and a.split == "train"
    assert a.boxes[0].yxyx == (0.25, 0.25, 0.75, 0.75)
    assert a.boxes[1].yxyx == (0.2, 0.1, 0.6, 0.5)
    assert (a.width, a.height) == (256, 256)
    assert b.boxes == () and b.split is None and (b.width, b.height) == (100, 50)


def test_automl_bad_set_and_one_vertex(tmp_path):
    (tmp_path / "l.csv").write_text("TRAINING,a.jpg,cat,0.1,0.1,,,0.2,0.2,,\n")
    with pytest.raises(AnnotationError, match=r"l\.csv:1: SET is 'TRAINING'"):
        automl.read(tmp_path / "l.csv")
    (tmp_path / "m.csv").write_text("TRAIN,a.jpg,cat,0.1,0.1,,,,,,\n")
    with pytest.raises(AnnotationError, match="two vertices"):
        automl.read(tmp_path / "m.csv")


def test_automl_conflicting_sets(tmp_path):
    (tmp_path / "l.csv").write_text("TRAIN,a.jpg\nTEST,a.jpg\n")
    with pytest.raises(AnnotationError, match="one set"):
        automl.read(tmp_path / "l.csv")


# ---- TFRecord --------------------------------------------------------------------------------
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


def beside(folder: Path, name: str = "out") -> Path:
    """A folder next to ``folder``: an output may not lie inside its input (od.outputs)."""
    return folder.with_name(f"{folder.name}-{name}")


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


# ---- writers: any format to any other, within 1 pixel ----------------------------------------
def _boxes_px(records):
    return sorted((r.image_path.stem, r.width, r.height, b.label, b.xmin * r.width,
                   b.ymin * r.height, b.xmax * r.width, b.ymax * r.height)
                  for r in records for b in r.boxes)


def _source(tmp_path):
    make_image(tmp_path / "src" / "a.jpg", (300, 200))
    make_image(tmp_path / "src" / "b.png", (120, 90), mode="RGBA", fmt="PNG")
    make_image(tmp_path / "src" / "n.jpg", (50, 40))
    write_voc(tmp_path / "src", "a.jpg", 300, 200, [("cat", 10.4, 20.6, 150.2, 199, 1, 0),
                                                    ("dog", 0, 0, 300, 100, 0, 1)])
    write_voc(tmp_path / "src", "b.png", 120, 90, [("cat", 5, 5, 60, 45, 0, 0)])
    write_voc(tmp_path / "src", "n.jpg", 50, 40)
    return tmp_path / "src"


READ_BACK = {
    "tfrecord": lambda d: read_annotations(d, "tfrecord"),
    "voc": lambda d: read_annotations(d, "voc"),
    "coco": lambda d: read_annotations(d, "coco"),
    "csv": lambda d: read_annotations(d, "csv"),
    "automl": lambda d: read_annotations(d / "automl.csv", "automl"),
}


@pytest.mark.parametrize("chain", [("coco", "csv", "automl", "voc", "tfrecord"),
                                   ("tfrecord", "automl", "coco", "voc", "csv")])
def test_round_trip_keeps_every_box_within_one_pixel(tmp_path, chain):
    src = _source(tmp_path)
    original = _boxes_px(voc.read(src).records)
    fmt, path = "voc", src
    for k, to in enumerate(chain):
        out = tmp_path / f"out{k}_{to}"
        s = convert(path, out, format=fmt, to=to, split="0.34,0.33,0.33", workers=1)
        assert sum(s.images.values()) == 3 and s.negatives == 1
        back = READ_BACK[to](out)
        got = _boxes_px(back.records)
        assert [g[:4] for g in got] == [o[:4] for o in original]
        for g, o in zip(got, original):
            assert all(abs(a - b) <= 1.0 for a, b in zip(g[4:], o[4:])), (to, g, o)
        assert {r.split for r in back.records} == {"train", "val", "test"}
        fmt, path = to, out
    if chain[-1] == "csv":  # the PNG with alpha was stored as JPEG (renamed)
        assert (path / "images" / "b.jpg").is_file()


def test_writers_keep_flags(tmp_path):
    src = _source(tmp_path)
    convert(src, tmp_path / "v", to="voc", split="1,0,0", workers=1)
    a = [r for r in voc.read(tmp_path / "v").records if r.image_path.stem == "a"][0]
    assert [(b.difficult, b.truncated) for b in a.boxes] == [(True, False), (False, True)]


@pytest.mark.parametrize("fmt,path", [("voc", "voc"), ("coco", "coco.json"),
                                      ("csv", "labels.csv"), ("automl", "automl.csv")])
def test_example_annotation_files_agree(fmt, path):
    ann = Path(__file__).parents[1] / "annotations"
    recs = read_annotations(ann / path, fmt, RACCOON / "images").records
    first = [r for r in recs if r.image_path.name == "raccoon-1.jpg"][0]
    b = first.boxes[0]
    assert (round(b.xmin * 650), round(b.ymin * 417), round(b.xmax * 650),
            round(b.ymax * 417)) == (81, 88, 522, 408)
