"""Slicing-aided detection: small objects in photos far larger than the model input.

A detector resizes the whole photo to its input size, so a 30 px object of a 4000 px photo shrinks
to 2 px at a 256 px input and cannot be found. ``detect_tiled`` runs the detector on the whole
image and on overlapping ``tile`` × ``tile`` pixel windows of it (each resized to the model's input
by the detector as usual), maps every box back to the whole image, and merges the lot with
TensorFlow's per-class non-maximum suppression (``tf.image.combined_non_max_suppression``, the
op behind Model Garden's ``batched`` NMS), as SAHI's slicing-aided hyper inference does.
"""
from __future__ import annotations

import numpy as np

from od.detections import Detections
from od.errors import OdError


def windows(width: int, height: int, tile: int, overlap: float = 0.2) -> list[tuple]:
    """Tile windows ``(x0, y0, x1, y1)`` in pixels covering a ``width`` × ``height`` image.

    Windows are ``tile`` px (clipped to the image), consecutive ones overlap by at least
    ``overlap`` of a tile, the last ones are flush with the right/bottom edge.
    Raises:
      OdError: ``tile`` < 32 px or ``overlap`` outside [0, 0.9].
    """
    if tile < 32:
        raise OdError(f"--tile {tile}: a tile must be at least 32 px (e.g. the model's input "
                      "size, 256 or 512).")
    if not 0.0 <= overlap <= 0.9:
        raise OdError(f"--tile-overlap {overlap}: must be in [0, 0.9] (default 0.2).")

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        step = max(1, int(tile * (1 - overlap)))
        s = list(range(0, n - tile, step))
        return s + [n - tile]

    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in starts(height) for x in starts(width)]


def merge(parts: list[Detections], width: int, height: int, *, iou_threshold: float = 0.5,
          max_detections: int = 300) -> Detections:
    """Per-class NMS over detections already normalised to the whole ``width`` × ``height``
    image (``tf.image.combined_non_max_suppression``); sorted by score."""
    import tensorflow as tf

    boxes = np.concatenate([p.boxes for p in parts]).astype(np.float32).reshape(-1, 4)
    scores = np.concatenate([p.scores for p in parts]).astype(np.float32)
    classes = np.concatenate([p.class_ids for p in parts]).astype(np.int32)
    if len(scores) == 0:
        return Detections.make(boxes, scores, classes, width, height)
    ids = np.unique(classes)
    table = np.zeros((len(scores), len(ids)), np.float32)
    table[np.arange(len(scores)), np.searchsorted(ids, classes)] = scores
    out = tf.image.combined_non_max_suppression(
        boxes[None, :, None, :], table[None], max_output_size_per_class=max_detections,
        max_total_size=max_detections, iou_threshold=iou_threshold,
        score_threshold=float(max(scores.min(), 1e-6)) * 0.999, clip_boxes=False)
    n = int(out.valid_detections[0])
    return Detections.make(out.nmsed_boxes[0, :n].numpy(), out.nmsed_scores[0, :n].numpy(),
                           ids[out.nmsed_classes[0, :n].numpy().astype(np.int64)], width, height)


def detect_tiled(detector, image: np.ndarray, tile: int, overlap: float = 0.2, *,
                 iou_threshold: float = 0.5, max_detections: int = 300) -> Detections:
    """Detect on the whole image and on overlapping tiles, merged (module doc).

    Args:
      detector: callable uint8 RGB [h, w, 3] → Detections normalised to that array
        (``od.detect.Detector``).
      image: uint8 RGB [H, W, 3].
      tile: tile side in pixels of ``image``; overlap: fraction of a tile shared by neighbours.
    Returns:
      Detections normalised to ``image`` (boxes ``[ymin, xmin, ymax, xmax]``), sorted by score.
    Raises:
      OdError: bad ``tile``/``overlap`` (see ``windows``).
    """
    h, w = image.shape[:2]
    boxes = windows(w, h, tile, overlap)
    parts = [detector(image)]
    if len(boxes) > 1:
        for x0, y0, x1, y1 in boxes:
            d = detector(np.ascontiguousarray(image[y0:y1, x0:x1]))
            scale = np.array([(y1 - y0) / h, (x1 - x0) / w] * 2, np.float32)
            shift = np.array([y0 / h, x0 / w] * 2, np.float32)
            parts.append(Detections.make(d.boxes * scale + shift, d.scores, d.class_ids, w, h))
    return merge(parts, w, h, iou_threshold=iou_threshold, max_detections=max_detections)
