"""od/data/csv.py: the OD API / Roboflow CSV layout read exactly."""
import pytest

from od.data import csv as csv_fmt
from od.data.records import ImageAnnotation, ObjectBox
from od.errors import AnnotationError


def test_csv_exact_values_and_negative_row(tmp_path):
    (tmp_path / "l.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                    "a.jpg,256,256,cat,64,64,192,192\nb.jpg,10,10,,,,,\n")
    a, b = csv_fmt.read(tmp_path / "l.csv").records
    assert a.boxes[0].yxyx == (0.25, 0.25, 0.75, 0.75) and b.boxes == ()


HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


@pytest.mark.parametrize("body,match", [
    ("filename,width,class\na.jpg,1,cat\n", r"lacks columns \['height'"),
    (HEADER + "a.jpg,ten,10,cat,1,1,2,2\n", r"l\.csv:2: column 'width' is 'ten'"),
    (HEADER + "a.jpg,10,10,cat,1,1,2,2\na.jpg,20,10,cat,1,1,2,2\n", r"l\.csv:3: a\.jpg is 20x10"),
    (HEADER + "a.jpg,10,10,,1,1,2,2\n", "a box without a class"),
    (HEADER, "a header but no rows"),
])
def test_bad_csv_names_the_line_and_the_fix(tmp_path, body, match):
    (tmp_path / "l.csv").write_text(body)
    with pytest.raises(AnnotationError, match=match):
        csv_fmt.read(tmp_path / "l.csv")


def test_write_then_read_the_folder_keeps_splits_and_pixels(tmp_path):
    images = tmp_path / "out" / "images"
    recs = [ImageAnnotation(images / "a.jpg", 200, 100, (ObjectBox(0.1, 0.2, 0.5, 0.6, "cat"),),
                            split="train"),
            ImageAnnotation(images / "n.jpg", 50, 40, (), split="val")]
    written = csv_fmt.write(recs, tmp_path / "out")
    assert [p.name for p in written] == ["train_labels.csv", "val_labels.csv"]
    assert (tmp_path / "out" / "train_labels.csv").read_text().splitlines()[1] == \
        "a.jpg,200,100,cat,40,10,120,50"
    back = csv_fmt.read(tmp_path / "out")
    assert [(r.image_path.name, r.split) for r in back.records] == [("a.jpg", "train"),
                                                                    ("n.jpg", "val")]
    assert back.records[0].boxes[0].yxyx == (0.1, 0.2, 0.5, 0.6) and back.class_names == ["cat"]
    with pytest.raises(AnnotationError, match="no train_labels.csv"):
        csv_fmt.read(tmp_path)
