"""Evaluation maths: COCO box metrics, precision-recall curves, a score-threshold table and a
confusion matrix, from per-image :class:`~od.detections.GroundTruth` and
:class:`~od.detections.Detections`. No TensorFlow.

Boxes come in as float32 ``[N, 4]``, ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1]; they are
converted to COCO pixel ``[x, y, w, h]`` with each image's ``GroundTruth.width/height`` (the
original image pixels) only where they are handed to pycocotools. pycocotools does all IoU and AP
work (``COCOeval`` for AP/AR and PR curves, ``pycocotools.mask.iou`` for the matchings of the
threshold table and the confusion matrix); crowd boxes are ignored regions, as in COCO.

Every result is made of dicts, lists, ints, floats, strings and ``None`` (where a value is
undefined, e.g. the AP of a class without ground truth), so it can be passed to ``json.dumps``.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from od.boxes import normalized_to_xywh
from od.detections import Detections, GroundTruth
from od.errors import OdError

DEFAULT_THRESHOLDS = np.linspace(0.05, 0.95, 19)
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
BACKGROUND = "background"


class EvaluationError(OdError):
    """Ground truth, detections or label map cannot be evaluated together."""


@dataclass(frozen=True)
class _Inputs:
    gts: list[GroundTruth]
    dets: dict[int, Detections]   # image_id -> detections of label-map classes, score-sorted
    class_ids: list[int]          # label-map ids, ascending
    titles: dict[int, str]        # id -> display title (unique in a LabelMap)
    num_ignored: int              # detections dropped because their class is not in the label map


def _crowd(gt: GroundTruth) -> np.ndarray:
    return (np.zeros(len(gt.class_ids), bool) if gt.is_crowd is None
            else np.asarray(gt.is_crowd, bool).reshape(-1))


def _check_boxes(boxes: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(boxes)):
        raise EvaluationError(f"{what}: boxes contain NaN or inf; fix the boxes.")
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise EvaluationError(f"{what}: a box has ymax < ymin or xmax < xmin; boxes must be "
                              "[ymin, xmin, ymax, xmax] normalised to [0, 1].")


def _prepare(groundtruth, detections, label_map) -> _Inputs:
    """Validate the inputs once; drop detections of classes absent from the label map."""
    class_ids = sorted(it.id for it in label_map.items)
    if not class_ids:
        raise EvaluationError("the label map has no classes; nothing to evaluate.")
    known = set(class_ids)
    gts = list(groundtruth)
    if not gts:
        raise EvaluationError("no ground-truth images given; evaluation needs at least one.")
    seen = {}
    for gt in gts:
        where = f"ground truth of image {gt.image_id} ({gt.name or 'unnamed'})"
        if gt.image_id in seen:
            raise EvaluationError(f"image id {gt.image_id} is used by two ground-truth images "
                                  f"({seen[gt.image_id]!r} and {gt.name!r}); ids must be unique.")
        seen[gt.image_id] = gt.name
        if gt.width <= 0 or gt.height <= 0:
            raise EvaluationError(f"{where}: width/height {gt.width}x{gt.height} must be the "
                                  "original image size in pixels (> 0).")
        if not (len(gt.boxes) == len(gt.class_ids) == len(_crowd(gt))):
            raise EvaluationError(f"{where}: {len(gt.boxes)} boxes but {len(gt.class_ids)} class "
                                  f"ids and {len(_crowd(gt))} is_crowd flags.")
        _check_boxes(gt.boxes, where)
        unknown = sorted(set(gt.class_ids.tolist()) - known)
        if unknown:
            raise EvaluationError(f"{where}: class ids {unknown} are not in the label map "
                                  f"{label_map.source} (ids {class_ids}); use the label map the "
                                  "dataset was converted with.")
    dets, ignored = {}, 0
    for image_id, d in detections.items():
        if image_id not in seen:
            raise EvaluationError(f"detections are given for image id {image_id}, which has no "
                                  "ground truth; evaluate detections of the labelled images only.")
        where = f"detections of image {image_id}"
        if not (len(d.boxes) == len(d.scores) == len(d.class_ids)):
            raise EvaluationError(f"{where}: {len(d.boxes)} boxes, {len(d.scores)} scores and "
                                  f"{len(d.class_ids)} class ids; they must have one length.")
        _check_boxes(d.boxes, where)
        if not np.all(np.isfinite(d.scores)):
            raise EvaluationError(f"{where}: scores contain NaN or inf.")
        keep = np.isin(d.class_ids, class_ids)  # the OD API's COCO tools drop unknown ids too
        ignored += int((~keep).sum())
        order = np.argsort(-d.scores[keep], kind="mergesort")
        dets[image_id] = Detections(d.boxes[keep][order], d.scores[keep][order],
                                    d.class_ids[keep][order], d.width, d.height)
    titles = {i: label_map.title_of(i) for i in class_ids}
    return _Inputs(gts, dets, class_ids, titles, ignored)


def _check_iou(iou: float) -> None:
    if not 0 < iou <= 1:
        raise EvaluationError(f"iou must be in (0, 1], got {iou!r}.")


def _num(x) -> float | None:
    """pycocotools' -1 ('no data') → None; anything else → float."""
    x = float(x)
    return None if x < 0 else x


