"""od/eval_inputs.py: what ``od evaluate --data`` is, recognised by content and layout (every
source against real models: tests/test_evaluate_sources.py, tests/test_evaluate_models.py)."""
import pytest

from od.errors import AnnotationError
from od.eval_inputs import detect_format


def test_detect_format_by_file_and_folder(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "p.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n")
    (tmp_path / "v.csv").write_text("TRAIN,gs://b/a.jpg,cat,0.1,0.1,,,0.2,0.2,,\n")
    assert detect_format(tmp_path / "a.json") == "coco"
    assert detect_format(tmp_path / "p.csv") == "csv"
    assert detect_format(tmp_path / "v.csv") == "automl"
    for sub, name, fmt in (("voc", "x.xml", "voc"), ("csvs", "test_labels.csv", "csv"),
                           ("aml", "automl.csv", "automl"), ("rf", "x.json", "coco"),
                           ("tf", "test-00000-of-00001.tfrecord", "tfrecord")):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_text("")
        assert detect_format(tmp_path / sub) == fmt, sub
    (tmp_path / "devkit" / "Annotations").mkdir(parents=True)
    assert detect_format(tmp_path / "devkit") == "voc"


def test_nothing_recognisable_names_the_option(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationError, match="give --data-format"):
        detect_format(tmp_path / "empty")
