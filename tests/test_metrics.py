"""od.metrics: exact numbers on hand-made cases, and agreement with pycocotools used directly."""
import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from od import metrics
from od.detections import Detections, GroundTruth
from od.errors import OdError
from od.label_map import LabelMap, LabelMapItem
from od.metrics import EvaluationError

CATS = LabelMap.from_names(["cat", "dog"])
EPS = 1e-9


def gt(image_id, boxes, class_ids, size=(200, 200), crowd=None):
    return GroundTruth.make(image_id, size[0], size[1], boxes, class_ids, crowd, f"{image_id}.jpg")


def det(boxes, scores, class_ids):
    return Detections.make(boxes, scores, class_ids)


A, B, C = [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]
FAR = [0.6, 0.0, 0.9, 0.3]  # overlaps none of A, B, C


# ---- COCO metrics --------------------------------------------------------------------------

def test_perfect_detections_give_ap_1():
    gts = [gt(1, [A, B], [1, 2]), gt(2, [C], [1])]
    dets = {1: det([A, B], [0.9, 0.8], [1, 2]), 2: det([C], [0.7], [1])}
    m = metrics.coco_metrics(gts, dets, CATS)
    for key in ("AP", "AP50", "AP75", "APl", "AR1", "AR10", "AR100", "ARl"):
        assert m[key] == pytest.approx(1.0, abs=EPS), key
    assert m["APs"] is None and m["APm"] is None  # 100x100-pixel boxes are all 'large'
    assert m["per_class"]["cat"] == {"id": 1, "AP": pytest.approx(1.0), "AP50": pytest.approx(1.0),
                                     "num_gt": 2}
    assert (m["num_images"], m["num_gt_boxes"], m["num_detections"]) == (2, 3, 3)


def test_shifted_detection_iou_two_thirds_passes_ap50_not_ap75():
    # GT 100x100 px at the origin; the detection is shifted 20 px right: IoU = 8000/12000 = 2/3.
    gts = [gt(1, [A], [1])]
    dets = {1: det([[0.0, 0.1, 0.5, 0.6]], [0.9], [1])}
    m = metrics.coco_metrics(gts, dets, CATS)
    assert m["AP50"] == pytest.approx(1.0, abs=EPS)
    assert m["AP75"] == 0.0
    assert m["AP"] == pytest.approx(0.4, abs=EPS)  # IoU thresholds .50 .55 .60 .65 of ten pass
    assert metrics.threshold_table(gts, dets, CATS, iou=0.7)["overall"]["fp"][0] == 1


def test_false_positive_above_true_positive():
    gts = [gt(1, [A], [1])]
    dets = {1: det([FAR, A], [0.9, 0.6], [1, 1])}
    m = metrics.coco_metrics(gts, dets, CATS)
    assert m["AP50"] == pytest.approx(0.5, abs=EPS)  # recall 1 reached at precision 1/2
    curves = metrics.pr_curves(gts, dets, CATS)
    assert len(curves["recall"]) == 101
    assert curves["per_class"]["cat"]["precision_50"] == pytest.approx([0.5] * 101)
    assert curves["per_class"]["dog"]["precision_50"] is None
    t = metrics.threshold_table(gts, dets, CATS, thresholds=[0.5, 0.6, 0.7, 0.95])
    o = t["overall"]
    assert (o["tp"], o["fp"], o["fn"]) == ([1, 1, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1])
    assert o["precision"] == [0.5, 0.5, 0.0, None]
    assert o["recall"] == [1.0, 1.0, 0.0, 0.0]
    assert o["f1"] == pytest.approx([2 / 3, 2 / 3, 0.0, 0.0])
    assert metrics.best_threshold(t) == {"threshold": 0.5, "precision": 0.5, "recall": 1.0,
                                         "f1": pytest.approx(2 / 3), "tp": 1, "fp": 1, "fn": 0}