def _mean_valid(a: np.ndarray) -> float | None:
    a = a[a > -1]
    return float(a.mean()) if a.size else None


def _run_cocoeval(inp: _Inputs, verbose: bool) -> COCOeval:
    images, anns = [], []
    for gt in inp.gts:
        images.append({"id": gt.image_id, "width": gt.width, "height": gt.height,
                       "file_name": gt.name})
        xywh = normalized_to_xywh(gt.boxes, gt.width, gt.height)
        for box, cid, crowd in zip(xywh, gt.class_ids.tolist(), _crowd(gt).tolist()):
            anns.append({"id": len(anns) + 1,  # ids from 1: COCOeval reads id 0 as "unmatched"
                         "image_id": gt.image_id, "category_id": cid,
                         "bbox": [float(v) for v in box], "area": float(box[2] * box[3]),
                         "iscrowd": int(crowd)})
    categories = [{"id": i, "name": inp.titles[i]} for i in inp.class_ids]
    sizes = {gt.image_id: (gt.width, gt.height) for gt in inp.gts}
    results = []
    for image_id, d in inp.dets.items():
        xywh = normalized_to_xywh(d.boxes, *sizes[image_id])
        for box, score, cid in zip(xywh, d.scores.tolist(), d.class_ids.tolist()):
            results.append({"image_id": image_id, "category_id": cid,
                            "bbox": [float(v) for v in box], "score": float(score)})
    out = io.StringIO()
    with contextlib.redirect_stdout(out) if not verbose else contextlib.nullcontext():
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": anns, "categories": categories}
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes cannot take an empty list (it reads anns[0])
            coco_dt = COCO()
            coco_dt.dataset = {"images": images, "annotations": [], "categories": categories}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.catIds = list(inp.class_ids)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _coco_from_eval(inp: _Inputs, ev: COCOeval) -> dict:
    res = {name: _num(v) for name, v in zip(STAT_NAMES, ev.stats)}
    prec = ev.eval["precision"]  # [T iou, R recall, K class, A area, M maxDets]
    per_class = {}
    for k, cid in enumerate(int(c) for c in ev.params.catIds):
        n_gt = sum(int(((gt.class_ids == cid) & ~_crowd(gt)).sum()) for gt in inp.gts)
        per_class[inp.titles[cid]] = {"id": cid, "AP": _mean_valid(prec[:, :, k, 0, -1]),
                                      "AP50": _mean_valid(prec[0, :, k, 0, -1]), "num_gt": n_gt}
    res["per_class"] = per_class
    res["num_images"] = len(inp.gts)
    res["num_gt_boxes"] = sum(int((~_crowd(gt)).sum()) for gt in inp.gts)
    res["num_crowd_boxes"] = sum(int(_crowd(gt).sum()) for gt in inp.gts)
    res["num_detections"] = sum(len(d) for d in inp.dets.values())
    res["num_detections_unknown_class"] = inp.num_ignored
    return res


