"""Per-image detections and ground truth as arrays, the currency between detect, evaluate and
visualize.

Boxes are float32 ``[K, 4]``, ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1] by the image's
height and width; class ids are label-map ids (>= 1). ``pad_aspect``/``unpad`` let a detector take
a strip far longer than wide (a 3x5000 scan) by padding it first and mapping the boxes back.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _boxes(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).reshape(-1, 4)


@dataclass(frozen=True)
class Detections:
    """Detections for one image.

    Attributes:
      boxes: float32 [K, 4], ymin/xmin/ymax/xmax normalised to [0, 1].
      scores: float32 [K], in [0, 1], sorted descending by the producer.
      class_ids: int32 [K], label-map ids.
      width, height: size in pixels of the image the boxes refer to (0 if unknown).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    width: int = 0
    height: int = 0

    @classmethod
    def make(cls, boxes, scores, class_ids, width: int = 0, height: int = 0) -> "Detections":
        return cls(_boxes(boxes), np.asarray(scores, np.float32).reshape(-1),
                   np.asarray(class_ids, np.int32).reshape(-1), int(width), int(height))

    @classmethod
    def empty(cls) -> "Detections":
        """No detections (an image the model found nothing in)."""
        return cls.make(np.zeros((0, 4)), [], [])

    @classmethod
    def from_outputs(cls, outputs, width: int, height: int) -> "Detections":
        """The first image of a Model Garden detection output dict (``detection_boxes``
        [N, K, 4] yxyx normalised, ``detection_scores`` [N, K], ``detection_classes`` [N, K],
        ``num_detections`` [N]; tensors or arrays), its ``num_detections`` valid rows."""
        n = int(np.asarray(outputs["num_detections"])[0])
        return cls.make(np.asarray(outputs["detection_boxes"])[0, :n],
                        np.asarray(outputs["detection_scores"])[0, :n],
                        np.asarray(outputs["detection_classes"])[0, :n], width, height)

    def above(self, min_score: float) -> "Detections":
        """Only the detections with ``score >= min_score``."""
        keep = self.scores >= min_score
        return Detections(self.boxes[keep], self.scores[keep], self.class_ids[keep],
                          self.width, self.height)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


@dataclass(frozen=True)
class GroundTruth:
    """Labelled boxes of one image.

    Attributes:
      image_id: integer id, unique in the evaluated set.
      width, height: original image size in pixels (metrics are computed in these pixels).
      boxes: float32 [N, 4], ymin/xmin/ymax/xmax normalised to [0, 1].
      class_ids: int32 [N], label-map ids.
      is_crowd: bool [N] (COCO ``iscrowd``); ignored-region boxes.
      name: file name, for reports.
    """

    image_id: int
    width: int
    height: int
    boxes: np.ndarray
    class_ids: np.ndarray
    is_crowd: np.ndarray | None = None
    name: str = ""

    @classmethod
    def make(cls, image_id, width, height, boxes, class_ids, is_crowd=None, name="") -> "GroundTruth":
        b = _boxes(boxes)
        crowd = (np.zeros(len(b), bool) if is_crowd is None
                 else np.asarray(is_crowd, bool).reshape(-1))
        return cls(int(image_id), int(width), int(height), b,
                   np.asarray(class_ids, np.int32).reshape(-1), crowd, name)


def _with_area(boxes: np.ndarray) -> np.ndarray:
    """bool [K]: the ``boxes`` (float [K, 4] yxyx) with positive area (not clipped flat to an
    image edge)."""
    return (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])


def _partner(iou: np.ndarray, same: np.ndarray) -> tuple[int, float]:
    """(index, IoU) of the same-class detection of highest IoU; (-1, 0.0) if there is none."""
    cand = np.where(same, iou, -1.0)
    k = int(cand.argmax()) if cand.size else -1
    return (k, float(cand[k])) if k >= 0 and cand[k] >= 0 else (-1, 0.0)


