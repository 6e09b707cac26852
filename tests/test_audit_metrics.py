"""Audit of the numbers `od evaluate` reports and of its hostile inputs.

Every number is checked against a reference written here, independent of od: pycocotools'
COCOeval called directly on ground truth and detections converted to pixel [x, y, w, h] by hand
(non-square images, crowd boxes), a brute-force greedy matcher (score order, IoU >= threshold,
one detection per box, COCOeval's rule for equal IoUs) for the threshold table and the confusion
matrix, and a 101-point interpolation of its own for the PR curves. The command-line cases run
`od evaluate` on generated images with a real frozen graph built here whose detections are a
table keyed by image size (no training).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from od import cli, metrics, outputs, synthetic
from od import label_map as label_map_lib
from od.data.convert import InvalidDataError, convert
from od.detections import Detections, GroundTruth
from od.errors import ImageError, OdError
from od.eval_inputs import check_options, load_image, read_data
from od.metrics import EvaluationError

THRESHOLDS = [0.0, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 1.0]


# ---- independent references -------------------------------------------------------------------
def _px(box, w, h):
    """Normalised [ymin, xmin, ymax, xmax] -> pixel (x0, y0, x1, y1), written out by hand."""
    y0, x0, y1, x1 = (float(v) for v in box)
    return x0 * w, y0 * h, x1 * w, y1 * h


def _iou(d, g, crowd=False):
    ix = min(d[2], g[2]) - max(d[0], g[0])
    iy = min(d[3], g[3]) - max(d[1], g[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    da = (d[2] - d[0]) * (d[3] - d[1])
    return inter / (da if crowd else da + (g[2] - g[0]) * (g[3] - g[1]) - inter)


def _class_boxes(g, cid):
    """[(pixel box, crowd)] of class ``cid`` in ground truth ``g``."""
    return [(_px(g.boxes[k], g.width, g.height), bool(g.is_crowd[k]))
            for k in range(len(g.class_ids)) if g.class_ids[k] == cid]


def _greedy(dets, gts, thr):
    """dets: pixel boxes in score order; gts: [(pixel box, crowd)]. Per detection: the index of
    the unmatched non-crowd box of highest IoU >= thr (the last of equal ones, as COCOeval),
    'ignored' if it only reaches a crowd box, else None."""
    taken, out = [False] * len(gts), []
    for d in dets:
        best, hit = -1.0, None
        for k, (g, crowd) in enumerate(gts):
            v = _iou(d, g)
            if not crowd and not taken[k] and v >= thr and v >= best:
                best, hit = v, k
        if hit is not None:
            taken[hit] = True
        elif any(crowd and _iou(d, g, True) >= thr for g, crowd in gts):
            hit = "ignored"
        out.append(hit)
    return out


def _score_order(d, keep):
    return sorted((j for j in range(len(d.scores)) if keep(j)), key=lambda j: -d.scores[j])


def ref_table(gts, dets, class_ids, iou, thresholds):
    """{class id: [(tp, fp, fn) per threshold]}, matching again at every threshold."""
    out = {}
    for cid in class_ids:
        rows = []
        for t in thresholds:
            tp = fp = n_gt = 0
            for g in gts:
                boxes = _class_boxes(g, cid)
                n_gt += sum(not c for _, c in boxes)
                d = dets.get(g.image_id)
                if d is None:
                    continue
                order = _score_order(d, lambda j: d.class_ids[j] == cid
                                     and d.scores[j] >= np.float32(t))
                m = _greedy([_px(d.boxes[j], g.width, g.height) for j in order], boxes, iou)
                tp += sum(isinstance(x, int) for x in m)
                fp += sum(x is None for x in m)
            rows.append((tp, fp, n_gt - tp))
        out[cid] = rows
    return out


def ref_confusion(gts, dets, class_ids, iou, min_score):
    index = {c: i for i, c in enumerate(class_ids)}
    bg = len(class_ids)
    m = np.zeros((bg + 1, bg + 1), int)
    for g in gts:
        boxes = [(_px(g.boxes[k], g.width, g.height), bool(g.is_crowd[k]))
                 for k in range(len(g.class_ids))]
        d = dets.get(g.image_id)
        order = [] if d is None else _score_order(
            d, lambda j: d.scores[j] >= np.float32(min_score) and int(d.class_ids[j]) in index)
        hits = _greedy([_px(d.boxes[j], g.width, g.height) for j in order], boxes, iou)
        for j, hit in zip(order, hits):
            if isinstance(hit, int):
                m[index[int(g.class_ids[hit])], index[int(d.class_ids[j])]] += 1
            elif hit is None:
                m[bg, index[int(d.class_ids[j])]] += 1
        matched = {h for h in hits if isinstance(h, int)}
        for k, (_, crowd) in enumerate(boxes):
            if not crowd and k not in matched:
                m[index[int(g.class_ids[k])], bg] += 1
    return m.tolist()


def ref_cocoeval(gts, dets, class_ids):
    """COCOeval run directly, on pixel [x, y, w, h] converted here."""
    images, anns, results = [], [], []
    for g in gts:
        images.append({"id": g.image_id, "width": g.width, "height": g.height})
        for b, c, crowd in zip(g.boxes, g.class_ids.tolist(), g.is_crowd.tolist()):
            x0, y0, x1, y1 = _px(b, g.width, g.height)
            anns.append({"id": len(anns) + 1, "image_id": g.image_id, "category_id": c,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "iscrowd": int(crowd)})
        d = dets.get(g.image_id)
        for j in range(0 if d is None else len(d.scores)):
            x0, y0, x1, y1 = _px(d.boxes[j], g.width, g.height)
            results.append({"image_id": g.image_id, "category_id": int(d.class_ids[j]),
                            "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(d.scores[j])})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {"images": images, "annotations": anns,
                        "categories": [{"id": c, "name": str(c)} for c in class_ids]}
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(results), "bbox")
        ev.params.catIds = list(class_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def ref_pr50(gts, dets, cid):
    """Precision at the 101 COCO recall points, IoU 0.5, written out: detections of class
    ``cid`` (score order, images in id order, at most 100 per image), crowd matches ignored,
    precision made non-increasing from the right. None without non-crowd ground truth."""
    scored, n_gt = [], 0
    for g in sorted(gts, key=lambda g: g.image_id):
        boxes = _class_boxes(g, cid)
        n_gt += sum(not c for _, c in boxes)
        d = dets.get(g.image_id)
        if d is None:
            continue
        order = _score_order(d, lambda j: d.class_ids[j] == cid)[:100]
        hits = _greedy([_px(d.boxes[j], g.width, g.height) for j in order], boxes, 0.5)
        scored += [(float(d.scores[j]), h) for j, h in zip(order, hits) if h != "ignored"]
    if not n_gt:
        return None
    scored.sort(key=lambda s: -s[0])  # stable: ties keep image order, as COCOeval
    tp = np.cumsum([isinstance(h, int) for _, h in scored])
    fp = np.cumsum([h is None for _, h in scored])
    recall, precision = tp / n_gt, tp / np.maximum(tp + fp, np.spacing(1))
    for k in range(len(precision) - 1, 0, -1):
        precision[k - 1] = max(precision[k - 1], precision[k])
    out = []
    for r in np.linspace(0, 1, 101):
        k = int(np.searchsorted(recall, r, side="left"))
        out.append(float(precision[k]) if k < len(precision) else 0.0)
    return out


# ---- generated cases --------------------------------------------------------------------------
def _case(seed, n_classes=3, n_images=5, grid=0, crowd=0.15):
    """Non-square images of random size; detections: jittered ground truth (some of another
    class, duplicates), random false positives, scores rounded to 0.1 (ties); ``grid`` q > 0:
    every coordinate a multiple of 1/q, so IoUs tie exactly (a detection between two boxes).
    Some images have no boxes or no detections."""
    rng = np.random.default_rng(seed)
    gts, dets = [], {}
    for i in range(1, n_images + 1):
        w, h = int(rng.integers(20, 900)), int(rng.integers(20, 900))
        n = int(rng.integers(0, 7))
        if grid:
            lo = rng.integers(0, grid - 1, (n, 2)) / grid
            size = rng.integers(1, max(2, grid // 2), (n, 2)) / grid
            boxes = np.concatenate([lo, np.minimum(lo + size, 1)], 1)
        else:
            lo = rng.uniform(0, 0.7, (n, 2))
            boxes = np.concatenate([lo, lo + rng.uniform(0.01, 0.5, (n, 2))], 1).clip(0, 1)
        cls = rng.integers(1, n_classes + 1, n)
        gts.append(GroundTruth.make(i, w, h, boxes, cls, rng.random(n) < crowd, f"{i}.jpg"))
        if rng.random() < 0.15:
            continue
        pick = rng.integers(0, n, int(rng.integers(0, 8))) if n else np.zeros(0, int)
        src = boxes[pick]
        moved = src + (rng.integers(-1, 2, src.shape) / grid if grid
                       else rng.normal(0, 0.03, src.shape))
        extra = rng.uniform(0, 0.5, (int(rng.integers(0, 3)), 4)) + [0, 0, 0.3, 0.3]
        b = np.concatenate([moved, extra]).clip(0, 1)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2])
        c = rng.integers(1, n_classes + 1, len(b))
        same = rng.random(len(pick)) < 0.75
        c[:len(pick)][same] = cls[pick][same]
        dets[i] = Detections.make(b, np.round(rng.uniform(0, 1, len(b)), 1), c)
    return gts, dets, label_map_lib.LabelMap.from_names([f"c{k}" for k in range(1, n_classes + 1)])


CASES = [(seed, 1 + seed % 4, 1 + seed % 6, (0, 16, 4, 8)[seed % 4]) for seed in range(40)] + [
    (100, 25, 8, 0), (101, 25, 3, 16), (102, 2, 1, 0), (103, 2, 1, 4)]


def _close(mine, ref):
    return (mine is None and ref == -1) or (mine is not None and mine == pytest.approx(ref,
                                                                                       abs=1e-9))


@pytest.mark.parametrize("seed, n_classes, n_images, grid", CASES)
def test_every_number_matches_the_references(seed, n_classes, n_images, grid):
    gts, dets, lm = _case(seed, n_classes, n_images, grid)
    ids = [it.id for it in lm.items]
    r = metrics.evaluation_report(gts, dets, lm, thresholds=THRESHOLDS, min_score=0.3)
    assert json.loads(json.dumps(r, allow_nan=False)) == r
    if any(len(d) for d in dets.values()):  # (COCO's loadRes refuses an empty result list)
        ev = ref_cocoeval(gts, dets, ids)
        for name, v in zip(metrics.STAT_NAMES, ev.stats):
            assert _close(r["coco"][name], v), name
        p = ev.eval["precision"]
        for k, cid in enumerate(ids):
            pc, v = r["coco"]["per_class"][f"c{cid}"], p[:, :, k, 0, -1]
            assert _close(pc["AP"], v[v > -1].mean() if (v > -1).any() else -1)
            assert pc["num_gt"] == sum(int(((g.class_ids == cid) & ~g.is_crowd).sum())
                                       for g in gts)
    for k, cid in enumerate(ids):
        curve = r["pr_curves"]["per_class"][f"c{cid}"]["precision_50"]
        ref = ref_pr50(gts, dets, cid)
        assert (curve is None) == (ref is None)
        if ref is not None:
            assert curve == pytest.approx(ref, abs=1e-12)
            assert r["coco"]["per_class"][f"c{cid}"]["AP50"] == pytest.approx(np.mean(ref))
    for iou in (0.5, 0.3, 0.75):
        t = metrics.threshold_table(gts, dets, lm, iou=iou, thresholds=THRESHOLDS)
        ref = ref_table(gts, dets, ids, iou, THRESHOLDS)
        totals = np.zeros((len(THRESHOLDS), 3), int)
        for cid in ids:
            pc = t["per_class"][f"c{cid}"]
            assert list(zip(pc["tp"], pc["fp"], pc["fn"])) == ref[cid], (iou, cid)
            totals += np.array(ref[cid])
            for k, (tp, fp, fn) in enumerate(ref[cid]):
                assert pc["precision"][k] == (tp / (tp + fp) if tp + fp else None)
                assert pc["recall"][k] == (tp / (tp + fn) if tp + fn else None)
                assert pc["f1"][k] == (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None)
        o = t["overall"]
        assert [list(x) for x in zip(o["tp"], o["fp"], o["fn"])] == totals.tolist()
        assert metrics.confusion_matrix(gts, dets, lm, iou=iou, min_score=0.3)["matrix"] == \
            ref_confusion(gts, dets, ids, iou, 0.3)
    f1 = [-1 if v is None else v for v in r["threshold_table"]["overall"]["f1"]]
    best = r["best_threshold"]
    assert (best is None) == (max(f1) < 0)
    if best:
        assert best["threshold"] == THRESHOLDS[f1.index(max(f1))] and best["f1"] == max(f1)


# ---- defects found by this audit (each fixed) ---------------------------------------------------
A, A2 = [0, 0.25, 0.5, 0.75], [0, 0.375, 0.5, 0.875]  # two cats, 32 px apart on a 256 px image
D, D2 = [0, 0.3125, 0.5, 0.8125], [0, 0.125, 0.5, 0.625]  # D: IoU 7/9 with both; D2: 0.6 with A


def test_a_detection_between_two_boxes_takes_the_last_as_cocoeval_does():
    """od took the first of two boxes of equal IoU, COCOeval the last: the second detection then
    lost its box, so the threshold table said TP 1 / FP 1 / FN 1 where COCOeval's AP50 is 1.0
    (both matched), and the confusion matrix showed a miss and a false positive."""
    lm = label_map_lib.LabelMap.from_names(["cat", "dog"])
    gts = [GroundTruth.make(1, 256, 256, [A, A2], [1, 1])]
    dets = {1: Detections.make([D, D2], [0.9, 0.8], [1, 1])}
    r = metrics.evaluation_report(gts, dets, lm, thresholds=[0.5])
    assert r["coco"]["AP50"] == pytest.approx(1.0)
    o = r["threshold_table"]["overall"]
    assert (o["tp"], o["fp"], o["fn"]) == ([2], [0], [0])
    assert r["confusion_matrix"]["matrix"] == [[2, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_crowded_images_are_not_capped_at_cocos_100_detections():
    """COCOeval counts at most 100 detections per image and class: a shelf photo with 150 boxes,
    all found, scored AP50 about 0.66. The last maxDets now follows the most crowded image (and
    the detections given for it); other datasets keep COCO's 100."""
    lm = label_map_lib.LabelMap.from_names(["can"])
    rng = np.random.default_rng(0)
    ys, xs = np.meshgrid(np.arange(10), np.arange(15), indexing="ij")
    boxes = np.stack([ys / 10, xs / 15, (ys + 0.8) / 10, (xs + 0.8) / 15], -1).reshape(-1, 4)
    gts = [GroundTruth.make(1, 1500, 1000, boxes, [1] * 150)]
    dets = {1: Detections.make(boxes, rng.uniform(0.5, 1, 150), [1] * 150)}
    r = metrics.coco_metrics(gts, dets, lm)
    assert r["max_dets"] == 150 and r["AP50"] == pytest.approx(1.0) and r["AR100"] == 1.0
    few = [GroundTruth.make(1, 1500, 1000, boxes[:90], [1] * 90)]
    r = metrics.coco_metrics(few, {1: Detections.make(boxes[:90], np.ones(90), [1] * 90)}, lm)
    assert r["max_dets"] == 100 and r["AP50"] == pytest.approx(1.0)


