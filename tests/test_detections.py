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


def test_compare_pairs_by_class_and_iou_within_the_tolerances():
    from od.detections import compare
    ref = Detections.make([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], [0.9, 0.4], [1, 2])
    same = compare(ref, ref, max_score_diff=1e-3, max_box_diff=1e-3)
    assert same["ok"] and same["max_box_diff"] == 0.0 and same["min_matched_iou"] > 0.999
    assert same["num_above_min_score"] == [2, 2]
    # order does not matter, the pairing is by class and IoU
    swapped = Detections.make(ref.boxes[::-1], ref.scores[::-1], ref.class_ids[::-1])
    assert compare(ref, swapped, max_score_diff=1e-3, max_box_diff=1e-3)["ok"]
    shifted = Detections.make(ref.boxes + 0.01, [0.9, 0.4], [1, 2])
    c = compare(ref, shifted, max_score_diff=1e-3, max_box_diff=1e-3)
    assert not c["ok"] and abs(c["max_box_diff"] - 0.01) < 1e-6
    assert compare(ref, shifted, max_score_diff=1e-3, min_iou=0.85)["ok"]  # no box check
    other_class = Detections.make(ref.boxes, [0.9, 0.4], [1, 3])
    c = compare(ref, other_class, max_score_diff=1e-3)
    assert not c["ok"] and c["max_score_diff"] == np.float32(0.4) and c["max_box_diff"] == 1.0


def test_compare_top_k_min_score_and_zero_area_boxes():
    from od.detections import compare
    ref = Detections.make([[0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9], [0.0, 0.2, 0.0, 0.4]],
                          [0.9, 0.2, 0.1], [1, 1, 1])
    first = Detections.make(ref.boxes[:1], [0.9], [1])
    assert not compare(ref, first, max_score_diff=1e-3)["ok"]
    assert compare(ref, first, max_score_diff=1e-3, top_k=1)["ok"]
    assert compare(ref, first, max_score_diff=1e-3, min_score=0.5)["ok"]
    nothing = compare(Detections.make([], [], []), Detections.make([], [], []), max_score_diff=0.0)
    assert nothing["ok"] and nothing["min_matched_iou"] == 1.0