def compare(reference: Detections, candidate: Detections, *, max_score_diff: float,
            min_iou: float = 0.0, max_box_diff: float | None = None, min_score: float = 0.0,
            top_k: int | None = None, nms_iou: float | None = None) -> dict:
    """Whether two models' detections of one image agree (an exported model vs its checkpoint).

    The detections checked are, on each side, the first ``top_k`` (all if None; detections are
    sorted by score) with score >= ``min_score``. Each is paired with the same-class detection of
    the other side (any score) of highest IoU (Model Garden ``box_ops.bbox_overlap``); without a
    partner its IoU is 0, its score difference its whole score and its box difference 1. Boxes of
    zero area (wholly outside the image, clipped to its edge) are left out on both sides.

    With ``nms_iou`` (a class-agnostic NMS threshold, as TFLite's fast NMS), a reference detection
    whose partner has IoU < ``min_iou`` but that overlaps (IoU > ``nms_iou``) a candidate detection
    of another class scoring at least as high (less ``max_score_diff``) was removed by that NMS: it
    is counted in ``suppressed_by_class_agnostic_nms`` and not compared.

    Args:
      reference, candidate: Detections of the same image (boxes yxyx normalised to [0, 1]).
      max_score_diff: largest allowed score difference of a pair.
      min_iou: smallest allowed IoU of a pair.
      max_box_diff: largest allowed coordinate difference of a pair (normalised); None: no check.
    Returns:
      dict: ``num_above_min_score`` [reference, candidate], ``suppressed_by_class_agnostic_nms``,
      ``max_score_diff``, ``min_matched_iou`` (1.0 when nothing was compared), ``max_box_diff``,
      ``tolerance`` (the three limits) and ``ok`` (every pair within them).
    """
    from official.vision.ops import box_ops

    ra, ca = _with_area(reference.boxes), _with_area(candidate.boxes)
    ref = Detections(reference.boxes[ra], reference.scores[ra], reference.class_ids[ra])
    got = Detections(candidate.boxes[ca], candidate.scores[ca], candidate.class_ids[ca])
    rank_r, rank_c = np.flatnonzero(ra), np.flatnonzero(ca)  # index before the zero-area drop
    limit = len(reference) + len(candidate) if top_k is None else top_k
    iou = (box_ops.bbox_overlap(ref.boxes[None], got.boxes[None]).numpy()[0]
           if len(ref) and len(got) else np.zeros((len(ref), len(got)), np.float32))
    same = ref.class_ids[:, None] == got.class_ids[None]
    ious, scores, boxes, suppressed = [], [], [], 0

    def pair(i: int, j: int, v: float, own: float) -> None:
        ious.append(v)
        scores.append(abs(float(ref.scores[i] - got.scores[j])) if i >= 0 and j >= 0 else own)
        boxes.append(float(np.abs(ref.boxes[i] - got.boxes[j]).max())
                     if i >= 0 and j >= 0 else 1.0)

    for i in np.flatnonzero((ref.scores >= min_score) & (rank_r < limit)):
        j, v = _partner(iou[i], same[i])
        if (nms_iou is not None and v < min_iou
                and np.any(~same[i] & (iou[i] > nms_iou)
                           & (got.scores >= ref.scores[i] - max_score_diff))):
            suppressed += 1
            continue
        pair(i, j, v, float(ref.scores[i]))
    for j in np.flatnonzero((got.scores >= min_score) & (rank_c < limit)):
        i, v = _partner(iou[:, j], same[:, j])
        pair(i, j, v, float(got.scores[j]))
    score, iou_min, box = max(scores, default=0.0), min(ious, default=1.0), max(boxes, default=0.0)
    return {"num_above_min_score": [int((reference.scores >= min_score).sum()),
                                    int((candidate.scores >= min_score).sum())],
            "suppressed_by_class_agnostic_nms": suppressed,
            "max_score_diff": score, "min_matched_iou": iou_min, "max_box_diff": box,
            "tolerance": {"max_score_diff": max_score_diff, "min_matched_iou": min_iou,
                          "max_box_diff": max_box_diff},
            "ok": bool(score <= max_score_diff and iou_min >= min_iou
                       and (max_box_diff is None or box <= max_box_diff))}


#: a long side more than this many times the short side is padded to this ratio before the model
#: runs (``pad_aspect``): the model scales the long side to its input size, and a short side that
#: rounds to 0 px there fails (a 3x5000 strip at 256 px)
MAX_ASPECT = 32
#: colour of that padding: the ImageNet mean, i.e. 0 after the model's normalisation, as its own
#: bottom/right padding is
PAD_RGB = (124, 116, 104)


def pad_aspect(image: np.ndarray) -> np.ndarray:
    """``image`` (uint8 [H, W, 3]) padded at the bottom or right with ``PAD_RGB`` so that its long
    side is at most ``MAX_ASPECT`` times its short side; the same array when it already is."""
    h, w = image.shape[:2]
    ph, pw = max(h, -(-w // MAX_ASPECT)), max(w, -(-h // MAX_ASPECT))
    if (ph, pw) == (h, w):
        return image
    out = np.empty((ph, pw, 3), np.uint8)
    out[...] = PAD_RGB
    out[:h, :w] = image
    return out


def unpad(det: Detections, width: int, height: int) -> Detections:
    """Detections of a ``pad_aspect`` image mapped to the ``width`` x ``height`` image inside it:
    boxes rescaled and clipped, boxes wholly in the padding dropped. Also for an image that was
    not padded: a box the model put wholly in its own input padding (below or right of a
    non-square image) comes back clipped flat to the image's edge, and is dropped."""
    boxes = det.boxes
    if (det.width, det.height) != (width, height):
        scale = np.array([det.height / height, det.width / width] * 2, np.float32)
        boxes = np.clip(det.boxes * scale, 0.0, 1.0)
    keep = _with_area(boxes)
    if boxes is det.boxes and keep.all():
        return det
    return Detections(boxes[keep], det.scores[keep], det.class_ids[keep], int(width), int(height))


def detect_padded(detect, image: np.ndarray) -> Detections:
    """``detect(image)`` for any image shape, ``detect`` being a model's own per-image call
    (uint8 RGB [H, W, 3] → Detections normalised to that image) that may fail on a long strip:
    the image goes in ``pad_aspect``-ed and its boxes come back ``unpad``-ed. Every detector class
    of od (Detector, Predictor, TFLiteModel, FrozenGraphModel) calls its model through this."""
    det = detect(pad_aspect(image))
    return unpad(det, image.shape[1], image.shape[0])  # also drops boxes clipped flat