def test_best_threshold_ties_go_to_the_lowest_threshold_in_any_order():
    table = {"thresholds": [0.9, 0.5, 0.7, 0.1],
             "overall": {"f1": [0.5, 0.8, 0.8, None], "precision": [1, 2, 3, 4],
                         "recall": [1, 2, 3, 4], "tp": [1, 2, 3, 4], "fp": [0] * 4,
                         "fn": [0] * 4}, "per_class": {}}
    assert metrics.best_threshold(table)["threshold"] == 0.5  # was 0.5 only by list order
    table["thresholds"] = [0.9, 0.7, 0.5, 0.1]
    assert metrics.best_threshold(table)["threshold"] == 0.5  # was 0.7


def test_non_square_images_put_boxes_in_the_right_coco_area_range():
    """The same normalised 0.1 x 0.1 box is 10x100 px (small) on a 1000x100 image, 100x100 px
    (large) on a 1000x1000 one and 10x10 px on a 100x100 one."""
    lm = label_map_lib.LabelMap.from_names(["cat"])
    box = [[0.2, 0.2, 0.3, 0.3]]
    for (w, h), small, large in (((1000, 100), 1.0, None), ((100, 1000), 1.0, None),
                                 ((1000, 1000), None, 1.0), ((100, 100), 1.0, None)):
        r = metrics.coco_metrics([GroundTruth.make(1, w, h, box, [1])],
                                 {1: Detections.make(box, [0.9], [1])}, lm)
        for key, want in (("APs", small), ("APl", large)):
            assert _close(r[key], -1 if want is None else want), (w, h, key)


