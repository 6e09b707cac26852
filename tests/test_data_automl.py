"""od/data/automl.py: Vertex AI / AutoML CSV (two- and four-vertex rows, sets) read exactly."""
import pytest

from od.data import automl
from od.errors import AnnotationError

from test_data_formats import make_image


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
