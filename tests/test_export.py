"""od/export.py: the export check of a SavedModel / frozen graph against the checkpoint (a real
export: tests/test_pipeline.py, tests/test_tflite.py)."""
import numpy as np
import pytest

from od import export


def _outputs(boxes, scores, classes, n=None):
    k = len(scores)
    return {"detection_boxes": np.asarray(boxes, np.float32).reshape(1, k, 4),
            "detection_scores": np.asarray(scores, np.float32).reshape(1, k),
            "detection_classes": np.asarray(classes, np.float32).reshape(1, k),
            "num_detections": np.array([k if n is None else n])}


REF = _outputs([[0.1, 0.1, 0.5, 0.5], [0.2, 0.6, 0.4, 0.9]], [0.8, 0.3], [1, 2])


def test_same_outputs_pass_and_the_report_keeps_its_keys():
    c = export._compare("saved_model", REF, REF, 64, 48)
    assert c["ok"] and c["num_detections"] == [2, 2]
    assert c["max_box_diff"] == 0.0 and c["max_score_diff"] == 0.0
    assert {"format", "num_detections", "max_box_diff", "max_score_diff"} <= set(c)


@pytest.mark.parametrize("got,why", [
    (_outputs([[0.1, 0.1, 0.5, 0.502], [0.2, 0.6, 0.4, 0.9]], [0.8, 0.3], [1, 2]), "box"),
    (_outputs([[0.1, 0.1, 0.5, 0.5], [0.2, 0.6, 0.4, 0.9]], [0.8, 0.302], [1, 2]), "score"),
    (_outputs([[0.1, 0.1, 0.5, 0.5]], [0.8], [1]), "count"),
    (_outputs([[0.1, 0.1, 0.5, 0.5], [0.2, 0.6, 0.4, 0.9]], [0.8, 0.3], [1, 3]), "class"),
])
def test_a_difference_beyond_1e_3_fails(got, why):
    assert not export._compare("frozen_graph", REF, got, 64, 48)["ok"], why


def test_within_tolerance_and_beyond_the_first_twenty():
    near = _outputs([[0.1, 0.1, 0.5, 0.5005], [0.2, 0.6, 0.4, 0.9]], [0.8004, 0.3], [1, 2])
    assert export._compare("saved_model", REF, near, 64, 48)["ok"]
    boxes = [[0.01 * k, 0.0, 0.01 * k + 0.3, 0.3] for k in range(25)]
    scores = np.linspace(0.9, 0.1, 25)
    many = _outputs(boxes, scores, [1] * 25)
    fewer = _outputs(boxes[:22], scores[:22], [1] * 22)  # counts differ past the 20 compared
    assert export._compare("saved_model", many, fewer, 64, 48)["ok"]