def test_undefined_values_are_none_never_nan_or_a_made_up_zero():
    lm = label_map_lib.LabelMap.from_names(["cat", "dog", "bird"])
    gts = [GroundTruth.make(1, 300, 200, [A], [1]), GroundTruth.make(2, 50, 80, [], []),
           GroundTruth.make(3, 80, 50, [A2], [2], [True])]  # dog: a crowd box only
    r = metrics.evaluation_report(gts, {2: Detections.make([A], [0.4], [3])}, lm,
                                  thresholds=[0.3, 0.5])
    json.dumps(r, allow_nan=False)
    pc = r["coco"]["per_class"]
    assert pc["cat"]["AP"] == 0.0 and pc["cat"]["num_gt"] == 1  # missed: a measured 0
    assert pc["dog"]["AP"] is None and pc["bird"]["AP"] is None  # no ground truth to measure
    assert r["pr_curves"]["per_class"]["bird"]["precision_50"] is None
    t = r["threshold_table"]
    assert t["per_class"]["cat"]["precision"] == [None, None]  # no detection: undefined
    assert t["per_class"]["cat"]["recall"] == [0.0, 0.0]
    assert t["per_class"]["bird"]["recall"] == [None, None]  # no ground truth
    assert t["per_class"]["bird"]["precision"] == [0.0, None]  # one FP above 0.3, none above 0.5
    nothing = metrics.evaluation_report([gts[1]], {}, lm)
    assert all(nothing["coco"][k] is None for k in metrics.STAT_NAMES)
    assert nothing["best_threshold"] is None and nothing["pr_curves"]["mean"] == {
        "precision_50": None, "precision_50_95": None}
    json.dumps(nothing, allow_nan=False)


