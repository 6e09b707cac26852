import pytest

from od import label_map, synthetic
from od.errors import LabelMapError
from tests.conftest import ROOT, SHARED, needs_shared

LABEL_MAPS = ROOT / "label_maps"  # the shipped label maps: each holds the classes it promises


def test_round_trip(tmp_path):
    lm = label_map.LabelMap.from_names(["cat", "dog"], ["Cat", ""])
    label_map.write(lm, tmp_path / "label_map.pbtxt")
    text = (tmp_path / "label_map.pbtxt").read_text()
    assert 'name: "cat"' in text and "id: 1" in text and 'display_name: "Cat"' in text
    back = label_map.read(tmp_path / "label_map.pbtxt")
    assert back.items == lm.items and back.id_of("dog") == 2 and back.title_of(1) == "Cat"


def test_parses_od_api_single_line_form():
    lm = label_map.parse("item { id: 1 name: 'cat' display_name: 'Cat' }\nitem { id: 3 name: 'x' }")
    assert lm.max_id == 3 and lm.id_of("x") == 3 and lm.title_of(2) == "class 2"


@pytest.mark.parametrize("text, match", [
    ("item { id: 0 name: 'bg' }", "id 0 is reserved for the background"),
    ("item { id: 1 name: 'a' } item { id: 1 name: 'b' }", "id 1 is used by both"),
    ("item { name: 'a' }", "has no id"),
    ("item { id: 1 nam: 'a' }", "not a valid label map"),
])
def test_errors(text, match):
    with pytest.raises(LabelMapError, match=match):
        label_map.parse(text, "x.pbtxt")


def test_unknown_class_error_names_where_and_class():
    lm = label_map.LabelMap.from_names(["cat"])
    with pytest.raises(LabelMapError, match=r"a\.xml: unknown class 'dog'"):
        lm.id_of("dog", where="a.xml")


@needs_shared
def test_reads_the_coco_label_map():
    lm = label_map.read(SHARED / "label_maps" / "mscoco_label_map.pbtxt")
    assert len(lm.items) == 80 and lm.max_id == 90
    assert lm.title_of(1) == "person" and lm.id_of("airplane") == 5


def test_raccoon_label_map():
    lm = label_map.read(LABEL_MAPS / "raccoon_label_map.pbtxt")
    assert lm.names == ["raccoon"] and lm.id_of("raccoon") == 1


def test_coco_90_class_label_map():
    lm = label_map.read(LABEL_MAPS / "mscoco_label_map.pbtxt")
    assert len(lm.items) == 80 and lm.max_id == 90  # COCO's ids have gaps: 91 model outputs
    assert lm.title_of(1) == "person" and lm.id_of("toothbrush") == 90
    assert lm.item(12) is None and lm.id_of("stop sign") == 13


def test_quickstart_shapes_label_map():
    lm = label_map.read(LABEL_MAPS / "shapes_label_map.pbtxt")
    assert lm.names == sorted(synthetic.CLASSES)  # `od data convert` numbers classes sorted


@needs_shared
def test_coco_label_map_agrees_with_the_od_api_one():
    ours = label_map.read(LABEL_MAPS / "mscoco_label_map.pbtxt")
    api = label_map.read(SHARED / "label_maps" / "mscoco_label_map.pbtxt")
    assert [(i.id, i.title) for i in ours.items] == [(i.id, i.title) for i in api.items]
