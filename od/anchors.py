"""Anchor coverage (best possible recall) and the anchor fit, before any training step.

RetinaNet learns a box through the anchors Model Garden's ``AnchorLabeler`` marks positive: those
whose IoU with the box reaches the parser's ``match_threshold`` (0.5). A box whose best IoU stays
below gets only its single best anchor force-matched, a weak target, so boxes far below the
anchors' sizes (or off their aspect ratios) are mostly never learned. **Coverage** is the share of
training boxes, after the input resize, whose best IoU with any anchor reaches the threshold.

- Anchors: ``official.vision.ops.anchor.Anchor`` (the generator training uses) for the config's
  ``min_level``, ``max_level``, ``num_scales``, ``aspect_ratios``, ``anchor_size``, input size.
- IoU: ``official.vision.ops.iou_similarity.IouSimilarity`` (the labeler's own).
- Boxes: normalised ``[ymin, xmin, ymax, xmax]`` placed in the input image as Model Garden's
  RetinaNet parser does at scale 1 (``preprocess_ops.resize_and_crop_image``: aspect-preserving
  resize to fit ``input_size``, rounded, padded bottom/right).

The fit (``model.anchor_fit: auto``) keeps the config when coverage reaches ``TARGET``; else it
searches what costs no compute first: aspect ratios (1-D k-means on log(w/h), as Ultralytics'
autoanchor clusters box shapes) and ``anchor_size``, then one more ``num_scales``, then, with
``model.input_size: auto``, larger inputs up to ``train.max_input_size``.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from od.errors import ConfigError

TARGET = 0.98          # coverage the fit aims at (Ultralytics' autoanchor uses 0.98 too)
MIN_RECALL = 0.5       # below this the fit refuses to train (anchor_fit auto)
AUTO_MIN_INPUT = 256   # px; input_size auto never goes below the measured recipe's size
_SEARCH_BOXES = 400    # boxes sampled for the search (the final coverage uses all)
_ANCHOR_SIZES = tuple(round(2 ** (k / 6), 3) for k in range(0, 19))  # 1.0 .. 8.0 strides


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
    """

    boxes: np.ndarray
    image_hw: np.ndarray
    labels: tuple
    names: tuple

    @classmethod
    def from_records(cls, records, where: str = "dataset") -> "BoxSet":
        """From ``ImageAnnotation`` records. Raises AnchorFitError when there is no box."""
        rows = [(b.yxyx, (r.height, r.width), b.label, Path(r.image_path).name)
                for r in records for b in r.boxes]
        if not rows:
            raise AnchorFitError(f"{where}: the training data has no boxes ({len(records)} "
                                 "images), so there is nothing to detect or fit anchors to. "
                                 "Convert annotations that contain boxes (od data inspect shows "
                                 "the counts), or set model.anchor_fit=off.")
        b, hw, lab, nm = zip(*rows)
        return cls(np.asarray(b, np.float64), np.asarray(hw, np.int64), lab, nm)

    @classmethod
    def from_tfrecords(cls, pattern: str) -> "BoxSet":
        """The boxes of the TFRecord shards matching ``pattern`` (OdError naming bad files)."""
        from od.data.tfrecord import read_annotations
        return cls.from_records(read_annotations(pattern).records, pattern)

    def sample(self, n: int, seed: int = 0) -> "BoxSet":
        if len(self.labels) <= n:
            return self
        k = np.sort(np.random.default_rng(seed).choice(len(self.labels), n, replace=False))
        return BoxSet(self.boxes[k], self.image_hw[k], tuple(self.labels[i] for i in k),
                      tuple(self.names[i] for i in k))

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


@functools.lru_cache(maxsize=1)
def _max_iou_fn():
    """One traced ``tf.function``: [A, 4] anchors, [B, 4] boxes → [B] best IoU."""
    import tensorflow as tf
    from official.vision.ops.iou_similarity import IouSimilarity

    sim, spec = IouSimilarity(), tf.TensorSpec([None, 4], tf.float32)
    return tf.function(lambda a, b: tf.reduce_max(sim(a, b), axis=0), input_signature=[spec, spec])


def best_iou(boxes: BoxSet, anchors: Anchors, chunk: int = 512,
             prune_below: float = 0.0) -> np.ndarray:
    """float32 [N]: each box's best IoU with any anchor (Model Garden's IouSimilarity).

    ``prune_below`` > 0 drops anchors whose area alone keeps their IoU with every box below it
    (IoU <= smaller area / larger area): exact for counting IoU >= prune_below, faster."""
    import tensorflow as tf

    a = anchors.boxes()
    px = boxes.pixels(anchors.input_size).astype(np.float32)
    if prune_below > 0 and len(px):
        area = (px[:, 2] - px[:, 0]) * (px[:, 3] - px[:, 1])
        aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
        keep = (aa >= prune_below * float(area.min())) & (aa <= float(area.max()) / prune_below)
        a = tf.boolean_mask(a, keep)
        if int(tf.shape(a)[0]) == 0:
            return np.zeros((len(px),), np.float32)
    fn = _max_iou_fn()
    out = [fn(a, tf.constant(px[i:i + chunk])).numpy() for i in range(0, len(px), chunk)]
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


