"""Class balance: how many images and boxes each class has, and undersampling to the rarest.

An image counts once for every class it contains. ``undersample`` keeps images in a seeded random
order, rarest classes first, while no class in the image has reached the image count of the
smallest class; so afterwards no class has more images than the smallest had. With several
classes per image (a chess board holds pawns and kings) a class can end below that count, and
the report says so. Negatives (images without boxes) are capped at the same count.
"""
from __future__ import annotations

import random
from collections import Counter

from od.data.records import ImageAnnotation

POLICIES = ("undersample",)


def class_balance(records: list[ImageAnnotation]) -> dict:
    """``{classes: {name: {images, boxes}}, negative_images, imbalance}`` where ``imbalance`` is
    the largest class's image count over the smallest's (1.0 = balanced; None without classes).
    """
    images: Counter = Counter()
    boxes: Counter = Counter()
    for r in records:
        boxes.update(r.labels)
        images.update(set(r.labels))
    classes = {c: {"images": images[c], "boxes": boxes[c]} for c in sorted(images)}
    ratio = (round(max(images.values()) / min(images.values()), 3) if images else None)
    return {"classes": classes, "negative_images": sum(not r.boxes for r in records),
            "imbalance": ratio}


def undersample(records: list[ImageAnnotation], seed: int = 0
                ) -> tuple[list[ImageAnnotation], list[dict]]:
    """Drop images so that no class has more images than the rarest class (see module doc).

    Args:
      records: the images; order is kept in the result.
      seed: the same records and seed give the same choice.
    Returns:
      (kept records, one dict ``{item, reason: 'balance_undersample', message}`` per dropped).
    """
    per_class = Counter(c for r in records for c in set(r.labels))
    if not per_class:
        return list(records), []
    target = min(per_class.values())
    rng = random.Random(seed)
    order = sorted(range(len(records)), key=lambda k: str(records[k].image_path))
    rng.shuffle(order)
    order.sort(key=lambda k: min((per_class[c] for c in records[k].labels), default=0) or
               float("inf"))
    kept_count: Counter = Counter()
    negatives = 0
    keep = set()
    for k in order:
        classes = set(records[k].labels)
        if not classes:
            if negatives < target:
                negatives += 1
                keep.add(k)
            continue
        if all(kept_count[c] < target for c in classes):
            kept_count.update(classes)
            keep.add(k)
    dropped = [{"item": str(r.image_path), "reason": "balance_undersample", "message": (
        f"{r.image_path} left out to balance classes (target {target} images per class).")}
        for k, r in enumerate(records) if k not in keep]
    return [r for k, r in enumerate(records) if k in keep], dropped
