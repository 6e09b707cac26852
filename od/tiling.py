"""Slicing-aided detection: small objects in photos far larger than the model input.

A detector resizes the whole photo to its input size, so a 30 px object of a 4000 px photo shrinks
to 2 px at a 256 px input and cannot be found. ``detect_tiled`` runs the detector on the whole
image (SAHI's "standard prediction", for objects too large for a tile) and on overlapping
``tile`` × ``tile`` pixel windows of it (each resized to the model's input by the detector as
usual), maps every box back to the whole image (normalised ``[ymin, xmin, ymax, xmax]``) and
merges them, per class:

1. Fragments. An object cut by a tile border inside the image is seen by that tile as a partial
   box with a side on the border (within ``EDGE_MARGIN`` of the tile side: a "cut" side). A cut
   box and a same-class box of another window are one object when they agree (IoU >=
   ``iou_threshold``, Model Garden ``box_ops.bbox_overlap``) on the region both windows saw.
   Linked cut boxes are joined (transitively) with at most one whole box (the best linked one);
   each side of the joined box comes from the best-scoring member not cut on that side (the
   outermost when all are), its score is the best member's.
2. A box still cut after that, lying at least ``iou_threshold`` (of its area, Model Garden
   ``bbox_intersection_over_area``) inside a larger same-class box of another window, is a piece
   of that object and is dropped.
3. Duplicates: per-class NMS (``tf.image.non_max_suppression``, IoU ``iou_threshold``).

SAHI's default merge (greedy NMM on intersection over the smaller box) unions any two boxes that
overlap that much, which also welds neighbours that overlap in a crowd; the rules above only touch
boxes that a tile border cut. With ``overlap`` 0 neighbouring tiles share no pixels, so pieces of
an object are joined only through the whole-image box (use the default 0.2).
"""
from __future__ import annotations

import numbers

import numpy as np

from od.detections import Detections
from od.errors import OdError

#: smallest tile side in pixels
MIN_TILE = 32
#: most windows per image (one model call each): a 10000x10000 px photo in 256 px tiles (0.2
#: overlap) has 2,401; more than this is a settings mistake (tiny tiles, 0.9 overlap) that would
#: run for hours on one image
MAX_TILES = 10_000
#: a box side within this fraction of the tile side from a tile border inside the image is "cut"
EDGE_MARGIN = 0.05


def _check(tile, overlap) -> tuple[int, float]:
    """``(tile, overlap)`` as int/float; OdError naming the bad value and the fix."""
    if (isinstance(tile, bool) or not isinstance(tile, numbers.Real)
            or not float(tile).is_integer()):
        raise OdError(f"--tile {tile!r}: must be a whole number of pixels, at least {MIN_TILE} "
                      "(0: no tiles; e.g. the model's input size, 256 or 512).")
    if tile < MIN_TILE:
        raise OdError(f"--tile {int(tile)}: a tile must be at least {MIN_TILE} px (0: no tiles; "
                      "e.g. the model's input size, 256 or 512).")
    if (isinstance(overlap, bool) or not isinstance(overlap, numbers.Real)
            or not 0.0 <= overlap <= 0.9):
        raise OdError(f"--tile-overlap {overlap!r}: must be in [0, 0.9] (default 0.2).")
    return int(tile), float(overlap)


def check_options(tile, overlap) -> None:
    """Refuse a bad ``--tile`` / ``--tile-overlap`` before any work (OdError as ``windows``);
    ``tile`` 0 (no tiles) is allowed, its overlap checked all the same."""
    _check(tile or MIN_TILE, overlap)


def _starts(n: int, tile: int, step: int) -> list[int]:
    if n <= tile:
        return [0]
    return list(range(0, n - tile, step)) + [n - tile]


