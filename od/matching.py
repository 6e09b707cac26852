"""COCO's greedy matching of detections to ground truth, and the two tables built on it: TP/FP/FN
per score threshold and the confusion matrix (:func:`od.metrics.threshold_table` and
:func:`od.metrics.confusion_matrix` check the inputs and call these). Boxes are float32 ``[N, 4]``
``[ymin, xmin, ymax, xmax]`` normalised to [0, 1], turned into COCO pixel ``[x, y, w, h]`` with each
image's size for ``pycocotools.mask.iou``, which computes every IoU. No TensorFlow.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from od.boxes import normalized_to_xywh
from od.detections import Detections, GroundTruth

BACKGROUND = "background"


def crowd_mask(gt: GroundTruth) -> np.ndarray:
    """bool [N]: which of ``gt``'s boxes are crowd regions (all False when it has no flags)."""
    return (np.zeros(len(gt.class_ids), bool) if gt.is_crowd is None
            else np.asarray(gt.is_crowd, bool).reshape(-1))


def _ious(d_xywh: np.ndarray, g_xywh: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """[D, G] IoU from pycocotools (for crowd GT: intersection over the detection's area)."""
    if len(d_xywh) == 0 or len(g_xywh) == 0:
        return np.zeros((len(d_xywh), len(g_xywh)))
    return np.asarray(mask_utils.iou(d_xywh, g_xywh, crowd.astype(np.uint8)), dtype=np.float64)


def _greedy_match(ious: np.ndarray, crowd: np.ndarray, iou: float):
    """COCO's matching (``COCOeval.evaluateImg``): detections in the given (score-descending)
    order each take the unmatched non-crowd GT of highest IoU >= ``iou``, of several with that
    IoU the last one, as COCOeval does; a detection that only reaches a crowd GT is ignored.

    Returns (det_to_gt int [D], -1 if unmatched; det_ignored bool [D]).
    """
    n_det, n_gt = ious.shape
    thr = min(iou, 1 - 1e-10)
    det_to_gt, ignored = np.full(n_det, -1), np.zeros(n_det, bool)
    taken = crowd.copy()
    for d in range(n_det):
        cand = np.where(taken, -1.0, ious[d]) if n_gt else ious[d]
        if n_gt and cand.max() >= thr:
            g = n_gt - 1 - int(np.argmax(cand[::-1]))  # the last GT of the highest IoU
            det_to_gt[d], taken[g] = g, True
        elif crowd.any() and ious[d, crowd].max() >= thr:
            ignored[d] = True
    return det_to_gt, ignored


def _counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict:
    def ratio(a, b):
        return [float(x / y) if y else None for x, y in zip(a, b)]
    return {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "tp": tp.tolist(), "fp": fp.tolist(), "fn": fn.tolist()}


def threshold_rows(inp, iou: float, t: np.ndarray) -> dict:
    """:func:`od.metrics.threshold_table` of checked inputs ``inp`` (``gts``, score-sorted
    ``dets`` by image id, ``class_ids``, ``titles``) at IoU ``iou`` and float64 scores ``t``."""
    t32 = t.astype(np.float32)  # scores are float32: compare in float32 (0.7 must keep 0.7)
    per_class, totals = {}, np.zeros((3, len(t)), np.int64)
    parts = {cid: ([np.zeros(0, np.float32)], [np.zeros(0, bool)], [np.zeros(0, bool)], [0])
             for cid in inp.class_ids}  # per class: scores, is_tp, is_fp, num non-crowd GT
    for gt in inp.gts:
        d = inp.dets.get(gt.image_id, Detections.empty())
        for cid in np.union1d(d.class_ids, gt.class_ids).tolist():
            dm, gm = d.class_ids == cid, gt.class_ids == cid
            crowd = crowd_mask(gt)[gm]
            ious = _ious(normalized_to_xywh(d.boxes[dm], gt.width, gt.height),
                         normalized_to_xywh(gt.boxes[gm], gt.width, gt.height), crowd)
            det_to_gt, ignored = _greedy_match(ious, crowd, iou)
            scores, is_tp, is_fp, n_gt = parts[cid]
            scores.append(d.scores[dm])
            is_tp.append(det_to_gt >= 0)
            is_fp.append((det_to_gt < 0) & ~ignored)
            n_gt[0] += int((~crowd).sum())
    for cid in inp.class_ids:
        scores, is_tp, is_fp, (n_gt,) = parts[cid]
        s, tp_m, fp_m = np.concatenate(scores), np.concatenate(is_tp), np.concatenate(is_fp)
        above = s[None, :] >= t32[:, None]  # [thresholds, detections]
        tp = (above & tp_m).sum(axis=1).astype(np.int64)
        fp = (above & fp_m).sum(axis=1).astype(np.int64)
        fn = n_gt - tp
        totals += np.stack([tp, fp, fn])
        per_class[inp.titles[cid]] = {"id": cid, "num_gt": n_gt, **_counts(tp, fp, fn)}
    return {"iou": float(iou), "thresholds": [round(float(x), 6) for x in t],
            "overall": {"num_gt": sum(c["num_gt"] for c in per_class.values()),
                        **_counts(*totals)},
            "per_class": per_class}


def confusion_rows(inp, iou: float, min_score: float) -> dict:
    """:func:`od.metrics.confusion_matrix` of checked inputs ``inp`` (as :func:`threshold_rows`)."""
    index = {cid: i for i, cid in enumerate(inp.class_ids)}
    bg = len(inp.class_ids)
    m = np.zeros((bg + 1, bg + 1), np.int64)
    for gt in inp.gts:
        d = inp.dets.get(gt.image_id, Detections.empty()).above(np.float32(min_score))  # as scores
        crowd = crowd_mask(gt)
        ious = _ious(normalized_to_xywh(d.boxes, gt.width, gt.height),
                     normalized_to_xywh(gt.boxes, gt.width, gt.height), crowd)
        det_to_gt, ignored = _greedy_match(ious, crowd, iou)
        for di, (g, ign) in enumerate(zip(det_to_gt.tolist(), ignored.tolist())):
            pred = index[int(d.class_ids[di])]
            if g >= 0:
                m[index[int(gt.class_ids[g])], pred] += 1
            elif not ign:
                m[bg, pred] += 1
        missed = np.ones(len(crowd), bool)
        missed[det_to_gt[det_to_gt >= 0]] = False
        for g in np.flatnonzero(missed & ~crowd):
            m[index[int(gt.class_ids[g])], bg] += 1
    return {"labels": [inp.titles[c] for c in inp.class_ids] + [BACKGROUND],
            "class_ids": list(inp.class_ids) + [0], "matrix": m.tolist(),
            "rows": "true class", "columns": "predicted class",
            "iou": float(iou), "min_score": float(min_score)}
