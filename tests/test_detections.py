"""od/detections.py: the one in-memory form of detections and ground truth."""
import numpy as np

from od.detections import Detections, GroundTruth


def test_make_shapes_and_dtypes():
    d = Detections.make([[0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1]], [0.9, 0.2], [1, 2], 640, 480)
    assert d.boxes.dtype == np.float32 and d.boxes.shape == (2, 4)
    assert d.scores.dtype == np.float32 and d.class_ids.dtype == np.int32
    assert (d.width, d.height, len(d)) == (640, 480, 2)
    empty = Detections.make([], [], [])
    assert empty.boxes.shape == (0, 4) and len(empty) == 0


def test_from_outputs_keeps_num_detections_rows_of_the_first_image():
    out = {"detection_boxes": np.array([[[0.1, 0.1, 0.5, 0.5], [0.2, 0.2, 0.6, 0.6],
                                         [0, 0, 0, 0]]]),
           "detection_scores": np.array([[0.8, 0.4, 0.0]]),
           "detection_classes": np.array([[3.0, 1.0, 0.0]]),   # TFLite gives floats
           "num_detections": np.array([2])}
    d = Detections.from_outputs(out, 100, 50)
    assert len(d) == 2 and d.class_ids.tolist() == [3, 1] and d.width == 100
    above = d.above(0.5)
    assert len(above) == 1 and above.scores.tolist() == [np.float32(0.8)]
    assert above.height == 50


def test_groundtruth_crowd_default():
    g = GroundTruth.make(7, 10, 20, [[0, 0, 1, 1]], [1], name="a.jpg")
    assert g.is_crowd.tolist() == [False] and g.image_id == 7 and g.name == "a.jpg"
