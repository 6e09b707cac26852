"""The anchor fit (``model.anchor_fit``, ``model.input_size: auto``) and what ``od train`` prints
before its first step; coverage itself is measured by :mod:`od.anchors` (whose module doc says
how, and which re-exports these names: ``anchors.fit`` is ``anchor_fit.fit``).

The search runs on a sample of the boxes (``_SEARCH_BOXES``, all of them for most datasets) and
accepts a setting only when it reaches ``TARGET`` on every box, cheapest first: for each input
size (smallest first), the config's anchors, then ``anchor_size`` (a grid of ``_ANCHOR_SIZES``
strides) with the config's or the k-means aspect ratios, then one more ``num_scales``. A size
whose best anchors fall short of ``TARGET`` by at most ``INPUT_SLACK`` is kept rather than paying
for a larger input.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from od.anchors import (AUTO_MIN_INPUT, MIN_RECALL, TARGET, AnchorFitError, Anchors, BoxSet,
                        Coverage, best_iou, coverage, match_threshold)

_SEARCH_BOXES = 2000   # boxes sampled for the search (a setting is accepted on all of them)
_ANCHOR_SIZES = tuple(round(2 ** (k / 6), 3) for k in range(0, 19))  # 1.0 .. 8.0 strides
_KMEANS_POINTS = 20000  # log aspect ratios k-means clusters at most
_MAX_HINT_INPUT = 4096  # px: the largest input size the messages look at
#: a larger input size costs (new/old)^2 compute in every step: ``input_size: auto`` moves past a
#: size whose best anchors cover at least ``TARGET - INPUT_SLACK`` of the boxes only to match
#: more than this share more (chess at 256 px: 0.975 kept rather than 384 px at 2.25x the cost)
INPUT_SLACK = 0.01


def kmeans_aspects(boxes: BoxSet, k: int, seed: int = 0) -> tuple:
    """``k`` anchor aspect ratios (width/height) from k-means on the boxes' log aspect ratio
    (scipy's ``kmeans``, as Ultralytics' autoanchor), rounded to 2 decimals, sorted; the same
    for the same boxes in any order."""
    from scipy.cluster.vq import kmeans

    hw = boxes.hw_pixels(1000)
    good = (hw[:, 0] > 0) & (hw[:, 1] > 0)
    logs = np.sort(np.log(hw[good, 1] / hw[good, 0]))
    if len(logs) == 0:
        return (1.0,)
    if len(logs) > _KMEANS_POINTS:  # evenly spaced quantiles: the same shape, bounded time
        logs = logs[np.linspace(0, len(logs) - 1, _KMEANS_POINTS).round().astype(int)]
    logs = logs.reshape(-1, 1)
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


def _recall(boxes: BoxSet, anchors: Anchors, threshold: float) -> float:
    return float((best_iou(boxes, anchors) >= threshold).mean())


def search(boxes: BoxSet, cfg, *, fit_anchors: bool, auto_input: bool, threshold: float,
           sizes: list | None = None, grid: tuple = _ANCHOR_SIZES,
           goal: float = TARGET, slack: float = 0.0) -> tuple[Anchors, float]:
    """The anchors (and input size, from ``sizes`` or ``_input_sizes``) that reach ``goal``
    coverage on all ``boxes`` at the least cost (or ``goal - slack`` at an input size smaller
    than the last), else the best found on the sample; returns (anchors, coverage: of all boxes
    when ``goal`` is reached, else of the sample)."""
    base = Anchors.of(cfg.model)
    sample = boxes.sample(_SEARCH_BOXES)
    aspect_sets = [base.aspect_ratios]
    if fit_anchors:  # as many clusters as the config has ratios (fewer anchors cost AP)
        km = kmeans_aspects(boxes, max(3, len(base.aspect_ratios)))
        if km != base.aspect_ratios:
            aspect_sets.append(km)

    def reaches(cand: Anchors, c: float) -> float | None:
        """All boxes' coverage when the sample's ``c`` reaches ``goal`` and so do all boxes."""
        if c < goal:
            return None
        full = c if sample is boxes else _recall(boxes, cand, threshold)
        return full if full >= goal else None

    best, best_cov = None, -1.0
    sizes = sizes or _input_sizes(cfg, base, auto_input)
    for k, size in enumerate(sizes):
        here = replace(base, input_size=size)
        cov = _recall(sample, here, threshold)
        if cov > best_cov:
            best, best_cov = here, cov
        if (full := reaches(here, cov)) is not None:
            return here, full
        size_best, size_cov = here, cov
        if fit_anchors:
            for ns in (base.num_scales, base.num_scales + 1):
                found = []
                for aspects in aspect_sets:
                    for a_size in sorted(set(grid) | {base.anchor_size}):
                        cand = replace(here, num_scales=ns, aspect_ratios=aspects,
                                       anchor_size=a_size)
                        found.append((round(_recall(sample, cand, threshold), 3),
                                      aspects == base.aspect_ratios,
                                      -abs(math.log(a_size / base.anchor_size)), cand))
                c, *_, cand = max(found, key=lambda t: t[:3])
                if c > best_cov:
                    best, best_cov = cand, c
                if c > size_cov:
                    size_best, size_cov = cand, c
                if (full := reaches(cand, c)) is not None:
                    return cand, full
        if slack and k + 1 < len(sizes) and size_cov >= goal - slack:  # near enough: not
            full = size_cov if sample is boxes else _recall(boxes, size_best, threshold)
            if full >= goal - slack:  # worth the next size's compute (INPUT_SLACK)
                return size_best, full
    return best, best_cov


def _smallest(boxes: BoxSet, size: int, n: int = 3) -> str:
    hw = boxes.hw_pixels(size)
    side = np.sqrt(np.maximum(hw[:, 0] * hw[:, 1], 0))
    order = np.argsort(side, kind="stable")[:n]
    return (f"10% of the boxes are {np.percentile(side, 10):.1f} px or smaller (sqrt area) at "
            f"input {size} px; the smallest: " + ", ".join(
                f"{boxes.labels[i]!r} in {boxes.names[i]} {hw[i, 1]:.1f}x{hw[i, 0]:.1f} px"
                for i in order))


def _larger_inputs(cfg, boxes: BoxSet, threshold: float, goal: float) -> str:
    """'train.max_input_size=N reaches anchor coverage C': the smallest of 2x, 4x, 8x
    ``max_input_size`` (at most ``_MAX_HINT_INPUT``) whose fitted anchors reach ``goal``; ''
    when none does."""
    top = cfg.train.max_input_size
    step = 2 ** cfg.model.max_level
    sizes = [s for s in (2 * top, 4 * top, 8 * top) if s <= _MAX_HINT_INPUT]
    sizes = [max(step, s // step * step) for s in sizes]
    if not sizes:
        return ""
    cand, cov = search(boxes, cfg, fit_anchors=True, auto_input=True, threshold=threshold,
                       sizes=sizes, grid=_ANCHOR_SIZES[::2], goal=goal)
    return (f"train.max_input_size={cand.input_size} reaches anchor coverage {cov:.2f}"
            if cov >= goal else "")


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
                       threshold=th, slack=INPUT_SLACK)
    after = before if chosen == base else coverage(boxes, chosen, th)
    if after.recall < MIN_RECALL and auto_input and m.anchor_fit == "auto":
        top = _input_sizes(cfg, base, True)[-1]
        larger = _larger_inputs(cfg, boxes, th, MIN_RECALL)
        raise AnchorFitError(
            f"{cfg.data.train or 'the training data'}: the anchors cannot match enough boxes: "
            f"the best anchor coverage within train.max_input_size = "
            f"{cfg.train.max_input_size} px is {after.recall:.2f} < {MIN_RECALL} "
            f"({after.line()}). {_smallest(boxes, top)}. Options: "
            + (f"raise train.max_input_size ({larger})" if larger else
               f"raise train.max_input_size (no size up to {_MAX_HINT_INPUT} px suffices)")
            + ", lower model.min_level (finer anchors, slower), or crop the photos into tiles "
            "before converting them.")
    return Fit(before, after, after.recall >= TARGET)


def _suggestion_sizes(cfg) -> list[int]:
    """The config's input size up to 4x it (at most 2048 px), in steps of ``2**max_level`` (at
    most 12 sizes): the smallest that reaches the target is suggested, not a coarse 2x or 4x."""
    size = cfg.model.input_size or AUTO_MIN_INPUT
    step, top = 2 ** cfg.model.max_level, max(size, min(4 * size, 2048))
    return list(range(size, top + 1, step * max(1, math.ceil((top - size) / step / 12))))


def suggestion(cfg, boxes: BoxSet, threshold: float) -> str:
    """Concrete overrides that reach ``TARGET`` (on all boxes): fitted anchors at the config's
    input size, else at the smallest larger one (``_suggestion_sizes``); '' when none does."""
    cand, cov = search(boxes, cfg, fit_anchors=True, auto_input=True, threshold=threshold,
                       sizes=_suggestion_sizes(cfg), grid=_ANCHOR_SIZES[::2])
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


def prepare_training(cfg, model_dir, log=print, records=None):
    """At the start of ``od train``: measure (and with ``anchor_fit: auto`` fit) the anchors on
    ``cfg.data.train`` (a resolved shard glob), print one line, warn below ``TARGET`` with the
    overrides that reach it. A run folder with a ``pipeline.yaml`` keeps its anchors (resume).

    Then ``fit_max_detections``. ``records``: the training examples already read (as
    ``od.train_checks.ShardCheck.records``, without image bytes); None reads ``cfg.data.train``.

    Returns:
      ``cfg`` with concrete ``input_size`` and anchor fields, and ``max_detections`` (saved as
      ``RUN/pipeline.yaml``).
    Raises:
      AnchorFitError: no boxes; unreachable ``MIN_RECALL`` (see ``fit``).
    """
    from od import config as config_lib
    from od.layout import PIPELINE_FILE

    saved = Path(model_dir) / PIPELINE_FILE
    boxes = (BoxSet.from_tfrecords(cfg.data.train) if records is None
             else BoxSet.from_records(records, cfg.data.train))
    if saved.is_file() and (cfg.model.anchor_fit == "auto" or cfg.model.input_size == 0):
        cfg = apply(cfg, Anchors.of(config_lib.load(saved).model))  # resume: the run's anchors
        now = coverage(boxes, Anchors.of(cfg.model), match_threshold(cfg))
        result = Fit(now, now, now.recall >= TARGET)
    else:
        result = fit(cfg, boxes)
    cfg = apply(cfg, result.after.anchors)
    log(result.message() if result.changed() else result.after.line())
    cfg = fit_max_detections(cfg, boxes, log)
    if not result.reached:
        hint = suggestion(cfg, boxes, result.after.threshold)
        log(f"WARNING: anchor coverage {result.after.recall:.3f} < {TARGET}: about "
            f"{1 - result.after.recall:.0%} of the training boxes match no anchor and will "
            "hardly be learned. " + (
                f"Overrides that reach it: {hint}" if hint else
                f"No anchor setting up to {_suggestion_sizes(cfg)[-1]} px input reaches it; " +
                _smallest(boxes, result.after.anchors.input_size)))
    return cfg


def fit_max_detections(cfg, boxes: BoxSet, log=print):
    """``model.max_detections`` (boxes the model returns per image after NMS) made room for the
    dataset's most crowded image: with more objects than that in a picture (shelves, crowds, cells)
    the rest can never be found, whatever the training. When a training image has more boxes than
    ``max_detections``, ``anchor_fit: auto`` raises it to twice that count, rounded up to a
    multiple of 100 (test images may hold more than any training image; NMS output costs little),
    and says so; ``off`` keeps it and warns with that override.

    Returns:
      ``cfg``, with ``model.max_detections`` raised or as it was.
    """
    most, kept = boxes.most_in_image, cfg.model.max_detections
    if most <= kept:
        return cfg
    want = 100 * math.ceil(2 * most / 100)
    why = (f"{Path(boxes.most_image).name} has {most} boxes, more than model.max_detections="
           f"{kept}, the most the model returns per image")
    if cfg.model.anchor_fit == "off":
        log(f"WARNING: {why}, so at least {most - kept} of its objects can never be found. "
            f"Override: model.max_detections={want}")
        return cfg
    log(f"model.max_detections {kept} -> {want}: {why} (anchor_fit auto; model.anchor_fit=off "
        "keeps it)")
    return replace(cfg, model=replace(cfg.model, max_detections=want))