def test_no_detections_give_ap_0():
    gts = [gt(1, [A, B], [1, 2])]
    m = metrics.coco_metrics(gts, {}, CATS)
    assert m["AP"] == 0.0 and m["AP50"] == 0.0 and m["AR100"] == 0.0
    assert m["num_detections"] == 0
    assert metrics.coco_metrics(gts, {1: det(np.zeros((0, 4)), [], [])}, CATS)["AP"] == 0.0
    o = metrics.threshold_table(gts, {}, CATS, thresholds=[0.5])["overall"]
    assert (o["tp"], o["fp"], o["fn"], o["precision"], o["recall"], o["f1"]) == \
        ([0], [0], [2], [None], [0.0], [0.0])
    cm = metrics.confusion_matrix(gts, {}, CATS)
    assert cm["matrix"] == [[0, 0, 1], [0, 0, 1], [0, 0, 0]]


def test_image_without_gt_boxes():
    gts = [gt(1, [A], [1]), gt(2, np.zeros((0, 4)), [])]
    assert metrics.coco_metrics(gts, {1: det([A], [0.8], [1])}, CATS)["AP"] == \
        pytest.approx(1.0, abs=EPS)
    # a detection on the empty image is a false positive ranked above the true positive
    dets = {1: det([A], [0.8], [1]), 2: det([A], [0.9], [1])}
    m = metrics.coco_metrics(gts, dets, CATS)
    assert m["AP50"] == pytest.approx(0.5, abs=EPS)
    o = metrics.threshold_table(gts, dets, CATS, thresholds=[0.8, 0.85])["overall"]
    assert (o["tp"], o["fp"], o["fn"]) == ([1, 0], [1, 1], [0, 1])
    # only empty images: nothing to measure, so None rather than a made-up 0
    empty = metrics.coco_metrics([gts[1]], {}, CATS)
    assert empty["AP"] is None and empty["num_gt_boxes"] == 0


def test_class_ids_with_gaps_and_unknown_detection_ids():
    lm = LabelMap((LabelMapItem(1, "person"), LabelMapItem(3, "car"),
                   LabelMapItem(90, "toothbrush")))
    gts = [gt(7, [A, B], [3, 90])]
    dets = {7: det([A, B, C], [0.9, 0.8, 0.99], [3, 90, 5])}  # id 5 is not in the label map
    r = metrics.evaluation_report(gts, dets, lm)
    pc = r["coco"]["per_class"]
    assert pc["person"] == {"id": 1, "AP": None, "AP50": None, "num_gt": 0}
    assert pc["car"]["AP"] == pytest.approx(1.0) and pc["toothbrush"]["id"] == 90
    assert r["coco"]["AP"] == pytest.approx(1.0, abs=EPS)
    assert r["coco"]["num_detections_unknown_class"] == 1
    assert r["confusion_matrix"]["labels"] == ["person", "car", "toothbrush", "background"]
    assert r["confusion_matrix"]["class_ids"] == [1, 3, 90, 0]
    assert r["confusion_matrix"]["matrix"] == [[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0],
                                               [0, 0, 0, 0]]
    assert r["threshold_table"]["per_class"]["person"]["recall"][0] is None


# ---- matching: confusion matrix and threshold table ----------------------------------------

def test_confusion_matrix_hand_made():
    D = [0.5, 0.0, 1.0, 0.5]
    gts = [gt(1, [A, B, C], [1, 2, 1])]  # cat A, dog B, cat C (C is never detected)
    dets = {1: det([A, B, FAR, A, A],
                   [0.9, 0.8, 0.7, 0.6, 0.3],
                   [1, 1, 2, 2, 1])}     # A→cat, B→cat, FAR→dog, A again→dog, A below min_score
    cm = metrics.confusion_matrix(gts, dets, CATS, iou=0.5, min_score=0.5)
    assert cm["labels"] == ["cat", "dog", "background"]
    assert cm["matrix"] == [[1, 0, 1],   # cat: 1 right, C missed
                            [1, 0, 0],   # dog B predicted as cat
                            [0, 2, 0]]   # FAR and the duplicate on A: dogs on background
    assert sum(map(sum, cm["matrix"])) == 5
    # min_score 0.0 lets the 0.3 duplicate in, as one more false positive
    assert metrics.confusion_matrix(gts, dets, CATS, min_score=0.0)["matrix"][2] == [1, 2, 0]
    # a detection over D has IoU 0 with everything
    assert metrics.confusion_matrix(gts, {1: det([D], [0.9], [2])}, CATS)["matrix"] == \
        [[0, 0, 2], [0, 0, 1], [0, 1, 0]]