def coco_metrics(groundtruth: list[GroundTruth], detections: dict[int, Detections], label_map,
                 *, verbose: bool = False) -> dict:
    """COCO box metrics computed by pycocotools' ``COCOeval`` (iouType ``'bbox'``).

    Args:
      groundtruth: one GroundTruth per evaluated image (also the images without boxes); boxes
        float32 [N, 4] yxyx normalised, converted to pixels with the record's width/height.
      detections: image_id -> Detections (boxes float32 [K, 4] yxyx normalised). Images absent
        from the dict have no detections. Detections of ids not in ``label_map`` are dropped.
      label_map: od.label_map.LabelMap; its ids (gaps allowed) are the COCO category ids.
      verbose: let pycocotools print its progress and summary table.
    Returns:
      ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
      "ARl"}`` floats in [0, 1] or None (no data, e.g. no small objects), ``"per_class":
      {title: {"id", "AP", "AP50", "num_gt"}}`` (AP None for a class without ground truth),
      ``"num_images", "num_gt_boxes", "num_crowd_boxes", "num_detections",
      "num_detections_unknown_class"``.
    Raises:
      EvaluationError: no images, duplicate image ids, width/height <= 0, bad boxes, a GT
        class id outside the label map, or detections for an image id without ground truth.
    """
    inp = _prepare(groundtruth, detections, label_map)
    return _coco_from_eval(inp, _run_cocoeval(inp, verbose))


def _curves_from_eval(inp: _Inputs, ev: COCOeval) -> dict:
    prec = ev.eval["precision"][:, :, :, 0, -1]  # [T, R, K], area 'all', 100 detections
    per_class, valid50, valid = {}, [], []
    for k, cid in enumerate(int(c) for c in ev.params.catIds):
        p = prec[:, :, k]
        has = bool((p > -1).all())
        if has:
            valid50.append(p[0])
            valid.append(p.mean(axis=0))
        per_class[inp.titles[cid]] = {
            "id": cid, "AP": _mean_valid(p), "AP50": _mean_valid(p[0]),
            "precision_50": p[0].tolist() if has else None,
            "precision_50_95": p.mean(axis=0).tolist() if has else None}
    return {"recall": [float(r) for r in ev.params.recThrs],
            "iou_thresholds": [float(t) for t in ev.params.iouThrs],
            "mean": {"precision_50": np.mean(valid50, axis=0).tolist() if valid50 else None,
                     "precision_50_95": np.mean(valid, axis=0).tolist() if valid else None},
            "per_class": per_class}


def pr_curves(groundtruth: list[GroundTruth], detections: dict[int, Detections], label_map,
              *, verbose: bool = False) -> dict:
    """Per-class precision-recall curves from ``COCOeval.eval['precision']`` (area 'all', 100
    detections per image), at IoU 0.5 and averaged over IoU 0.5:0.95.

    Arguments and errors as :func:`coco_metrics`.
    Returns:
      ``{"recall": [101 floats 0..1], "iou_thresholds": [10 floats], "mean": {"precision_50",
      "precision_50_95"}, "per_class": {title: {"id", "AP", "AP50", "precision_50",
      "precision_50_95"}}}``; each precision is a list of 101 floats aligned with ``recall``
      (precision is 0 beyond the largest reached recall), or None for a class without ground
      truth; ``mean`` averages the classes that have ground truth.
    """
    inp = _prepare(groundtruth, detections, label_map)
    return _curves_from_eval(inp, _run_cocoeval(inp, verbose))


