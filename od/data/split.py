"""Train/val/test splits: deterministic for a seed, stratified by class, honouring given splits.

Records whose ``split`` is already set (by the source: a split CSV, a Roboflow folder, a VOC
ImageSets list, AutoML's TRAIN/VALIDATION/TEST column) keep it. The rest are split by ratio
(AutoML Vision's 80/10/10 by default): images are grouped by their rarest class (negatives form
their own group) and each group is shuffled with the seed and cut by the ratios, so every class is
represented in each split in proportion.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict

from od.data.records import SPLITS, ImageAnnotation
from od.errors import OdError

DEFAULT_RATIOS = (0.8, 0.1, 0.1)


def parse_ratios(text: str | tuple | list) -> tuple[float, float, float]:
    """``'0.8,0.1,0.1'`` → (0.8, 0.1, 0.1). Two numbers mean no test split.

    Raises:
      OdError: not 2-3 numbers in [0, 1] (NaN refused) summing to 1 (±0.001).
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    try:
        vals = [float(p) for p in parts]
    except ValueError:
        raise OdError(f"split ratios {text!r} are not numbers; write e.g. 0.8,0.1,0.1.") from None
    if len(vals) == 2:
        vals.append(0.0)
    if len(vals) != 3 or not all(0 <= v <= 1 for v in vals) or abs(sum(vals) - 1) > 1e-3:
        raise OdError(f"split ratios {text!r} must be 2 or 3 non-negative numbers "
                      "(train,val[,test]) that sum to 1, e.g. 0.8,0.1,0.1.")
    return tuple(vals)


def assign_splits(records: list[ImageAnnotation], ratios=DEFAULT_RATIOS, seed: int = 0
                  ) -> list[ImageAnnotation]:
    """Return the records with ``split`` set; original order kept.

    Images without a split are grouped by their rarest class (negatives form their own group),
    rarest group first; each group is shuffled with ``seed`` and its images are dealt one by one
    to the split furthest below its share of all images dealt so far. So the totals match the
    ratios to within one image, and every class is spread over the splits in proportion (a class
    with fewer images than splits cannot be everywhere).

    Args:
      records: images; those with ``split`` already set keep it.
      ratios: (train, val, test) fractions of the unassigned images (see ``parse_ratios``).
      seed: shuffling seed; the same inputs and seed give the same split.
    """
    ratios = parse_ratios(ratios)
    freq = Counter(label for r in records for label in set(r.labels))
    groups: dict[str, list[int]] = defaultdict(list)
    for k, r in enumerate(records):
        if r.split is None:
            key = min(set(r.labels), key=lambda c: (freq[c], c)) if r.boxes else ""
            groups[key].append(k)
    rng = random.Random(seed)
    chosen: dict[int, str] = {}
    dealt = [0, 0, 0]
    for key in sorted(groups, key=lambda g: (freq[g] if g else float("inf"), g)):
        idx = sorted(groups[key], key=lambda k: str(records[k].image_path))
        rng.shuffle(idx)
        for k in idx:
            total = sum(dealt) + 1
            s = max(range(3), key=lambda j: (ratios[j] * total - dealt[j], -j))
            dealt[s] += 1
            chosen[k] = SPLITS[s]
    return [r if r.split is not None else r.replace(split=chosen[k]) for k, r in enumerate(records)]


def empty_split_notes(ratios, images: dict, assigned: bool = True) -> list[str]:
    """The console line for the splits that ``ratios`` give a share but that got no image
    (``images``: split → images written), e.g. val and test of 0.8,0.1,0.1 with two images;
    none when no image was split by ratio (``assigned`` False: every source named its split)."""
    ratios = parse_ratios(ratios)
    empty = [s for s, r in zip(SPLITS, ratios) if r > 0 and not images.get(s)]
    if not assigned or not empty:
        return []
    return [f"split {' and '.join(empty)} got no image: {sum(images.values())} image(s) are too "
            f"few for --split {','.join(f'{r:g}' for r in ratios)} (od train's train.eval_every "
            "needs val images, od evaluate a test split); add images, or name a split's own "
            "source: --annotations val=PATH"]