@pytest.mark.parametrize("call, match", [
    (lambda g, lm: metrics.coco_metrics(g, [Detections.make([A], [0.9], [1])], lm),
     "must be a dict"),
    (lambda g, lm: metrics.coco_metrics(g, {1: {"boxes": [A], "scores": [0.9]}}, lm),
     "are a dict, not od.Detections"),
    (lambda g, lm: metrics.coco_metrics(g, {1: Detections.make([[10, 20, 60, 90]], [0.9], [1])},
                                        lm), "coordinate is 90.*pixel boxes"),
    (lambda g, lm: metrics.coco_metrics([GroundTruth.make(1, 300, 200, [[10, 20, 60, 90]], [1])],
                                        {}, lm), "coordinate is 90"),
    (lambda g, lm: metrics.coco_metrics(g, {1: Detections(np.zeros((1, 5), np.float32),
                                                          np.ones(1, np.float32),
                                                          np.ones(1, np.int32))}, lm),
     r"shape \[1, 5\]"),
    (lambda g, lm: metrics.coco_metrics(g, {1: Detections.make([A], [np.nan], [1])}, lm),
     r"image 1 \(a.jpg\): scores contain NaN"),
    (lambda g, lm: metrics.coco_metrics(["a.jpg"], {}, lm), "GroundTruth"),
    (lambda g, lm: metrics.confusion_matrix(g, {}, lm, min_score=float("nan")), "min_score"),
    (lambda g, lm: metrics.evaluation_report(g, {}, lm, min_score=1.5), "min_score"),
    (lambda g, lm: metrics.evaluation_report(g, {}, lm, iou=0.0), "iou must be in"),
    (lambda g, lm: metrics.threshold_table(g, {}, lm, thresholds="high"), "thresholds"),
    (lambda g, lm: metrics.threshold_table(g, {}, lm, thresholds=[np.nan]), "thresholds"),
])
def test_malformed_detections_and_options_are_evaluation_errors(call, match):
    lm = label_map_lib.LabelMap.from_names(["cat"])
    gts = [GroundTruth.make(1, 300, 200, [A], [1], name="a.jpg")]
    with pytest.raises(EvaluationError, match=match):
        call(gts, lm)