def test_threshold_table_counts_duplicates_classes_and_crowd():
    gts = [gt(1, [A, B, C], [1, 2, 1], crowd=[False, False, True])]
    dets = {1: det([A, A, B, C],
                   [0.9, 0.8, 0.7, 0.6],
                   [1, 1, 1, 1])}  # TP, duplicate FP, wrong class FP (dog B missed), on crowd
    t = metrics.threshold_table(gts, dets, CATS, thresholds=[0.5, 0.75, 0.85, 0.95])
    assert t["thresholds"] == [0.5, 0.75, 0.85, 0.95]
    cat, dog = t["per_class"]["cat"], t["per_class"]["dog"]
    assert (cat["num_gt"], cat["tp"], cat["fp"], cat["fn"]) == (1, [1, 1, 1, 0], [2, 1, 0, 0],
                                                                [0, 0, 0, 1])
    assert (dog["num_gt"], dog["tp"], dog["fp"], dog["fn"]) == (1, [0] * 4, [0] * 4, [1] * 4)
    assert dog["precision"] == [None] * 4 and dog["f1"] == [0.0] * 4
    o = t["overall"]
    assert (o["num_gt"], o["tp"], o["fp"], o["fn"]) == (2, [1, 1, 1, 0], [2, 1, 0, 0],
                                                        [1, 1, 1, 2])
    assert o["precision"] == pytest.approx([1 / 3, 0.5, 1.0, None])
    assert metrics.best_threshold(t)["threshold"] == 0.85  # F1 2/3 beats 1/2 and 2/5
    assert metrics.best_threshold(t, "dog") == {"threshold": 0.5, "precision": None,
                                                "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0,
                                                "fn": 1}
    with pytest.raises(EvaluationError, match="horse"):
        metrics.best_threshold(t, "horse")


def test_scores_on_a_threshold_count_as_above_it():
    gts = [gt(1, [A], [1])]
    for s in (0.05, 0.7, 0.55, 0.95):  # float32 0.7 < float64 0.7: must still count at 0.7
        o = metrics.threshold_table(gts, {1: det([A], [s], [1])}, CATS)["overall"]
        assert o["tp"][int(round(s / 0.05)) - 1] == 1, s


# ---- pycocotools agreement, JSON, errors ---------------------------------------------------

def _random_set(seed=0, n_images=6):
    rng = np.random.default_rng(seed)
    gts, dets = [], {}
    for i in range(1, n_images + 1):
        w, h = int(rng.integers(200, 800)), int(rng.integers(200, 800))
        n = int(rng.integers(0, 6))
        lo = rng.uniform(0, 0.6, (n, 2))
        boxes = np.concatenate([lo, lo + rng.uniform(0.02, 0.4, (n, 2))], axis=1)
        gts.append(gt(i, boxes, rng.integers(1, 3, n), (w, h), crowd=rng.random(n) < 0.15))
        jitter = boxes + rng.normal(0, 0.015, boxes.shape)
        extra = rng.uniform(0, 0.5, (2, 4)) + [0, 0, 0.3, 0.3]
        d_boxes = np.clip(np.concatenate([jitter, extra]), 0, 1)
        d_boxes[:, 2:] = np.maximum(d_boxes[:, 2:], d_boxes[:, :2])
        cls = np.concatenate([gts[-1].class_ids, rng.integers(1, 3, 2)])
        flip = rng.random(len(cls)) < 0.2  # some detections get the other class
        cls[flip] = 3 - cls[flip]
        scores = np.concatenate([rng.uniform(0.3, 1.0, n), rng.uniform(0.0, 0.6, 2)])
        dets[i] = det(d_boxes, scores, cls)
    return gts, dets


