"""od/data/guards.py: convert's checks before and around the work (options, empty sets, class
spellings, EXIF-rotated boxes, console notes)."""
from pathlib import Path

import pytest

from od.data import guards
from od.data.images import EncodedImage
from od.data.records import ImageAnnotation, ObjectBox, ReadResult
from od.errors import AnnotationError, OdError


def _rec(name, *labels, source=""):
    return ImageAnnotation(Path(name), 40, 30, tuple(ObjectBox(0.1, 0.2, 0.5, 0.6, lab)
                                                     for lab in labels), source=source)


@pytest.mark.parametrize("options,match", [
    ({"shard_bytes": 0}, "give --shard-mb"), ({"shard_bytes": float("inf")}, "--shard-mb"),
    ({"workers": 0}, "--workers"), ({"workers": True}, "--workers"),
    ({"split": "0.5,0.1"}, "sum to 1"), ({"exif": "sideways"}, "exif='sideways'"),
    ({"verify": "slow"}, "verify='slow'"),
])
def test_impossible_options_are_refused_by_name(options, match):
    good = {"shard_bytes": 100, "workers": None, "split": "0.8,0.1,0.1", "exif": "auto", "verify": "fast"}
    guards.check_options(**good)
    with pytest.raises(OdError, match=match):
        guards.check_options(**{**good, **options})


def test_empty_sets_and_sets_without_a_box():
    with pytest.raises(AnnotationError, match="hold no images"):
        guards.check_not_empty(ReadResult([], []), "ann/")
    negatives = ReadResult([_rec("a.jpg")], [])
    with pytest.raises(AnnotationError, match="not one box"):
        guards.check_not_empty(negatives, "ann/")
    guards.check_not_empty(negatives, "ann/", label_map_given=True)


def test_class_names_differing_only_by_case_are_refused_unless_both_are_wanted():
    recs = [_rec("a.jpg", "raccoon", source="a.xml"), _rec("b.jpg", "Raccoon", source="b.xml")]
    with pytest.raises(AnnotationError, match=r"'raccoon' \(a\.xml\) and 'Raccoon' \(b\.xml\)"):
        guards.check_case_clashes(recs)
    guards.check_case_clashes(recs, wanted={"raccoon", "Raccoon"})
    guards.check_case_clashes([_rec("c.jpg", "cat", "cat", "dog")])


def test_boxes_drawn_on_stored_pixels_of_an_exif_rotated_image_are_turned():
    rec = _rec("r.jpg", "cat")  # 40x30 as stored; shown 30x40 (orientation 6)
    enc = EncodedImage(b"", "jpeg", 30, 40, "EXIF-rotated JPEG", orientation=6)
    placed, problem, moved = guards.place_boxes(rec, enc)
    assert moved and problem is None and (placed.width, placed.height) == (30, 40)
    assert placed.boxes[0].yxyx != rec.boxes[0].yxyx
    same, problem, moved = guards.place_boxes(rec, enc, exif="displayed")
    assert not moved and problem.reason == "size_mismatch" and "orientation 6" in problem.message
    upright = EncodedImage(b"", "jpeg", 40, 30)
    assert guards.place_boxes(rec, upright) == (rec, None, False)


def test_notes_and_first_source():
    assert guards.notes({}) == []
    lines = guards.notes({"fixes": {"duplicate_boxes": 2, "size_from_image": 1}})
    assert len(lines) == 2 and lines[0].startswith("dropped 2 duplicate box(es)")
    assert guards.first_source(["a/x.csv", Path("b.csv")]) == "a/x.csv, b.csv"
    assert guards.first_source("ann") == "ann"
