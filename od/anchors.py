"""Anchor coverage (best possible recall) and the anchor fit, before any training step.

RetinaNet learns a box through the anchors Model Garden's ``AnchorLabeler`` marks positive: those
whose IoU with the box reaches the parser's ``match_threshold`` (0.5). A box whose best IoU stays
below gets only its single best anchor force-matched, a weak target, so boxes far below the
anchors' sizes (or off their aspect ratios) are mostly never learned. **Coverage** is the share of
training boxes, after the input resize, whose best IoU with any anchor reaches the threshold.

- Anchors: those of ``official.vision.ops.anchor.Anchor`` (the generator training uses) for the
  config's ``min_level``, ``max_level``, ``num_scales``, ``aspect_ratios``, ``anchor_size``,
  input size; IoU: ``official.vision.ops.iou_similarity.IouSimilarity``'s arithmetic (float32).
- Boxes: normalised ``[ymin, xmin, ymax, xmax]`` placed in the input image as Model Garden's
  RetinaNet parser does at scale 1 (``preprocess_ops.resize_and_crop_image``: aspect-preserving
  resize to fit ``input_size``, rounded, padded bottom/right).
- Best IoU per box, exactly, in O(boxes x anchor shapes): for one anchor shape the intersection
  is largest at the grid centre nearest the box centre (per axis), so only that anchor counts
  (``best_iou``; ``best_iou_tf`` runs Model Garden's ops on all anchors, and the tests check the
  two agree). 200,000 boxes take well under a second; memory O(boxes).
- Boxes of zero width or height are left out, as the parser drops them before matching.

The fit (``model.anchor_fit: auto``, ``od.anchor_fit``; its names are also reachable here) keeps
the config when coverage reaches ``TARGET``; else it searches what costs no compute first: aspect
ratios (1-D k-means on log(w/h), as Ultralytics' autoanchor clusters box shapes) and
``anchor_size``, then one more ``num_scales``, then, with ``model.input_size: auto``, larger
inputs up to ``train.max_input_size``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace  # noqa: F401 (replace: od.data.inspect uses it)
from pathlib import Path

import numpy as np

from od.errors import ConfigError

TARGET = 0.98          # coverage the fit aims at (Ultralytics' autoanchor uses 0.98 too)
MIN_RECALL = 0.5       # below this the fit refuses to train (anchor_fit auto)
AUTO_MIN_INPUT = 256   # px; input_size auto never goes below the measured recipe's size


class AnchorFitError(ConfigError):
    """No boxes to fit, or no reachable anchor setting matches enough of them."""


@dataclass(frozen=True)
class BoxSet:
    """Boxes of a dataset with what is needed to place them in any input size.

    Attributes:
      boxes: float64 [N, 4] ``[ymin, xmin, ymax, xmax]`` normalised to the image.
      image_hw: int [N, 2] height, width in pixels of each box's image.
      labels: class name of each box.
      names: ``image file name`` of each box (for messages).
      most_in_image: the most boxes (of positive area) in one image of the dataset, and
        ``most_image``, that image's file name (``od train`` sizes ``model.max_detections`` by it).
    """

    boxes: np.ndarray
    image_hw: np.ndarray
    labels: tuple
    names: tuple
    most_in_image: int = 0
    most_image: str = ""

    @classmethod
    def from_records(cls, records, where: str = "dataset") -> "BoxSet":
        """From ``ImageAnnotation`` records. Raises AnchorFitError when there is no box."""
        # zero width or height: the parser drops them before matching
        kept = [[b for b in r.boxes if b.yxyx[2] > b.yxyx[0] and b.yxyx[3] > b.yxyx[1]]
                for r in records]
        rows = [(b.yxyx, (r.height, r.width), b.label, Path(r.image_path).name)
                for r, boxes in zip(records, kept) for b in boxes]
        if not rows:
            n_all = sum(len(r.boxes) for r in records)
            empty = f", {n_all} of zero width or height" if n_all else ""
            raise AnchorFitError(f"{where}: the training data has no boxes ({len(records)} "
                                 f"images{empty}), so there is nothing to detect or fit anchors "
                                 "to, whatever model.anchor_fit says. Convert annotations "
                                 "that contain boxes (od data inspect shows the counts).")
        b, hw, lab, nm = zip(*rows)
        k = max(range(len(records)), key=lambda i: len(kept[i]))  # the most crowded (first)
        most, most_image = len(kept[k]), str(records[k].image_path)
        return cls(np.asarray(b, np.float64), np.asarray(hw, np.int64), lab, nm, most, most_image)

    @classmethod
    def from_tfrecords(cls, pattern: str) -> "BoxSet":
        """The boxes of the TFRecord shards matching ``pattern`` (OdError naming bad files)."""
        from od.data.tfrecord import read_annotations
        return cls.from_records(read_annotations(pattern).records, pattern)

    def sample(self, n: int, seed: int = 0) -> "BoxSet":
        """``n`` boxes drawn at random (``self`` when it has at most ``n``); the same for the
        same boxes in any order (drawn from the boxes sorted by geometry)."""
        if len(self.labels) <= n:
            return self
        order = np.lexsort(np.concatenate([self.boxes, self.image_hw], axis=1).T[::-1])
        k = np.sort(order[np.random.default_rng(seed).choice(len(self.labels), n, replace=False)])
        return BoxSet(self.boxes[k], self.image_hw[k], tuple(self.labels[i] for i in k),
                      tuple(self.names[i] for i in k), self.most_in_image, self.most_image)

    def pixels(self, input_size: int) -> np.ndarray:
        """float64 [N, 4] pixel ``[ymin, xmin, ymax, xmax]`` in the ``input_size`` square input."""
        hw = self.image_hw.astype(np.float64)
        scale = np.minimum(input_size / hw[:, 0], input_size / hw[:, 1])
        scaled = np.round(hw * scale[:, None])  # resize_and_crop_image rounds the scaled size
        return self.boxes * np.concatenate([scaled, scaled], axis=1)

    def hw_pixels(self, input_size: int) -> np.ndarray:
        """float64 [N, 2] box height, width in pixels at ``input_size``."""
        p = self.pixels(input_size)
        return np.stack([p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]], axis=1)


@dataclass(frozen=True)
class Anchors:
    """The anchor fields of a model config (see ``od.config.ModelConfig``)."""

    input_size: int
    min_level: int
    max_level: int
    num_scales: int
    aspect_ratios: tuple
    anchor_size: float

    @classmethod
    def of(cls, m) -> "Anchors":
        return cls(m.input_size, m.min_level, m.max_level, m.num_scales,
                   tuple(float(a) for a in m.aspect_ratios), float(m.anchor_size))

    def boxes(self):
        """tf.float32 [A, 4] pixel ``[ymin, xmin, ymax, xmax]`` from Model Garden's ``Anchor``."""
        import tensorflow as tf
        from official.vision.ops.anchor import Anchor

        a = Anchor(self.min_level, self.max_level, self.num_scales, list(self.aspect_ratios),
                   self.anchor_size, [self.input_size, self.input_size])
        return tf.concat([tf.reshape(b, [-1, 4]) for b in a.multilevel_boxes.values()], axis=0)

    def sizes(self) -> list[float]:
        """Anchor sides in pixels (square-equivalent), smallest first."""
        return sorted(self.anchor_size * 2 ** lv * 2 ** (s / self.num_scales)
                      for lv in range(self.min_level, self.max_level + 1)
                      for s in range(self.num_scales))

    def overrides(self) -> str:
        return (f"model.input_size={self.input_size} model.anchor_size={self.anchor_size:g} "
                f"model.num_scales={self.num_scales} "
                f"model.aspect_ratios={','.join(f'{a:g}' for a in self.aspect_ratios)}")


