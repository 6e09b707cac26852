"""od/lite/__init__.py and od/lite/detect_tflite.py: the runner written next to a TFLite export,
which needs only numpy, Pillow and LiteRT (with a real .tflite: tests/test_tflite.py and
tests/test_serve.py)."""

import numpy as np
import pytest

from od import lite
from od.label_map import LabelMap
from od.lite import detect_tflite


def test_labels_text_has_a_line_per_id_and_the_runner_is_copied(tmp_path):
    lm = LabelMap.from_names(["cat", "dog"])
    assert lite.labels_text(lm) == "???\ncat\ndog\n"
    runner, labels = lite.write_runner(tmp_path, lm)
    assert runner.read_text() == lite.RUNNER.read_text() and labels.name == "labels.txt"
    assert detect_tflite.read_labels(labels) == ["???", "cat", "dog"]
    assert detect_tflite.read_labels(tmp_path / "none.txt") == []


def test_runner_preprocessing_matches_od_tflite():
    tf = pytest.importorskip("tensorflow")
    from od import tflite

    image = np.random.default_rng(0).integers(0, 256, (30, 50, 3), np.uint8)
    x, info = detect_tflite.preprocess(image, 64)
    want_x, want_info = tflite.preprocess(image, 64)
    np.testing.assert_allclose(info, want_info, rtol=1e-6)
    np.testing.assert_allclose(x, want_x, atol=1e-4)
    small = detect_tflite.resize_bilinear(image.astype(np.float32), 7, 11)
    np.testing.assert_allclose(small, tf.image.resize(image.astype(np.float32), (7, 11)).numpy(),
                               atol=1e-3)
    boxes = np.array([[0.0, 0.0, 0.5, 1.0]], np.float32)
    np.testing.assert_allclose(detect_tflite.to_image_boxes(boxes, info, 64),
                               tflite.to_image_boxes(boxes, want_info, 64), atol=1e-6)


def test_records_name_classes_and_give_pixels():
    recs = detect_tflite.records([[0.1, 0.2, 0.5, 0.6]], [0.91234], [2], ["???", "cat", "dog"],
                                 200, 100)
    assert recs == [{"class_id": 2, "class": "dog", "score": 0.9123,
                     "box": [0.1, 0.2, 0.5, 0.6], "box_pixels": [40.0, 10.0, 120.0, 50.0]}]
    assert detect_tflite.records([[0, 0, 1, 1]], [0.5], [7], [], 10, 10)[0]["class"] == "class 7"
    img = detect_tflite.draw(np.zeros((100, 200, 3), np.uint8), recs)
    assert img.size == (200, 100) and np.asarray(img).any()


def test_the_runner_needs_no_tensorflow_and_no_od():
    source = lite.RUNNER.read_text()
    assert "import tensorflow" not in source and "from od" not in source
    assert "import od" not in source.replace("import os", "")
    with pytest.raises(detect_tflite.RunnerError, match="no such model file"):
        detect_tflite.Detector(lite.RUNNER.with_name("missing.tflite"))


def test_runner_output_names_and_out_folder_match_od_detect(tmp_path):
    from pathlib import Path

    from od import detect_files
    from od.data.images import IMAGE_SUFFIXES

    files = [Path(n) for n in ("a.jpg", "a.png", "a_png.jpg", "b.gif")]
    assert detect_tflite.output_stems(files) == detect_files.output_stems(files)
    assert detect_tflite.IMAGE_SUFFIXES == IMAGE_SUFFIXES  # its copy (it may not import od)
    pics, model = tmp_path / "pics", tmp_path / "export" / "model_int8.tflite"
    pics.mkdir()
    model.parent.mkdir()
    for out in (pics, pics / "out", tmp_path, model.parent):
        with pytest.raises(detect_tflite.RunnerError, match="is, holds or lies inside"):
            detect_tflite.check_out(out, pics, model)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    with pytest.raises(detect_tflite.RunnerError, match="not an output of this runner"):
        detect_tflite.check_out(tmp_path / "mine", pics, model)
    detect_tflite.check_out(tmp_path / "new", pics, model)
    assert detect_tflite.main(["--model", str(model), "--images", str(pics), "--out",
                               str(pics)]) == 2  # refused before the model is needed
