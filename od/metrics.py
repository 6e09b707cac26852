"""Evaluation maths: COCO box metrics, precision-recall curves, a score-threshold table and a
confusion matrix, from per-image :class:`~od.detections.GroundTruth` and
:class:`~od.detections.Detections`. No TensorFlow.

Boxes come in as float32 ``[N, 4]``, ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1]; they are
converted to COCO pixel ``[x, y, w, h]`` with each image's ``GroundTruth.width/height`` (the
original image pixels) only where they are handed to pycocotools. pycocotools does all IoU and AP
work (``COCOeval`` for AP/AR and PR curves, ``pycocotools.mask.iou`` for the matchings of the
threshold table and the confusion matrix, in :mod:`od.matching`); crowd boxes are ignored
regions, as in COCO. The COCO ``area`` of a box (which sorts it into APs/APm/APl) is its pixel
width x height, also for a COCO JSON source whose ``area`` is a mask's (the official evaluation of
such a file would sort by the mask area).

Every result is made of dicts, lists, ints, floats, strings and ``None`` (where a value is
undefined, e.g. the AP of a class without ground truth), so it can be passed to ``json.dumps``.
"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from od import matching
from od.boxes import normalized_to_xywh
from od.detections import Detections, GroundTruth
from od.errors import OdError

DEFAULT_THRESHOLDS = np.linspace(0.05, 0.95, 19)
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl",
              "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
BACKGROUND = matching.BACKGROUND
COCO_MAX_DETS = 100  # COCOeval's detections per image and class (see max_dets)


class EvaluationError(OdError):
    """Ground truth, detections or label map cannot be evaluated together."""


@dataclass(frozen=True)
class _Inputs:
    gts: list[GroundTruth]
    dets: dict[int, Detections]   # image_id -> detections of label-map classes, score-sorted
    class_ids: list[int]          # label-map ids, ascending
    titles: dict[int, str]        # id -> display title (unique in a LabelMap)
    num_ignored: int              # detections dropped because their class is not in the label map


_NORMALISED = "boxes must be [ymin, xmin, ymax, xmax] normalised to [0, 1]"
GT_TOLERANCE = 1e-3   # ground truth may leave [0, 1] by this much (rounding), no more
DET_LIMIT = 1.0       # a detection coordinate beyond [-1, 2] is not normalised (pixels?)


def _check_boxes(boxes: np.ndarray, what: str, limit: float) -> None:
    """Refuse non-finite, reversed or (beyond ``limit`` outside [0, 1]) unnormalised boxes."""
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise EvaluationError(f"{what}: boxes have shape {list(boxes.shape)}; {_NORMALISED}, "
                              "shape [N, 4].")
    if not np.all(np.isfinite(boxes)):
        raise EvaluationError(f"{what}: boxes contain NaN or inf; fix the boxes.")
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise EvaluationError(f"{what}: a box has ymax < ymin or xmax < xmin; {_NORMALISED}.")
    if boxes.size and (boxes.min() < -limit or boxes.max() > 1 + limit):
        raise EvaluationError(f"{what}: a box coordinate is {float(boxes.max()):g} (min "
                              f"{float(boxes.min()):g}); {_NORMALISED} (pixel boxes: divide by "
                              "the image width and height).")


def _check_detections(detections) -> dict:
    if not isinstance(detections, dict):
        raise EvaluationError(f"detections must be a dict {{image_id: od.Detections}}, got "
                              f"{type(detections).__name__}.")
    for image_id, d in detections.items():
        if not isinstance(d, Detections):
            raise EvaluationError(f"detections of image id {image_id!r} are a "
                                  f"{type(d).__name__}, not od.Detections; build them with "
                                  "od.Detections.make(boxes, scores, class_ids).")
    return detections


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
        if not isinstance(gt, GroundTruth):
            raise EvaluationError(f"ground truth must be od.detections.GroundTruth, one per "
                                  f"image; got a {type(gt).__name__}.")
        where = f"ground truth of image {gt.image_id} ({gt.name or 'unnamed'})"
        if gt.image_id in seen:
            raise EvaluationError(f"image id {gt.image_id} is used by two ground-truth images "
                                  f"({seen[gt.image_id]!r} and {gt.name!r}); ids must be unique.")
        seen[gt.image_id] = gt.name
        if gt.width <= 0 or gt.height <= 0:
            raise EvaluationError(f"{where}: width/height {gt.width}x{gt.height} must be the "
                                  "original image size in pixels (> 0).")
        if not (len(gt.boxes) == len(gt.class_ids) == len(matching.crowd_mask(gt))):
            raise EvaluationError(f"{where}: {len(gt.boxes)} boxes but {len(gt.class_ids)} class "
                                  f"ids and {len(matching.crowd_mask(gt))} is_crowd flags.")
        _check_boxes(gt.boxes, where, GT_TOLERANCE)
        unknown = sorted(set(gt.class_ids.tolist()) - known)
        if unknown:
            raise EvaluationError(f"{where}: class ids {unknown} are not in the label map "
                                  f"{label_map.source} (ids {class_ids}); use the label map the "
                                  "dataset was converted with.")
    dets, ignored = {}, 0
    for image_id, d in _check_detections(detections).items():
        if image_id not in seen:
            raise EvaluationError(f"detections are given for image id {image_id!r}, which has no "
                                  "ground truth; evaluate detections of the labelled images only.")
        where = f"detections of image {image_id} ({seen[image_id] or 'unnamed'})"
        if not (len(d.boxes) == len(d.scores) == len(d.class_ids)):
            raise EvaluationError(f"{where}: {len(d.boxes)} boxes, {len(d.scores)} scores and "
                                  f"{len(d.class_ids)} class ids; they must have one length.")
        _check_boxes(d.boxes, where, DET_LIMIT)
        if not np.all(np.isfinite(d.scores)):
            raise EvaluationError(f"{where}: scores contain NaN or inf; the model's output is "
                                  "broken (check its export, or its input preprocessing).")
        keep = np.isin(d.class_ids, class_ids)  # the OD API's COCO tools drop unknown ids too
        ignored += int((~keep).sum())
        order = np.argsort(-d.scores[keep], kind="mergesort")
        dets[image_id] = Detections(d.boxes[keep][order], d.scores[keep][order],
                                    d.class_ids[keep][order], d.width, d.height)
    titles = {i: label_map.title_of(i) for i in class_ids}
    return _Inputs(gts, dets, class_ids, titles, ignored)


def _check_iou(iou: float) -> None:
    if not isinstance(iou, (int, float, np.number)) or not 0 < iou <= 1:  # NaN fails too
        raise EvaluationError(f"iou must be in (0, 1], got {iou!r}.")


def _check_min_score(min_score: float) -> None:
    if not isinstance(min_score, (int, float, np.number)) or not 0 <= min_score <= 1:
        raise EvaluationError(f"min_score must be in [0, 1], got {min_score!r}.")


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
        for box, cid, crowd in zip(xywh, gt.class_ids.tolist(), matching.crowd_mask(gt).tolist()):
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
        ev.params.maxDets = [1, 10, max_dets(inp)]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _most_per_class(boxes_by_image) -> int:
    """The most boxes of one class in one image (``(class_ids, keep)`` per image)."""
    return max((int(np.unique(c[k], return_counts=True)[1].max(initial=0))
                for c, k in boxes_by_image), default=0)


def max_dets(inp: _Inputs) -> int:
    """COCOeval's last ``maxDets`` (detections per image and class that count: AP, AR100): COCO's
    100, or, where one image holds more boxes of one class than that (shelves, crowds), the most
    detections of one class the model gave in one image, so that a crowded picture's recall is
    not capped at 100 boxes by the metric itself."""
    most_gt = _most_per_class((gt.class_ids, ~matching.crowd_mask(gt)) for gt in inp.gts)
    if most_gt <= COCO_MAX_DETS:
        return COCO_MAX_DETS
    most_det = _most_per_class((d.class_ids, np.ones(len(d), bool)) for d in inp.dets.values())
    return max(COCO_MAX_DETS, most_gt, most_det)


def _coco_from_eval(inp: _Inputs, ev: COCOeval) -> dict:
    res = {name: _num(v) for name, v in zip(STAT_NAMES, ev.stats)}
    res["max_dets"] = int(ev.params.maxDets[-1])
    prec = ev.eval["precision"]  # [T iou, R recall, K class, A area, M maxDets]
    res["AP"] = _mean_valid(prec[:, :, :, 0, -1])  # summarize(): at maxDets 100, -1 if not listed
    per_class = {}
    for k, cid in enumerate(int(c) for c in ev.params.catIds):
        n_gt = sum(int(((gt.class_ids == cid) & ~matching.crowd_mask(gt)).sum()) for gt in inp.gts)
        per_class[inp.titles[cid]] = {"id": cid, "AP": _mean_valid(prec[:, :, k, 0, -1]),
                                      "AP50": _mean_valid(prec[0, :, k, 0, -1]), "num_gt": n_gt}
    res["per_class"] = per_class
    res["num_images"] = len(inp.gts)
    res["num_gt_boxes"] = sum(int((~matching.crowd_mask(gt)).sum()) for gt in inp.gts)
    res["num_crowd_boxes"] = sum(int(matching.crowd_mask(gt).sum()) for gt in inp.gts)
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
      "ARl"}`` floats in [0, 1] or None (no data, e.g. no small objects); ``"max_dets"``: the
      detections per image and class that count (COCO's 100, more for crowded images: see
      :func:`max_dets`; AR100 is the AR at that many), ``"per_class":
      {title: {"id", "AP", "AP50", "num_gt"}}`` (AP None for a class without ground truth),
      ``"num_images", "num_gt_boxes", "num_crowd_boxes", "num_detections",
      "num_detections_unknown_class"``.
    Raises:
      EvaluationError: no images, duplicate image ids, width/height <= 0, boxes not [N, 4] or
        NaN/inf or reversed or not normalised (GT beyond [0, 1] by more than ``GT_TOLERANCE``, a
        detection beyond [-1, 2]), NaN scores, a GT class id outside the label map, detections
        not a dict of od.Detections, or detections for an image id without ground truth.
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


def _thresholds(thresholds) -> np.ndarray:
    try:
        t = np.asarray(thresholds, dtype=np.float64)
    except (TypeError, ValueError):
        t = np.asarray([np.nan])
    if t.ndim != 1 or t.size == 0 or not np.all((t >= 0) & (t <= 1)):  # NaN fails too
        raise EvaluationError(f"thresholds must be a non-empty 1-D list of scores in [0, 1], got "
                              f"{thresholds!r}.")
    return t


def threshold_table(groundtruth: list[GroundTruth], detections: dict[int, Detections], label_map,
                    iou: float = 0.5, thresholds=DEFAULT_THRESHOLDS) -> dict:
    """Precision, recall, F1 and TP/FP/FN per score threshold, overall and per class.

    A detection counts at threshold ``t`` if ``score >= t``. Matching is per image and class,
    greedy by descending score, at IoU >= ``iou`` (pycocotools.mask.iou on pixel boxes); crowd GT
    are ignored regions (a detection on one is neither TP nor FP; they are never FN).

    Every detection takes part (COCOeval keeps the 100 best per image and class), so with at
    most 100 per image and class the TPs at threshold 0 are COCOeval's at IoU ``iou``.

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
    _check_iou(iou)
    t = _thresholds(thresholds)
    return matching.threshold_rows(_prepare(groundtruth, detections, label_map), iou, t)