def best_iou(boxes: BoxSet, anchors: Anchors) -> np.ndarray:
    """float32 [N]: each box's best IoU with any anchor of ``anchors``.

    Exactly Model Garden's ``Anchor`` grid (centres ``stride/2 + k*stride``, sides
    ``anchor_size * 2**level * 2**(scale/num_scales)`` times ``sqrt(aspect)`` across and over
    ``sqrt(aspect)`` down) and ``IouSimilarity`` arithmetic (float32), evaluated only at the
    grid centre nearest each box centre per level: the overlap along an axis shrinks as the
    centres part, so for one anchor shape that centre has the largest IoU."""
    f32 = np.float32
    size = anchors.input_size
    px = boxes.pixels(size).astype(f32)
    y0, x0, y1, x1 = (px[:, i:i + 1] for i in range(4))  # [N, 1]: against [N, shapes] below
    area = (y1 - y0) * (x1 - x0)
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    best = np.zeros(len(px), f32)
    for level in range(anchors.min_level, anchors.max_level + 1):
        feat = math.ceil(size / 2 ** level)
        stride = f32(size / feat)
        ay = stride / 2 + np.clip(np.floor(cy / stride), 0, feat - 1).astype(f32) * stride
        ax = stride / 2 + np.clip(np.floor(cx / stride), 0, feat - 1).astype(f32) * stride
        sides = [anchors.anchor_size * 2 ** level * 2 ** (scale / anchors.num_scales)
                 for scale in range(anchors.num_scales)]
        hx = np.array([s * a ** 0.5 / 2 for s in sides for a in anchors.aspect_ratios], f32)
        hy = np.array([s * a ** -0.5 / 2 for s in sides for a in anchors.aspect_ratios], f32)
        a0, a1, b0, b1 = ay - hy, ay + hy, ax - hx, ax + hx  # [N, shapes]
        inter = (np.maximum(f32(0), np.minimum(y1, a1) - np.maximum(y0, a0))
                 * np.maximum(f32(0), np.minimum(x1, b1) - np.maximum(x0, b0)))
        union = area + (a1 - a0) * (b1 - b0) - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(inter == 0, f32(0), inter / union)
        np.maximum(best, iou.max(axis=1), out=best)
    return best


