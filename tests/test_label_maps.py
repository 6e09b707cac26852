"""The shipped ``label_maps/`` folder: each file reads and holds the classes it promises."""
from od import label_map, synthetic
from tests.conftest import ROOT, SHARED, needs_shared

LABEL_MAPS = ROOT / "label_maps"


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