def test_matches_pycocotools_used_directly(capsys):
    gts, dets = _random_set()
    r = metrics.evaluation_report(gts, dets, CATS)
    assert capsys.readouterr().out == ""  # pycocotools' prints are swallowed

    images, anns, results = [], [], []
    for g in gts:  # the conversion written out by hand: yxyx normalised → xywh pixels
        images.append({"id": g.image_id, "width": g.width, "height": g.height})
        for (y0, x0, y1, x1), c, crowd in zip(g.boxes.tolist(), g.class_ids.tolist(),
                                              g.is_crowd.tolist()):
            w, h = (x1 - x0) * g.width, (y1 - y0) * g.height
            anns.append({"id": len(anns) + 1, "image_id": g.image_id, "category_id": c,
                         "bbox": [x0 * g.width, y0 * g.height, w, h], "area": w * h,
                         "iscrowd": int(crowd)})
        d = dets[g.image_id]
        for (y0, x0, y1, x1), s, c in zip(d.boxes.tolist(), d.scores.tolist(),
                                          d.class_ids.tolist()):
            results.append({"image_id": g.image_id, "category_id": c, "score": s,
                            "bbox": [x0 * g.width, y0 * g.height, (x1 - x0) * g.width,
                                     (y1 - y0) * g.height]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns,
                        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    for name, value in zip(metrics.STAT_NAMES, ev.stats):
        mine = r["coco"][name]
        assert (mine is None and value == -1) or mine == pytest.approx(value, abs=1e-6), name
    assert 0.2 < r["coco"]["AP50"] < 1.0  # a non-trivial case
    p = ev.eval["precision"]
    for k, name in enumerate(["cat", "dog"]):
        assert r["coco"]["per_class"][name]["AP50"] == pytest.approx(p[0, :, k, 0, 2].mean())
        assert r["pr_curves"]["per_class"][name]["precision_50"] == \
            pytest.approx(p[0, :, k, 0, 2].tolist())
    # our greedy matching finds the TPs COCOeval finds at IoU 0.5 (all scores, area 'all')
    coco_tp = sum(int(((e["dtMatches"][0] > 0) & ~e["dtIgnore"][0].astype(bool)).sum())
                  for e in ev.evalImgs if e is not None and e["aRng"] == [0, 1e10])
    assert metrics.threshold_table(gts, dets, CATS, thresholds=[0.0])["overall"]["tp"] == [coco_tp]


def test_report_is_json_serialisable():
    gts, dets = _random_set(seed=1)
    r = metrics.evaluation_report(gts, dets, CATS)
    assert set(r) == {"coco", "pr_curves", "threshold_table", "best_threshold",
                      "confusion_matrix"}
    assert json.loads(json.dumps(r, allow_nan=False)) == r
    no_dets = metrics.evaluation_report([gt(1, np.zeros((0, 4)), [])], {}, CATS)
    json.dumps(no_dets, allow_nan=False)
    assert no_dets["best_threshold"] is None


def test_bad_input_raises_od_errors():
    gts = [gt(1, [A], [1])]
    with pytest.raises(EvaluationError, match="image id 99, which has no ground truth"):
        metrics.coco_metrics(gts, {99: det([A], [0.9], [1])}, CATS)
    with pytest.raises(EvaluationError, match="unique"):
        metrics.coco_metrics(gts + gts, {}, CATS)
    with pytest.raises(EvaluationError, match=r"class ids \[7\]"):
        metrics.confusion_matrix([gt(1, [A], [7])], {}, CATS)
    with pytest.raises(EvaluationError, match="width/height"):
        metrics.coco_metrics([gt(1, [A], [1], size=(0, 0))], {}, CATS)
    with pytest.raises(EvaluationError, match="ymax < ymin"):
        metrics.coco_metrics(gts, {1: det([[0.5, 0.5, 0.1, 0.9]], [0.9], [1])}, CATS)
    with pytest.raises(EvaluationError, match="thresholds"):
        metrics.threshold_table(gts, {}, CATS, thresholds=[1.5])
    with pytest.raises(EvaluationError, match="no ground-truth images"):
        metrics.coco_metrics([], {}, CATS)
    assert issubclass(EvaluationError, OdError)