def kmeans_aspects(boxes: BoxSet, k: int, seed: int = 0) -> tuple:
    """``k`` anchor aspect ratios (width/height) from k-means on the boxes' log aspect ratio
    (scipy's ``kmeans``, as Ultralytics' autoanchor), rounded to 2 decimals, sorted."""
    from scipy.cluster.vq import kmeans

    hw = boxes.hw_pixels(1000)
    good = (hw[:, 0] > 0) & (hw[:, 1] > 0)
    logs = np.log(hw[good, 1] / hw[good, 0]).reshape(-1, 1)
    if len(logs) == 0:
        return (1.0,)
    k = max(1, min(k, len(np.unique(np.round(logs, 2)))))
    centres, _ = kmeans(logs, k, seed=seed)
    return tuple(sorted({round(float(np.exp(c)), 2) for c in centres.ravel()}))


@dataclass(frozen=True)
class Fit:
    """What the fit chose: the anchors, the coverage before/after, and if the target was met."""

    before: Coverage
    after: Coverage
    reached: bool

    def changed(self) -> dict:
        b, a = self.before.anchors, self.after.anchors
        return {k: (getattr(b, k), getattr(a, k)) for k in
                ("input_size", "anchor_size", "num_scales", "aspect_ratios")
                if getattr(b, k) != getattr(a, k)}

    def message(self) -> str:
        ch = self.changed()
        if not ch:
            return f"anchor fit kept the config: {self.after.line()}"
        parts = ", ".join(f"{k} {o!r} → {n!r}" for k, (o, n) in ch.items())
        return (f"anchor fit: {parts}; coverage {self.before.recall:.3f} → "
                f"{self.after.recall:.3f}")