def test_check_options_refuses_every_out_of_range_value_before_loading():
    check_options(0.0, 0, 1.0)
    check_options(None, np.int64(3), None)
    for args, match in (((1.5, 0), "--min-score 1.5"), ((float("nan"), 0), "--min-score nan"),
                        (("0.5", 0), "--min-score '0.5'"), ((0.5, -1), "--max-images -1"),
                        ((0.5, 2.5), "--max-images 2.5"), ((0.5, "3"), "--max-images '3'"),
                        ((0.5, float("inf")), "--max-images inf"),
                        ((0.5, 0, 0.0), "--iou-threshold 0.0"),
                        ((0.5, 0, float("nan")), "--iou-threshold nan"),
                        ((0.5, 0, 1.01), "--iou-threshold 1.01")):
        with pytest.raises(OdError, match=match):
            check_options(*args)


# ---- od evaluate on every source, with a real frozen graph -----------------------------------
FORMATS = ("tfrecord", "coco", "csv", "automl", "voc")


def _make_graph(path: Path, table: dict) -> None:
    """A frozen detection graph (OD API tensor names) whose outputs for an image of size
    ``(height, width)`` are ``table[(height, width)] = (boxes, scores, classes)``; other sizes
    get no detections."""
    import tensorflow as tf

    k = max([len(v[1]) for v in table.values()] + [1])
    keys, boxes, scores, classes, nums = [-1], [np.zeros((k, 4))], [np.zeros(k)], [np.ones(k)], [0]
    for (h, w), (b, s, c) in table.items():
        n = len(s)
        keys.append(h * 100000 + w)
        boxes.append(np.concatenate([np.reshape(b, (-1, 4)), np.zeros((k - n, 4))]))
        scores.append(np.concatenate([s, np.zeros(k - n)]))
        classes.append(np.concatenate([c, np.ones(k - n)]))
        nums.append(n)
    g = tf.Graph()
    with g.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, [1, None, None, 3], name="image_tensor")
        shape = tf.shape(image, out_type=tf.int64)
        hit = tf.equal(tf.constant(keys, tf.int64), shape[1] * 100000 + shape[2])
        idx = tf.argmax(tf.cast(hit, tf.int32))  # 0 (no detections) when no size matches
        for name, values in (("detection_boxes", boxes), ("detection_scores", scores),
                             ("detection_classes", classes), ("num_detections", nums)):
            tf.identity(tf.gather(tf.constant(np.asarray(values, np.float32)), idx)[None],
                        name=name)
    path.write_bytes(g.as_graph_def().SerializeToString())