def best_threshold(table: dict, class_name: str | None = None) -> dict | None:
    """The row of ``table`` (from :func:`threshold_table`) with the highest F1, overall or for
    ``class_name``; ties go to the lowest threshold (in any order of ``table["thresholds"]``).
    None if F1 is undefined everywhere (no ground truth and no detection at any threshold).

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
    best = max(f1)
    i = min((k for k, v in enumerate(f1) if v == best), key=lambda k: table["thresholds"][k])
    return {"threshold": table["thresholds"][i],
            **{k: row[k][i] for k in ("precision", "recall", "f1", "tp", "fp", "fn")}}


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
      EvaluationError: as :func:`coco_metrics`; ``iou`` outside (0, 1], ``min_score`` outside
        [0, 1].
    """
    _check_iou(iou)
    _check_min_score(min_score)
    return matching.confusion_rows(_prepare(groundtruth, detections, label_map), iou, min_score)


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
    _check_min_score(min_score)
    t = _thresholds(thresholds)
    inp = _prepare(groundtruth, detections, label_map)
    ev = _run_cocoeval(inp, verbose)
    table = matching.threshold_rows(inp, iou, t)
    return {"coco": _coco_from_eval(inp, ev), "pr_curves": _curves_from_eval(inp, ev),
            "threshold_table": table, "best_threshold": best_threshold(table),
            "confusion_matrix": matching.confusion_rows(inp, iou, min_score)}