def _input_sizes(cfg, base: Anchors, auto_input: bool) -> list[int]:
    if not auto_input:
        return [base.input_size]
    step = 2 ** base.max_level
    top = cfg.train.max_input_size
    lo = max(step, math.ceil(AUTO_MIN_INPUT / step) * step)
    sizes = list(range(lo, top + 1, step))
    return sizes or [max(step, top // step * step)]


def search(boxes: BoxSet, cfg, *, fit_anchors: bool, auto_input: bool, threshold: float,
           sizes: list | None = None, grid: tuple = _ANCHOR_SIZES) -> tuple[Anchors, float]:
    """The anchors (and input size, from ``sizes`` or ``_input_sizes``) that reach ``TARGET``
    coverage at the least cost, else the best found; returns (anchors, sample coverage)."""
    base = Anchors.of(cfg.model)
    sample = boxes.sample(_SEARCH_BOXES)
    aspect_sets = [base.aspect_ratios]
    if fit_anchors:
        km = kmeans_aspects(boxes, max(3, len(base.aspect_ratios)))
        if km != base.aspect_ratios:
            aspect_sets.append(km)
    best, best_cov = None, -1.0
    for size in sizes or _input_sizes(cfg, base, auto_input):
        here = replace(base, input_size=size)
        cov = float((best_iou(sample, here, prune_below=threshold) >= threshold).mean())
        if cov > best_cov:
            best, best_cov = here, cov
        if cov >= TARGET or not fit_anchors:
            if cov >= TARGET:
                return here, cov
            continue
        for ns in (base.num_scales, base.num_scales + 1):
            found = []
            for aspects in aspect_sets:
                for a_size in sorted(set(grid) | {base.anchor_size}):
                    cand = replace(here, num_scales=ns, aspect_ratios=aspects, anchor_size=a_size)
                    c = float((best_iou(sample, cand, prune_below=threshold) >= threshold).mean())
                    found.append((round(c, 3), aspects == base.aspect_ratios,
                                  -abs(math.log(a_size / base.anchor_size)), cand))
            c, *_, cand = max(found, key=lambda t: t[:3])
            if c > best_cov:
                best, best_cov = cand, c
            if c >= TARGET:
                return cand, c
    return best, best_cov


def _smallest(boxes: BoxSet, size: int, n: int = 3) -> str:
    hw = boxes.hw_pixels(size)
    order = np.argsort(np.sqrt(np.maximum(hw[:, 0] * hw[:, 1], 0)))[:n]
    p10 = np.percentile(np.sqrt(np.maximum(hw[:, 0] * hw[:, 1], 0)), 10)
    return (f"10% of the boxes are under {p10:.1f} px (sqrt area) at input {size} px; the "
            "smallest: " + ", ".join(f"{boxes.labels[i]!r} in {boxes.names[i]} "
                                     f"{hw[i, 1]:.1f}x{hw[i, 0]:.1f} px" for i in order))


def fit(cfg, boxes: BoxSet) -> Fit:
    """Fit the anchors of ``cfg`` (``model.anchor_fit``, ``model.input_size`` 0 = auto).

    Returns:
      Fit whose ``after.anchors`` are the chosen values (``before`` = the config as written;
      with ``input_size`` auto, ``before`` is measured at the smallest auto size).
    Raises:
      AnchorFitError: with ``model.input_size: auto`` and ``anchor_fit: auto``, when no setting
        within ``train.max_input_size`` reaches ``MIN_RECALL`` (naming the smallest boxes).
    """
    m = cfg.model
    auto_input = m.input_size == 0
    th = match_threshold(cfg)
    base = Anchors.of(m)
    if auto_input:
        base = replace(base, input_size=_input_sizes(cfg, base, True)[0])
    before = coverage(boxes, base, th)
    if before.recall >= TARGET and not auto_input:
        return Fit(before, before, True)
    chosen, _ = search(boxes, cfg, fit_anchors=m.anchor_fit == "auto", auto_input=auto_input,
                       threshold=th)
    after = before if chosen == base else coverage(boxes, chosen, th)
    if after.recall < MIN_RECALL and auto_input and m.anchor_fit == "auto":
        raise AnchorFitError(
            f"{cfg.data.train}: the anchors cannot match enough boxes: the best anchor coverage "
            f"within train.max_input_size = {cfg.train.max_input_size} px is {after.recall:.2f} "
            f"< {MIN_RECALL} ({after.line()}). {_smallest(boxes, chosen.input_size)}. Options: "
            "raise train.max_input_size (e.g. to "
            f"{2 * cfg.train.max_input_size}), lower model.min_level (finer anchors, slower), "
            "or crop the photos into tiles before converting them.")
    return Fit(before, after, after.recall >= TARGET)


def suggestion(cfg, boxes: BoxSet, threshold: float) -> str:
    """Concrete overrides that reach ``TARGET``: fitted anchors at the config's input size, else
    at 2x or 4x that size (at most 2048 px); '' when none does."""
    size = cfg.model.input_size or AUTO_MIN_INPUT
    sizes = [s for s in (size, 2 * size, 4 * size) if s <= max(2048, size)]
    cand, cov = search(boxes, cfg, fit_anchors=True, auto_input=True, threshold=threshold,
                       sizes=sizes, grid=_ANCHOR_SIZES[::2])
    if cov < TARGET:
        return ""
    extra = (f" train.max_input_size={cand.input_size}"
             if cand.input_size > cfg.train.max_input_size else "")
    return cand.overrides() + extra


def apply(cfg, anchors: Anchors):
    """``cfg`` with the model's input size and anchor fields set from ``anchors``."""
    return replace(cfg, model=replace(cfg.model, input_size=anchors.input_size,
                                      num_scales=anchors.num_scales,
                                      aspect_ratios=tuple(anchors.aspect_ratios),
                                      anchor_size=anchors.anchor_size))


def prepare_training(cfg, model_dir, log=print):
    """At the start of ``od train``: measure (and with ``anchor_fit: auto`` fit) the anchors on
    ``cfg.data.train`` (a resolved shard glob), print one line, warn below ``TARGET`` with the
    overrides that reach it. A run folder with a ``pipeline.yaml`` keeps its anchors (resume).

    Returns:
      ``cfg`` with concrete ``input_size`` and anchor fields (saved as ``RUN/pipeline.yaml``).
    Raises:
      AnchorFitError: no boxes; unreachable ``MIN_RECALL`` (see ``fit``).
    """
    from od import config as config_lib
    from od.layout import PIPELINE_FILE

    saved = Path(model_dir) / PIPELINE_FILE
    boxes = BoxSet.from_tfrecords(cfg.data.train)
    if saved.is_file() and (cfg.model.anchor_fit == "auto" or cfg.model.input_size == 0):
        cfg = apply(cfg, Anchors.of(config_lib.load(saved).model))  # resume: the run's anchors
        now = coverage(boxes, Anchors.of(cfg.model), match_threshold(cfg))
        result = Fit(now, now, now.recall >= TARGET)
    else:
        result = fit(cfg, boxes)
    cfg = apply(cfg, result.after.anchors)
    log(result.message() if result.changed() else result.after.line())
    if not result.reached:
        hint = suggestion(cfg, boxes, result.after.threshold)
        log(f"WARNING: anchor coverage {result.after.recall:.3f} < {TARGET}: about "
            f"{1 - result.after.recall:.0%} of the training boxes match no anchor and will "
            "hardly be learned. " + (f"Overrides that reach it: {hint}" if hint else
                                     "No anchor setting up to 4x the input size reaches it; " +
                                     _smallest(boxes, result.after.anchors.input_size)))
    return cfg