def _csv_truth(path: Path, lm) -> dict:
    """{(height, width): GroundTruth} of an `od data convert` pixel CSV, read with the csv
    module (not od's reader), boxes normalised here; classes not in ``lm`` left out."""
    rows = {}
    for row in csv.DictReader(path.open()):
        rows.setdefault(row["filename"], []).append(row)
    out = {}
    for k, (name, items) in enumerate(sorted(rows.items())):
        w, h = int(items[0]["width"]), int(items[0]["height"])
        known = [r for r in items if r["class"] in lm.names]
        boxes = [[float(r["ymin"]) / h, float(r["xmin"]) / w, float(r["ymax"]) / h,
                  float(r["xmax"]) / w] for r in known]
        out[(h, w)] = GroundTruth.make(k + 1, w, h, np.reshape(boxes, (-1, 4)),
                                       [lm.id_of(r["class"]) for r in known], name=name)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """24 generated images converted to every format (test split: 6 images, sizes distinct);
    ``model/model.pb`` answers each test image with jittered boxes (some of another class,
    some duplicated), a false positive and distinct scores; ``model/label_map.pbtxt``."""
    root = tmp_path_factory.mktemp("audit_eval")
    synthetic.generate(root / "raw", 24, size=(80, 64), seed=5)
    for to in FORMATS:
        convert(root / "raw" / "annotations", root / to, format="voc",
                images=root / "raw" / "images", split=(0.5, 0.25, 0.25), workers=1, to=to)
    lm = label_map_lib.read(root / "tfrecord" / "label_map.pbtxt")
    truth = _csv_truth(root / "csv" / "test_labels.csv", lm)
    assert len(truth) == 6, "test images need distinct sizes"
    rng = np.random.default_rng(0)
    table = {}
    for size, g in list(truth.items())[:-1]:  # the last test image gets no detections
        pick = rng.integers(0, len(g.boxes), len(g.boxes) + 1) if len(g.boxes) else []
        b = np.concatenate([g.boxes[pick] + rng.normal(0, 0.04, (len(pick), 4)),
                            [[0.05, 0.05, 0.4, 0.5]]]).clip(0, 1)
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.01)
        c = np.concatenate([g.class_ids[pick], [1]])
        c[rng.random(len(c)) < 0.2] = 2
        table[size] = (b, rng.uniform(0.05, 0.95, len(c)), c)  # no ties across images
    (root / "model").mkdir()
    _make_graph(root / "model" / "model.pb", table)
    shutil.copy(root / "tfrecord" / "label_map.pbtxt", root / "model" / "label_map.pbtxt")
    dets = {g.image_id: Detections.make(*table[s]) for s, g in truth.items() if s in table}
    return {"root": root, "lm": lm, "truth": list(truth.values()), "dets": dets,
            "model": root / "model" / "model.pb", "table": table}


def _check_numbers(report, gts, dets, lm):
    ids = [it.id for it in lm.items]
    ev = ref_cocoeval(gts, dets, ids)
    for name, v in zip(metrics.STAT_NAMES, ev.stats):
        assert _close(report["coco"][name], v), name
    t = report["threshold_table"]
    ref = ref_table(gts, dets, ids, t["iou"], t["thresholds"])
    for cid in ids:
        pc = t["per_class"][lm.title_of(cid)]
        assert list(zip(pc["tp"], pc["fp"], pc["fn"])) == ref[cid]
    cm = report["confusion_matrix"]
    assert cm["matrix"] == ref_confusion(gts, dets, ids, cm["iou"], cm["min_score"])


def test_od_evaluate_numbers_are_pycocotools_on_every_source(world, tmp_path):
    import od

    r = None
    for fmt in FORMATS:
        r = od.evaluate(world["model"], str(world["root"] / fmt), tmp_path / fmt, html=False,
                        progress=False, min_score=0.3, iou_threshold=0.4)
        assert r["data_summary"]["images"] == 6 and r["data_summary"]["split"] == "test"
        assert (r["threshold_table"]["iou"], r["confusion_matrix"]["min_score"]) == (0.4, 0.3)
        _check_numbers(r, world["truth"], world["dets"], world["lm"])
    assert 0.05 < r["coco"]["AP50"] < 0.95  # a case with something to get right and wrong
    assert r["coco"]["num_detections"] == sum(len(d) for d in world["dets"].values())