def _count(n: int, tile: int, step: int) -> int:
    return 1 if n <= tile else -(-(n - tile) // step) + 1


def check_count(width: int, height: int, tile: int, overlap: float = 0.2) -> int:
    """The number of ``windows`` a ``width`` × ``height`` px image needs, without making them.
    Raises OdError as ``windows`` does (bad ``tile``/``overlap``; over ``MAX_TILES``, naming a
    ``tile`` that fits)."""
    tile, overlap = _check(tile, overlap)
    width, height = int(width), int(height)
    step = max(1, int(tile * (1 - overlap)))
    n = _count(width, tile, step) * _count(height, tile, step)
    if n > MAX_TILES:
        fit = tile
        while _count(width, fit, max(1, int(fit * (1 - overlap)))) * _count(
                height, fit, max(1, int(fit * (1 - overlap)))) > MAX_TILES:
            fit *= 2
        raise OdError(f"--tile {tile} --tile-overlap {overlap:g}: a {width}x{height} px image "
                      f"needs {n} tiles (one model call each, at most {MAX_TILES}); use --tile "
                      f"{fit} or more, or a smaller --tile-overlap.")
    return n


def windows(width: int, height: int, tile: int, overlap: float = 0.2) -> list[tuple]:
    """Tile windows ``(x0, y0, x1, y1)`` (int pixels, x1/y1 exclusive) covering every pixel of a
    ``width`` × ``height`` image, row by row.

    Windows are ``tile`` px square, clipped to the image where it is smaller than a tile (one
    window, the whole image, when it is smaller in both sides); neighbours overlap by at least
    ``overlap`` of a tile (``tile - int(tile * (1 - overlap))`` px); the last column/row is flush
    with the right/bottom edge (so it may overlap its neighbour more). The count per side is the
    fewest that does this.
    Raises:
      OdError: ``tile`` not a whole number or < ``MIN_TILE``; ``overlap`` outside [0, 0.9]; more
        than ``MAX_TILES`` windows (the message says which ``tile`` fits).
    """
    tile, overlap = _check(tile, overlap)
    width, height = int(width), int(height)
    check_count(width, height, tile, overlap)
    step = max(1, int(tile * (1 - overlap)))
    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in _starts(height, tile, step) for x in _starts(width, tile, step)]


def _cut_sides(boxes: np.ndarray, window, width: int, height: int) -> np.ndarray:
    """bool [K, 4]: which sides (ymin, xmin, ymax, xmax) of ``boxes`` (normalised to the whole
    image) lie within ``EDGE_MARGIN`` of a border of ``window`` that is inside the image."""
    x0, y0, x1, y1 = window
    px = boxes * np.array([height, width, height, width], np.float32)
    m = EDGE_MARGIN * np.array([y1 - y0, x1 - x0], np.float32)
    return np.stack([(y0 > 0) & (px[:, 0] <= y0 + m[0]), (x0 > 0) & (px[:, 1] <= x0 + m[1]),
                     (y1 < height) & (px[:, 2] >= y1 - m[0]),
                     (x1 < width) & (px[:, 3] >= x1 - m[1])], axis=1)


def _meeting(wins: np.ndarray, a: int) -> np.ndarray:
    """bool [W]: the windows (normalised ``[ymin, xmin, ymax, xmax]``) that share an area with
    window ``a`` (``a`` included)."""
    w = wins[a]
    return (wins[:, 0] < w[2]) & (wins[:, 2] > w[0]) & (wins[:, 1] < w[3]) & (wins[:, 3] > w[1])