def _ious(d_xywh: np.ndarray, g_xywh: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """[D, G] IoU from pycocotools (for crowd GT: intersection over the detection's area)."""
    if len(d_xywh) == 0 or len(g_xywh) == 0:
        return np.zeros((len(d_xywh), len(g_xywh)))
    return np.asarray(mask_utils.iou(d_xywh, g_xywh, crowd.astype(np.uint8)), dtype=np.float64)


def _greedy_match(ious: np.ndarray, crowd: np.ndarray, iou: float):
    """COCO's matching: detections in the given (score-descending) order each take the unmatched
    non-crowd GT of highest IoU >= ``iou``; a detection that only reaches a crowd GT is ignored.

    Returns (det_to_gt int [D], -1 if unmatched; det_ignored bool [D]).
    """
    n_det, n_gt = ious.shape
    thr = min(iou, 1 - 1e-10)
    det_to_gt, ignored = np.full(n_det, -1), np.zeros(n_det, bool)
    taken = crowd.copy()
    for d in range(n_det):
        cand = np.where(taken, -1.0, ious[d]) if n_gt else ious[d]
        if n_gt and cand.max() >= thr:
            g = int(np.argmax(cand))
            det_to_gt[d], taken[g] = g, True
        elif crowd.any() and ious[d, crowd].max() >= thr:
            ignored[d] = True
    return det_to_gt, ignored


def _empty_dets() -> Detections:
    return Detections.make(np.zeros((0, 4)), [], [])


def _counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> dict:
    def ratio(a, b):
        return [float(x / y) if y else None for x, y in zip(a, b)]
    return {"precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn),
            "tp": tp.tolist(), "fp": fp.tolist(), "fn": fn.tolist()}


def _threshold_table(inp: _Inputs, iou: float, thresholds) -> dict:
    _check_iou(iou)
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0 or not np.all((t >= 0) & (t <= 1)):
        raise EvaluationError(f"thresholds must be a non-empty 1-D list of scores in [0, 1], got "
                              f"{np.asarray(thresholds).tolist()!r}.")
    t32 = t.astype(np.float32)  # scores are float32: compare in float32 (0.7 must keep 0.7)
    per_class, totals = {}, np.zeros((3, len(t)), np.int64)
    parts = {cid: ([np.zeros(0, np.float32)], [np.zeros(0, bool)], [np.zeros(0, bool)], [0])
             for cid in inp.class_ids}  # per class: scores, is_tp, is_fp, num non-crowd GT
    for gt in inp.gts:
        d = inp.dets.get(gt.image_id, _empty_dets())
        for cid in np.union1d(d.class_ids, gt.class_ids).tolist():
            dm, gm = d.class_ids == cid, gt.class_ids == cid
            crowd = _crowd(gt)[gm]
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


def threshold_table(groundtruth: list[GroundTruth], detections: dict[int, Detections], label_map,
                    iou: float = 0.5, thresholds=DEFAULT_THRESHOLDS) -> dict:
    """Precision, recall, F1 and TP/FP/FN per score threshold, overall and per class.

    A detection counts at threshold ``t`` if ``score >= t``. Matching is per image and class,
    greedy by descending score, at IoU >= ``iou`` (pycocotools.mask.iou on pixel boxes); crowd GT
    are ignored regions (a detection on one is neither TP nor FP; they are never FN).

    Args:
      groundtruth, detections, label_map: as :func:`coco_metrics`.
      iou: IoU threshold in (0, 1].
      thresholds: 1-D scores in [0, 1].
    Returns:
      ``{"iou", "thresholds": [floats], "overall": {"num_gt", "precision", "recall", "f1", "tp",
      "fp", "fn"}, "per_class": {title: {"id", "num_gt", ...same lists}}}``; every list is
      aligned with ``thresholds``; precision/recall/F1 are None where undefined (0/0).
    Raises:
      EvaluationError: as :func:`coco_metrics`, or bad ``iou``/``thresholds``.
    """
    return _threshold_table(_prepare(groundtruth, detections, label_map), iou, thresholds)


def best_threshold(table: dict, class_name: str | None = None) -> dict | None:
    """The row of ``table`` (from :func:`threshold_table`) with the highest F1, overall or for
    ``class_name``; ties go to the lowest threshold. None if F1 is undefined everywhere.

    Returns ``{"threshold", "precision", "recall", "f1", "tp", "fp", "fn"}``.
    Raises EvaluationError if ``class_name`` is not in the table.
    """
    if class_name is None:
        row = table["overall"]
    elif class_name in table["per_class"]:
        row = table["per_class"][class_name]
    else:
        raise EvaluationError(f"class {class_name!r} is not in the threshold table (classes: "
                              f"{', '.join(table['per_class'])}).")
    f1 = [-1.0 if v is None else v for v in row["f1"]]
    if max(f1, default=-1.0) < 0:
        return None
    i = int(np.argmax(f1))
    return {"threshold": table["thresholds"][i],
            **{k: row[k][i] for k in ("precision", "recall", "f1", "tp", "fp", "fn")}}


def _confusion_matrix(inp: _Inputs, iou: float, min_score: float) -> dict:
    index = {cid: i for i, cid in enumerate(inp.class_ids)}
    bg = len(inp.class_ids)
    m = np.zeros((bg + 1, bg + 1), np.int64)
    for gt in inp.gts:
        d = inp.dets.get(gt.image_id, _empty_dets()).above(min_score)
        crowd = _crowd(gt)
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


def confusion_matrix(groundtruth: list[GroundTruth], detections: dict[int, Detections], label_map,
                     iou: float = 0.5, min_score: float = 0.5) -> dict:
    """Detection confusion matrix, as in the TF OD API / AutoML Vision.

    Detections with ``score >= min_score`` are matched to GT class-agnostically, greedily by
    descending score, each to the unmatched GT of highest IoU >= ``iou`` (pycocotools.mask.iou).
    A match adds 1 at [true class, predicted class]; an unmatched detection at [background,
    predicted]; an unmatched GT at [true, background]. Crowd GT are ignored regions.

    Returns:
      ``{"labels": [C titles in id order + "background"], "class_ids": [ids + 0],
      "matrix": (C+1) x (C+1) list of int lists (rows true, columns predicted), "rows",
      "columns", "iou", "min_score"}``.
    Raises:
      EvaluationError: as :func:`coco_metrics`.
    """
    _check_iou(iou)
    return _confusion_matrix(_prepare(groundtruth, detections, label_map), iou, min_score)


def evaluation_report(groundtruth: list[GroundTruth], detections: dict[int, Detections], label_map,
                      *, iou: float = 0.5, thresholds=DEFAULT_THRESHOLDS, min_score: float = 0.5,
                      verbose: bool = False) -> dict:
    """Everything :mod:`od.plots` draws, from one validation and one COCOeval run.

    Returns:
      ``{"coco": coco_metrics(...), "pr_curves": pr_curves(...), "threshold_table":
      threshold_table(..., iou, thresholds), "best_threshold": best_threshold(table),
      "confusion_matrix": confusion_matrix(..., iou, min_score)}``, JSON-serialisable.
    Raises:
      EvaluationError: as the functions it bundles.
    """
    _check_iou(iou)
    inp = _prepare(groundtruth, detections, label_map)
    ev = _run_cocoeval(inp, verbose)
    table = _threshold_table(inp, iou, thresholds)
    return {"coco": _coco_from_eval(inp, ev), "pr_curves": _curves_from_eval(inp, ev),
            "threshold_table": table, "best_threshold": best_threshold(table),
            "confusion_matrix": _confusion_matrix(inp, iou, min_score)}