def test_cli_writes_strict_json_and_scores_only_classes_the_model_knows(world, tmp_path, capsys):
    """The model knows circle and triangle only: square boxes are counted, not scored."""
    root = world["root"]
    model = tmp_path / "model"
    model.mkdir()
    shutil.copy(world["model"], model / "model.pb")
    lm = label_map_lib.LabelMap((label_map_lib.LabelMapItem(1, "circle"),
                                 label_map_lib.LabelMapItem(3, "triangle")))
    label_map_lib.write(lm, model / "label_map.pbtxt")
    out = tmp_path / "out"
    for fmt in ("csv", "voc"):
        assert cli.main(["evaluate", "--model", str(model / "model.pb"), "--data",
                         str(root / fmt), "--out", str(out), "--min-score", "0.3"]) == 0
        printed = capsys.readouterr().out
        assert "not in the label map" in printed and "square" in printed
        text = (out / "metrics.json").read_text()
        report = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"))
        n_square = sum(1 for row in csv.DictReader((root / "csv" / "test_labels.csv").open())
                       if row["class"] == "square")
        assert report["data_summary"]["unknown_classes"] == {"square": n_square} and n_square
        truth = list(_csv_truth(root / "csv" / "test_labels.csv", lm).values())
        _check_numbers(report, truth, world["dets"], lm)
        assert set(report["coco"]["per_class"]) == {"circle", "triangle"}
        assert (out / "report.html").is_file()


def _md5s(*paths) -> dict:
    out = {}
    for p in paths:
        for f in ([p] if p.is_file() else sorted(p.rglob("*"))):
            if f.is_file():
                out[str(f)] = hashlib.md5(f.read_bytes()).hexdigest()
    return out


def _refused(argv, capsys, match, *keep):
    before = _md5s(*keep)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("od: error: ") and "Traceback" not in err, err
    assert match in err, err
    assert _md5s(*keep) == before  # nothing of the user's was touched
    return err


def test_compare_refuses_an_out_that_holds_the_data(world, tmp_path, capsys):
    """`--compare A B --out DIR` checked only DIR/A and DIR/B: a folder holding the data got
    comparison.csv/.md/.json/.png written over the user's own files (here the annotations)."""
    users = tmp_path / "users"
    users.mkdir()
    for p in (world["root"] / "csv" / "images").iterdir():
        shutil.copy(p, users / p.name)
    shutil.copy(world["root"] / "csv" / "test_labels.csv", users / "comparison.csv")
    (users / "comparison.md").write_text("my notes\n")
    m2 = tmp_path / "m2.pb"
    shutil.copy(world["model"], m2)
    shutil.copy(world["root"] / "model" / "label_map.pbtxt", tmp_path / "label_map.pbtxt")
    base = ["evaluate", "--compare", str(world["model"]), str(m2), "--data",
            str(users / "comparison.csv")]
    _refused(base + ["--out", str(users)], capsys, "contains the input", users)
    assert sorted(p.name for p in users.iterdir() if not p.name.endswith(".jpg")) == \
        ["comparison.csv", "comparison.md"]
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("precious\n")
    _refused(base + ["--out", str(notes)], capsys, "not an output of od", notes)
    cmp = tmp_path / "cmp"
    for _ in range(2):  # a second comparison into the same folder is allowed
        assert cli.main(base + ["--out", str(cmp)]) == 0
    assert outputs.read_marker(cmp)["command"] == "evaluate --compare"
    assert {"comparison.csv", "model", "m2"} <= {p.name for p in cmp.iterdir()}


def test_hostile_command_lines_are_one_clear_error(world, tmp_path, capsys):
    root, model = world["root"], str(world["model"])
    ev = ["evaluate", "--model", model]
    data = ["--data", str(root / "csv" / "test_labels.csv")]
    keep = (root / "csv", root / "model")
    for extra, match in ((["--min-score", "1.5"], "--min-score 1.5"),
                         (["--min-score", "nan"], "--min-score nan"),
                         (["--max-images", "-2"], "--max-images -2"),
                         (["--out", str(root / "csv")], "contains the input"),
                         (["--out", str(root / "csv" / "test_labels.csv")], "is the input"),
                         (["--out", str(root / "csv" / "images")], "is not an output of od"),
                         (["--out", str(root / "model")], "contains the input"),
                         (["--out", str(root)], "contains the input")):
        _refused(ev + data + extra, capsys, match, *keep)
    _refused(ev + data + ["--images", str(root / "csv" / "images"), "--out",
                          str(root / "csv" / "images")], capsys, "is the input", *keep)
    _refused(["evaluate", "--model", model, "--label-map", str(root / "model" / "label_map.pbtxt"),
              *data, "--out", str(root / "model" / "label_map.pbtxt")], capsys, "is the input",
             *keep)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.pb").write_bytes(b"\x07 not a graph" * 20)
    shutil.copy(root / "model" / "label_map.pbtxt", bad / "label_map.pbtxt")
    _refused(["evaluate", "--model", str(bad / "model.pb"), *data, "--out", str(tmp_path / "o")],
             capsys, "not a frozen detection graph", bad)
    (bad / "label_map.pbtxt").write_text("item { nme: 'x' }\n")
    _refused(["evaluate", "--model", str(bad / "model.pb"), *data, "--out", str(tmp_path / "o")],
             capsys, "not a valid label map", bad)
    notest = tmp_path / "notest"
    shutil.copytree(root / "tfrecord", notest)
    (notest / "test-00000-of-00001.tfrecord").write_bytes(b"")
    _refused(ev + ["--data", str(notest), "--out", str(tmp_path / "o")], capsys,
             "hold no examples", notest)
    header = tmp_path / "empty.csv"
    header.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n")
    _refused(ev + ["--data", str(header), "--out", str(tmp_path / "o")], capsys,
             "header but no rows", header)
    assert not (tmp_path / "o").exists()


