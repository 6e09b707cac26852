"""od/data/voc.py: Pascal VOC XML folders (and devkit layouts) read exactly; empty and odd cases."""
import pytest

from od.data import voc
from od.errors import AnnotationError

from test_data_formats import write_voc


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
