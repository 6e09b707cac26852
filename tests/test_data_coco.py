"""od/data/coco.py: COCO JSON (category gaps, crowd, Roboflow layout) read exactly; bad files named."""
import json

import pytest

from od.data import coco
from od.errors import AnnotationError

from test_data_formats import CHESS, needs_chess


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
