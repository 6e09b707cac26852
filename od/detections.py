"""Per-image detections and ground truth as arrays, the currency between detect, evaluate and
visualize.

Boxes are float32 ``[K, 4]``, ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1] by the image's
height and width; class ids are label-map ids (>= 1).
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
