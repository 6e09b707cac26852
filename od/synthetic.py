"""A small synthetic detection dataset that `od quickstart` generates itself (no download).

Coloured shapes (classes ``circle``, ``square``, ``triangle``) on textured backgrounds (colour
gradients, noise and random stripes), 1-3 objects per image, some images with none, written as
JPEGs + Pascal VOC XML so that the real VOC reader is exercised. Deterministic for a seed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from od import atomic
from od.data.images import encode_jpeg
from od.data.records import ImageAnnotation, ObjectBox
from od.data.voc import to_xml

CLASSES = ("circle", "square", "triangle")


def _background(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    c0, c1 = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < 0.5 else \
        np.linspace(0, 1, h)[:, None, None]
    base = c0 * (1 - t) + c1 * t + np.zeros((h, w, 3))
    base += rng.normal(0, 18, (h, w, 3))
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(0, 6))):  # distracting stripes
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        draw.line([(int(x0), int(y0)), (int(x0 + rng.integers(-w, w)), int(y0 + rng.integers(-h, h)))],
                  fill=tuple(int(v) for v in rng.integers(0, 256, 3)), width=int(rng.integers(1, 4)))
    return img.filter(ImageFilter.GaussianBlur(0.6))


def _overlaps(box, boxes) -> bool:
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        if x0 < a1 and a0 < x1 and y0 < b1 and b0 < y1:
            return True
    return False


def make_image(rng: np.random.Generator, width: int, height: int, max_objects: int = 3
               ) -> tuple[Image.Image, list[tuple[str, tuple[int, int, int, int]]]]:
    """One RGB image and its objects as ``(class, (xmin, ymin, xmax, ymax) pixels)``."""
    img = _background(rng, width, height)
    draw = ImageDraw.Draw(img)
    objects: list = []
    n = int(rng.integers(0, max_objects + 1)) if rng.random() < 0.1 else \
        int(rng.integers(1, max_objects + 1))
    for _ in range(n):
        for _attempt in range(20):
            s = int(rng.integers(min(width, height) // 6, min(width, height) // 2.5))
            x0, y0 = int(rng.integers(0, width - s)), int(rng.integers(0, height - s))
            box = (x0, y0, x0 + s, y0 + s)
            if not _overlaps(box, [b for _, b in objects]):
                break
        else:
            continue
        cls = CLASSES[int(rng.integers(0, len(CLASSES)))]
        fill = tuple(int(v) for v in rng.integers(30, 256, 3))
        outline = tuple(255 - v for v in fill)
        if cls == "circle":
            draw.ellipse(box, fill=fill, outline=outline, width=2)
        elif cls == "square":
            draw.rectangle(box, fill=fill, outline=outline, width=2)
        else:
            draw.polygon([(x0 + s / 2, y0), (x0 + s, y0 + s), (x0, y0 + s)], fill=fill,
                         outline=outline)
        objects.append((cls, box))
    return img, objects


def generate(out: str | os.PathLike, num_images: int = 300, *, size=(192, 160), seed: int = 0
             ) -> Path:
    """Write ``out/images/*.jpg`` and ``out/annotations/*.xml`` (Pascal VOC).

    Args:
      out: destination folder (created).
      num_images: how many images; sizes vary around ``size`` = (width, height) pixels.
      seed: the same seed gives the same dataset.
    Returns:
      ``out`` as a Path.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    for k in range(num_images):
        w = int(size[0] * rng.uniform(0.8, 1.2))
        h = int(size[1] * rng.uniform(0.8, 1.2))
        img, objects = make_image(rng, w, h)
        name = f"shapes-{k:04d}.jpg"
        path = out / "images" / name
        atomic.write_bytes(path, encode_jpeg(img, quality=92))
        boxes = tuple(ObjectBox(y0 / h, x0 / w, y1 / h, x1 / w, label=c)
                      for c, (x0, y0, x1, y1) in objects)
        atomic.write_bytes(out / "annotations" / f"shapes-{k:04d}.xml",
                           to_xml(ImageAnnotation(path, w, h, boxes), name))
    return out

