"""Drawing boxes on images with Pillow, for ``od detect`` and notebooks.

Boxes are float ``[N, 4]``, ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1]; they are clipped to
the image and converted to pixels here, at the edge. Images are a ``PIL.Image.Image`` (any mode;
converted to RGB) or a numpy ``uint8`` array ``[H, W, 3]`` RGB (``[H, W]`` / ``[H, W, 1]`` grey and
``[H, W, 4]`` RGBA are accepted too). Inputs are never modified: every function returns a new
RGB ``PIL.Image.Image``.
"""
from __future__ import annotations

import colorsys
import math

import numpy as np
from PIL import Image, ImageDraw

from od import fonts
from od.boxes import denormalize_to_xyxy
from od.detections import Detections, GroundTruth
from od.errors import ImageError

DEFAULT_COLOR = (0, 200, 255)
_GOLDEN = 0.618033988749895


def to_pil(image) -> Image.Image:
    """A new RGB PIL image from a PIL image (any mode) or a uint8 numpy array.

    Args:
      image: PIL.Image.Image, or numpy uint8 [H, W, 3] RGB, [H, W] / [H, W, 1] grey, [H, W, 4] RGBA.
    Raises:
      ImageError: another type, dtype or shape (e.g. float arrays: scale to uint8 0..255 first).
    """
    if isinstance(image, Image.Image):
        return image.convert("RGB")  # always a copy
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a PIL image or a numpy uint8 array, got {type(image).__name__}.")
    if image.dtype != np.uint8:
        raise ImageError(f"numpy images must be uint8 (0..255), got dtype {image.dtype}; convert "
                         "with (image * 255).clip(0, 255).astype(np.uint8) if it is 0..1.")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    raise ImageError(f"numpy images must be [H, W, 3] RGB (or [H, W] grey), got shape {image.shape}.")