def test_missing_images_and_broken_records_are_listed_before_inference(world, tmp_path):
    from od.data import tfrecord
    from od.data.records import ImageAnnotation, ObjectBox

    root, lm = world["root"], world["lm"]
    data = tmp_path / "csv"
    shutil.copytree(root / "csv", data)
    first = next(csv.DictReader((data / "test_labels.csv").open()))["filename"]
    (data / "images" / first).unlink()
    with pytest.raises(InvalidDataError, match=f"(?s)1 invalid item.*{first}: image file not "
                       "found") as e:
        read_data(data / "test_labels.csv", lm, images=data / "images")
    assert "--clip-boxes" not in str(e.value)  # that hint is for boxes outside the image
    with pytest.raises(InvalidDataError, match="give the images folder with --images"):
        read_data(data / "test_labels.csv", lm)
    jpg = next((root / "raw" / "images").iterdir())
    w, h = Image.open(jpg).size

    def shard(name, width, data_bytes):
        rec = ImageAnnotation(image_path=Path("a.jpg"), width=width, height=h,
                              boxes=(ObjectBox(0.1, 0.1, 0.5, 0.5, "circle"),))
        tfrecord.write_shard(tmp_path / name, [tfrecord.make_example(rec, data_bytes, "jpeg",
                                                                     [1], 1, "a.jpg")])
        return tmp_path / name

    raw = jpg.read_bytes()
    for name, width, content, match in (
            ("size.tfrecord", w * 2, raw, f"say {2 * w}x{h} but the stored image is {w}x{h}"),
            ("cut.tfrecord", w, raw[:len(raw) // 2], "truncated"),
            ("junk.tfrecord", w, b"not an image", "cannot decode image")):
        with pytest.raises(InvalidDataError, match=match):  # was: scored, or a TF traceback
            read_data(shard(name, width, content), lm)
    record = ImageAnnotation(image_path=Path("a.jpg"), width=w, height=h, boxes=(),
                             source="x.tfrecord#4", image_data=b"junk")
    with pytest.raises(ImageError, match=r"x.tfrecord#4: the stored image cannot be decoded"):
        load_image(record)


def test_an_exif_rotated_photo_is_evaluated_as_convert_stores_it(tmp_path):
    """Boxes drawn on the stored pixels of an EXIF-rotated photo: `od data convert` turns them
    with the image; `od evaluate` on the same CSV refused it (size mismatch)."""
    (tmp_path / "img").mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 120x60, shown 60x120
    Image.new("RGB", (120, 60), (200, 10, 10)).save(tmp_path / "img" / "a.jpg", exif=exif)
    (tmp_path / "l.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                    "a.jpg,120,60,circle,10,5,50,40\n")
    convert(tmp_path / "l.csv", tmp_path / "conv", format="csv", images=tmp_path / "img",
            workers=1)
    lm = label_map_lib.LabelMap.from_names(["circle"])
    stored = read_data(tmp_path / "conv", lm).groundtruth[0]
    g = read_data(tmp_path / "l.csv", lm, images=tmp_path / "img").groundtruth[0]
    assert (g.width, g.height) == (stored.width, stored.height) == (60, 120)
    np.testing.assert_allclose(g.boxes, stored.boxes, atol=1e-6)


def test_report_html_draws_an_image_that_has_no_detections_entry(world, tmp_path):
    """write_html looked detections up with [image_id]: an image the detector found nothing in,
    absent from the dict as the metrics allow, raised KeyError in the gallery."""
    from od import plots, report

    ds = read_data(world["root"] / "csv", world["lm"])
    dets = {g.image_id: Detections.make(*world["table"][(g.height, g.width)])
            for g in ds.groundtruth[1:] if (g.height, g.width) in world["table"]}
    rep = metrics.evaluation_report(ds.groundtruth, dets, world["lm"])
    rep["plots"] = {k: str(v) for k, v in plots.write_report(rep, tmp_path).items()}
    path = report.write_html(rep, tmp_path, ds, dets, world["lm"])
    assert path.stat().st_size > 1000


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