def _near(rows, src, boxes, classes, at_box, at_win, wins) -> np.ndarray:
    """int [P, 2]: pairs (r, c), r in ``rows``, c != r a box listed (``at_box[k]`` in window
    ``at_win[k]``) in a window that meets r's window ``src[r]``, of r's class, the two boxes
    sharing an area (an interval test that only picks candidates). Linear in the windows."""
    out, order = [], np.argsort(at_win, kind="stable")
    at_box, at_win = at_box[order], at_win[order]
    first = np.searchsorted(at_win, np.arange(len(wins) + 1))  # window w: at_box[first[w]:...]
    dupes = len(np.unique(at_box)) < len(at_box)
    for a in np.unique(src[rows]):
        here = rows[src[rows] == a]
        c = np.concatenate([at_box[first[b]:first[b + 1]]
                            for b in np.flatnonzero(_meeting(wins, a))])
        c = np.unique(c) if dupes else c
        lo, hi = boxes[here, :2].min(0), boxes[here, 2:].max(0)  # around the rows' boxes
        c = c[np.all((boxes[c, :2] < hi) & (boxes[c, 2:] > lo), axis=1)]
        for k in np.unique(classes[here]):
            r, ck = here[classes[here] == k], c[classes[c] == k]
            i, j = np.repeat(r, len(ck)), np.tile(ck, len(r))
            bi, bj = boxes[i], boxes[j]
            ok = ((i != j) & (bi[:, 0] < bj[:, 2]) & (bj[:, 0] < bi[:, 2])
                  & (bi[:, 1] < bj[:, 3]) & (bj[:, 1] < bi[:, 3]))
            out.append(np.stack([i[ok], j[ok]], 1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def _paired(op, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float [P]: Model Garden ``op`` (``box_ops.bbox_overlap``: IoU, or
    ``bbox_intersection_over_area``: of ``a[p]``'s area) of ``a[p]`` and ``b[p]``, the pairs
    as the batch: [P, 1, 4] × [P, 1, 4] → [P, 1, 1], 1M pairs per call."""
    chunk = 1 << 20
    return np.concatenate([op(a[k:k + chunk, None], b[k:k + chunk, None]).numpy().reshape(-1)
                           for k in range(0, len(a), chunk)] or [np.zeros(0, np.float32)])


def _fragment_pairs(boxes, classes, cut, src, wins, iou_threshold: float) -> np.ndarray:
    """int [P, 2]: pairs (i, j) of same-class boxes of different windows that meet, box i cut,
    whose boxes clipped to the two windows' common region have IoU >= ``iou_threshold``."""
    from official.vision.ops import box_ops

    n = np.arange(len(boxes))
    pairs = _near(n[cut.any(1)], src, boxes, classes, n, src, wins)
    pairs = pairs[src[pairs[:, 0]] != src[pairs[:, 1]]]
    wi, wj = wins[src[pairs[:, 0]]], wins[src[pairs[:, 1]]]
    common = np.concatenate([np.maximum(wi[:, :2], wj[:, :2]),  # [ymin, xmin, ymax, xmax]
                             np.minimum(wi[:, 2:], wj[:, 2:])], 1)

    def clip(b):
        return np.clip(b, common[:, [0, 1, 0, 1]], common[:, [2, 3, 2, 3]])

    iou = _paired(box_ops.bbox_overlap, clip(boxes[pairs[:, 0]]), clip(boxes[pairs[:, 1]]))
    return pairs[iou >= iou_threshold]


def _join(boxes, scores, cut, pairs) -> tuple:
    """Fragments joined along ``pairs`` (module doc, step 1).

    Cut boxes linked to each other form groups (transitively); a group also takes the best
    whole (uncut) box linked to one of its boxes, never two whole boxes through it (they may be
    two objects that a fragment touches). Returns (boxes with each group's box in its best
    member's row, cut sides (those no member has whole), bool [K] rows left, {row: members})."""
    parent = np.arange(len(boxes))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    cut_any = cut.any(1)
    for i, j in pairs[cut_any[pairs[:, 1]]].tolist():
        parent[root(i)] = root(j)
    anchor: dict[int, int] = {}
    for i, j in pairs[~cut_any[pairs[:, 1]]].tolist():
        r = root(i)
        if r not in anchor or (scores[j], -j) > (scores[anchor[r]], -anchor[r]):
            anchor[r] = j
    groups: dict[int, list[int]] = {}
    for i in np.unique(pairs[:, 0]).tolist():
        r = root(i)
        groups.setdefault(anchor.get(r, r), []).append(i)
    out, out_cut, keep, members = boxes.copy(), cut.copy(), np.ones(len(boxes), bool), {}
    for key, group in groups.items():
        m = np.array(sorted(set(group) | {key}, key=lambda i: (-scores[i], cut_any[i], i)))
        if len(m) < 2:
            continue
        k = m[0]
        for side in range(4):
            sure = m[~cut[m, side]]
            out[k, side] = (boxes[sure[0], side] if len(sure) else
                            boxes[m, side].min() if side < 2 else boxes[m, side].max())
            out_cut[k, side] = not len(sure)
        keep[m[1:]] = False
        members[int(k)] = m
    return out, out_cut, keep, members


def _inside_larger(boxes, classes, src, cut, keep, members, wins, threshold: float):
    """bool [K]: ``keep`` boxes still ``cut`` (on some side, after joining) of which at least
    ``threshold`` of the area lies inside a larger same-class ``keep`` box of another window
    (Model Garden ``bbox_intersection_over_area``): a piece of that object, not an object."""
    from official.vision.ops import box_ops

    kept = np.flatnonzero(keep)
    extra = [(k, src[i]) for k, m in members.items() for i in m]  # a joined box: its windows
    at = np.array([*zip(kept, src[kept]), *extra], np.int64).reshape(-1, 2)
    pairs = _near(np.flatnonzero(keep & cut.any(1)), src, boxes, classes, at[:, 0], at[:, 1],
                  wins)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    i, j = pairs[:, 0], pairs[:, 1]
    pairs = pairs[(src[i] != src[j]) & (area[j] > area[i])]
    ioa = _paired(box_ops.bbox_intersection_over_area, boxes[pairs[:, 0]], boxes[pairs[:, 1]])
    drop = np.zeros(len(boxes), bool)
    drop[pairs[ioa >= threshold, 0]] = True
    return drop


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *,
        iou_threshold: float = 0.5, max_detections: int = 300) -> np.ndarray:
    """int64 [M]: indices of the boxes (float [K, 4] any consistent yxyx) kept by per-class NMS
    (``tf.image.non_max_suppression`` per class id), best score first, at most
    ``max_detections``. Scores of any value (0 included) are kept as they are."""
    import tensorflow as tf

    kept = [idx[tf.image.non_max_suppression(boxes[idx], scores[idx], max_detections,
                                              iou_threshold).numpy()]
            for idx in (np.flatnonzero(classes == c) for c in np.unique(classes))]
    kept = np.concatenate(kept) if kept else np.zeros(0, np.int64)
    return kept[np.argsort(-scores[kept], kind="stable")][:max_detections]


def _check_merge(iou_threshold, max_detections) -> None:
    if (isinstance(max_detections, bool) or not isinstance(max_detections, numbers.Integral)
            or max_detections < 1 or not 0.0 < iou_threshold <= 1.0):
        raise OdError(f"tiling: iou_threshold {iou_threshold!r} must be in (0, 1] and "
                      f"max_detections {max_detections!r} a whole number >= 1.")


def merge(parts: list[Detections], width: int, height: int, *, iou_threshold: float = 0.5,
          max_detections: int = 300, windows: list[tuple] | None = None) -> Detections:
    """Detections of several windows of one ``width`` × ``height`` image merged into one.

    Args:
      parts: Detections whose boxes (float [K, 4], ``[ymin, xmin, ymax, xmax]``) are already
        normalised to the whole image.
      windows: the pixel window ``(x0, y0, x1, y1)`` each part was detected on (``windows()``;
        the whole image ``(0, 0, width, height)``); with it, fragments of objects cut by a
        window border are joined first (module doc, step 1). None: plain per-class NMS.
      iou_threshold: IoU of two same-class boxes (of fragments: on the region both windows saw)
        above which they are one object.
    Returns:
      Detections normalised to the image, sorted by score (descending), at most
      ``max_detections``; scores are the detectors' own (the best of a joined group).
    Raises:
      OdError: ``iou_threshold`` outside (0, 1] or ``max_detections`` < 1.
    """
    _check_merge(iou_threshold, max_detections)
    boxes = np.concatenate([np.zeros((0, 4)), *(p.boxes.reshape(-1, 4) for p in parts)])
    boxes = boxes.astype(np.float32)
    scores = np.concatenate([np.zeros(0), *(p.scores for p in parts)]).astype(np.float32)
    classes = np.concatenate([np.zeros(0), *(p.class_ids for p in parts)]).astype(np.int32)
    if windows is not None and len(scores):
        if len(windows) != len(parts):
            raise ValueError(f"merge: {len(parts)} parts but {len(windows)} windows")
        src = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        cut = np.concatenate([_cut_sides(p.boxes.reshape(-1, 4), w, width, height)
                              for p, w in zip(parts, windows)])
        wins = (np.asarray(windows, np.float32)[:, [1, 0, 3, 2]]
                / np.array([height, width, height, width], np.float32))
        pairs = _fragment_pairs(boxes, classes, cut, src, wins, iou_threshold)
        boxes, cut, keep, members = _join(boxes, scores, cut, pairs)
        keep &= ~_inside_larger(boxes, classes, src, cut, keep, members, wins, iou_threshold)
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    keep = nms(boxes, scores, classes, iou_threshold=iou_threshold,
               max_detections=max_detections)
    return Detections.make(boxes[keep], scores[keep], classes[keep], width, height)


def detect_tiled(detector, image: np.ndarray, tile: int, overlap: float = 0.2, *,
                 iou_threshold: float = 0.5, max_detections: int = 300) -> Detections:
    """Detect on the whole image and on overlapping tiles, merged (module doc).

    Args:
      detector: callable uint8 RGB [h, w, 3] → Detections normalised to that array
        (``od.detect.Detector``, ``od.model.Predictor``, ``od.tflite.TFLiteModel``,
        ``od.eval_inputs.FrozenGraphModel``).
      image: uint8 RGB [H, W, 3].
      tile: tile side in pixels of ``image`` (``windows``); overlap: fraction of a tile shared by
        neighbours. An image no larger than one tile in both sides is detected once, exactly as
        without tiles (then only ``max_detections`` applies).
      iou_threshold, max_detections: see ``merge``.
    Returns:
      Detections normalised to ``image`` (boxes ``[ymin, xmin, ymax, xmax]`` float32, [0, 1] of
      its height and width), sorted by score, scores as the detector gave them. The detector
      runs 1 + ``len(windows(...))`` times, once per window.
    Raises:
      OdError: bad ``tile``/``overlap``/``iou_threshold``/``max_detections``, or too many tiles
        (see ``windows``).
    """
    h, w = image.shape[:2]
    tiles = windows(w, h, tile, overlap)
    if len(tiles) == 1:
        _check_merge(iou_threshold, max_detections)
        d = detector(image)
        n = max_detections
        return Detections(d.boxes[:n], d.scores[:n], d.class_ids[:n], d.width, d.height)
    parts = [detector(image)]
    for x0, y0, x1, y1 in tiles:
        d = detector(np.ascontiguousarray(image[y0:y1, x0:x1]))
        scale = np.array([(y1 - y0) / h, (x1 - x0) / w] * 2, np.float32)
        shift = np.array([y0 / h, x0 / w] * 2, np.float32)
        parts.append(Detections.make(d.boxes * scale + shift, d.scores, d.class_ids, w, h))
    return merge(parts, w, h, iou_threshold=iou_threshold, max_detections=max_detections,
                 windows=[(0, 0, w, h), *tiles])