def class_color(class_id: int) -> tuple[int, int, int]:
    """A saturated RGB colour for ``class_id``, the same on every run (golden-ratio hues)."""
    hue = (int(class_id) * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _text_color(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luma > 140 else (255, 255, 255)


def _label(class_id, score, label_map) -> str:
    name = None
    if class_id is not None:
        name = label_map.title_of(int(class_id)) if label_map is not None else f"class {class_id}"
    pct = None if score is None else f"{round(float(score) * 100)}%"
    return ": ".join(p for p in (name, pct) if p)


def _column(values, n: int, what: str, dtype) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, dtype=dtype).reshape(-1)
    if len(arr) != n:
        raise ImageError(f"draw_boxes: {n} boxes but {len(arr)} {what}; pass one per box.")
    return arr


def draw_boxes(image, boxes, class_ids=None, scores=None, label_map=None, *,
               min_score: float = 0.0, color_by_class: bool = True,
               line_width: int | None = None) -> Image.Image:
    """Draw boxes with a filled label ``'name: 87%'`` on a copy of ``image``.

    Args:
      image: PIL image or numpy uint8 [H, W, 3] RGB (see :func:`to_pil`).
      boxes: float [N, 4], [ymin, xmin, ymax, xmax] normalised to [0, 1]; parts outside the
        image are clipped.
      class_ids: int [N] label-map ids, or None (no names; one colour).
      scores: float [N] in [0, 1], or None (no percentages; ``min_score`` not applied).
      label_map: od.label_map.LabelMap for names (``'class <id>'`` without it).
      min_score: boxes with ``score < min_score`` are not drawn.
      color_by_class: colour each class by :func:`class_color`; else all ``DEFAULT_COLOR``.
      line_width: in pixels; default scales with the image (``max(1, round(min(H, W) / 250))``).
    Returns:
      A new RGB PIL image of the same size. Higher scores are drawn last (on top).
    Raises:
      ImageError: bad image, boxes not [N, 4], or class_ids/scores of another length.
    """
    img = to_pil(image)
    w, h = img.size
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return img
    if b.ndim != 2 or b.shape[1] != 4:
        raise ImageError(f"draw_boxes: boxes must be [N, 4] ymin/xmin/ymax/xmax, got {b.shape}.")
    ids = _column(class_ids, len(b), "class ids", np.int64)
    sc = _column(scores, len(b), "scores", np.float32)
    keep = np.isfinite(b).all(axis=1)
    if sc is not None:
        keep &= sc >= np.float32(min_score)
    order = [i for i in (np.argsort(sc, kind="stable") if sc is not None else range(len(b)))
             if keep[i]]
    lw = line_width if line_width is not None else max(1, round(min(w, h) / 250))
    size = max(10, round(min(w, h) / 40))  # pixels
    px = denormalize_to_xyxy(np.clip(b, 0.0, 1.0), w, h)
    draw = ImageDraw.Draw(img)
    for i in order:
        x0, y0 = round(px[i, 0]), round(px[i, 1])  # pixel edges → first/last pixel inside
        x1, y1 = max(x0, min(w - 1, round(px[i, 2]) - 1)), max(y0, min(h - 1, round(px[i, 3]) - 1))
        if x0 >= w or y0 >= h:
            continue
        color = class_color(ids[i]) if (color_by_class and ids is not None) else DEFAULT_COLOR
        draw.rectangle([x0, y0, x1, y1], outline=color, width=lw)
        text = _label(None if ids is None else ids[i], None if sc is None else sc[i], label_map)
        if not text:
            continue
        font = fonts.label_font(text, size)  # the class name's own script (od.fonts)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * lw + 2, bottom - top + 2 * lw
        ty = y0 - th if y0 - th >= 0 else y0  # above the box, or inside it at the top edge
        tx = min(x0, max(0, w - tw))
        draw.rectangle([tx, ty, tx + tw - 1, ty + th - 1], fill=color)
        draw.text((tx + lw + 1 - left, ty + lw - top), text, fill=_text_color(color), font=font)
    return img


def draw_detections(image, detections: Detections, label_map=None,
                    min_score: float = 0.5) -> Image.Image:
    """Draw ``detections`` (boxes yxyx normalised) with score ``>= min_score``; see
    :func:`draw_boxes`. Returns a new RGB PIL image."""
    return draw_boxes(image, detections.boxes, detections.class_ids, detections.scores, label_map,
                      min_score=min_score)


def draw_groundtruth(image, gt: GroundTruth, label_map=None) -> Image.Image:
    """Draw the labelled boxes of ``gt`` (yxyx normalised) with class names, no scores; see
    :func:`draw_boxes`. Returns a new RGB PIL image."""
    return draw_boxes(image, gt.boxes, gt.class_ids, None, label_map)


def image_grid(images, columns: int, *, cell_size: int | None = None, padding: int = 4,
               background=(255, 255, 255)) -> Image.Image:
    """Tile ``images`` row by row into one RGB image, ``columns`` per row.

    Args:
      images: non-empty sequence of PIL images or uint8 numpy arrays (see :func:`to_pil`).
      columns: images per row (>= 1); fewer columns are used if there are fewer images.
      cell_size: if set, each image is shrunk (aspect kept) to fit ``cell_size`` x ``cell_size``
        pixels; else cells are as large as the largest image, unscaled.
      padding: pixels between and around cells.
    Returns:
      An RGB PIL image; images are centred in their cells.
    Raises:
      ImageError: no images, ``columns`` < 1, ``cell_size`` < 1, or a bad image.
    """
    pics = [to_pil(im) for im in images]
    if not pics:
        raise ImageError("image_grid: no images given.")
    if int(columns) < 1 or (cell_size is not None and int(cell_size) < 1):
        raise ImageError(f"image_grid: columns ({columns}) and cell_size ({cell_size}) must be >= 1.")
    if cell_size is not None:
        for p in pics:
            p.thumbnail((int(cell_size), int(cell_size)))
    cw, ch = max(p.width for p in pics), max(p.height for p in pics)
    cols = min(int(columns), len(pics))
    rows = math.ceil(len(pics) / cols)
    grid = Image.new("RGB", (cols * cw + (cols + 1) * padding, rows * ch + (rows + 1) * padding),
                     tuple(background))
    for k, p in enumerate(pics):
        r, c = divmod(k, cols)
        grid.paste(p, (padding + c * (cw + padding) + (cw - p.width) // 2,
                       padding + r * (ch + padding) + (ch - p.height) // 2))
    return grid


def show(image) -> Image.Image:
    """Return ``image`` as an RGB PIL image; as the last expression of a Jupyter cell it is
    displayed inline. No matplotlib, no side effects."""
    return to_pil(image)