def best_iou_tf(boxes: BoxSet, anchors: Anchors, chunk: int = 256) -> np.ndarray:
    """``best_iou`` the slow way, with Model Garden's ops on every anchor (the reference the
    tests check ``best_iou`` against)."""
    from official.vision.ops.iou_similarity import IouSimilarity
    import tensorflow as tf

    a, sim = anchors.boxes(), IouSimilarity()
    px = boxes.pixels(anchors.input_size).astype(np.float32)
    out = [tf.reduce_max(sim(a, tf.constant(px[i:i + chunk])), axis=0).numpy()
           for i in range(0, len(px), chunk)]
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


@dataclass(frozen=True)
class Coverage:
    """Best possible recall of ``anchors`` on a box set.

    Attributes:
      recall: share of boxes whose best anchor IoU >= ``threshold``, in [0, 1].
      per_class: class name → recall.
      threshold: the matcher's ``match_threshold``.
      anchors: the anchors measured; boxes: how many boxes.
      best: float32 [N] best IoU per box.
    """

    recall: float
    per_class: dict
    threshold: float
    anchors: Anchors
    boxes: int
    best: np.ndarray

    def line(self) -> str:
        worst = sorted(self.per_class.items(), key=lambda kv: kv[1])[:3]
        low = ", ".join(f"{c} {r:.2f}" for c, r in worst if r < TARGET)
        a = self.anchors
        return (f"anchor coverage {self.recall:.3f} of {self.boxes} boxes at IoU >= "
                f"{self.threshold:g} (input {a.input_size} px, anchor_size {a.anchor_size:g}, "
                f"num_scales {a.num_scales}, aspect_ratios {list(a.aspect_ratios)})"
                + (f"; lowest: {low}" if low else ""))

    def to_json(self) -> dict:
        a = self.anchors
        return {"recall": round(self.recall, 4), "threshold": self.threshold,
                "boxes": self.boxes, "per_class": {k: round(v, 4) for k, v in
                                                   sorted(self.per_class.items())},
                "input_size": a.input_size, "anchor_size": a.anchor_size,
                "num_scales": a.num_scales, "aspect_ratios": list(a.aspect_ratios),
                "anchor_sizes_px": [round(s, 1) for s in a.sizes()]}


def coverage(boxes: BoxSet, anchors: Anchors, threshold: float = 0.5) -> Coverage:
    """Coverage of ``anchors`` on ``boxes`` (see the module doc)."""
    best = best_iou(boxes, anchors)
    ok = best >= threshold
    labels = np.asarray(boxes.labels)
    per = {c: float(ok[labels == c].mean()) for c in sorted(set(boxes.labels))}
    return Coverage(float(ok.mean()), per, threshold, anchors, len(best), best)


def match_threshold(cfg) -> float:
    """The matcher's positive IoU threshold of the RetinaNet parser ``cfg`` trains with: od's
    pipeline config leaves Model Garden's parser default (``retinanet.Parser.match_threshold``,
    0.5), so it is read from there without building the whole experiment."""
    from official.vision.configs import retinanet as rn
    return float(rn.Parser().match_threshold)


_FIT_NAMES = ("kmeans_aspects", "Fit", "search", "fit", "suggestion", "apply",
              "prepare_training", "fit_max_detections")


def __getattr__(name):  # the fit lives in od.anchor_fit; anchors.fit & co. keep working
    if name in _FIT_NAMES:
        from od import anchor_fit
        return getattr(anchor_fit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
