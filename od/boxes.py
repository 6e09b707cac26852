"""Box conventions and conversions.

Inside `od` every box is ``[ymin, xmin, ymax, xmax]`` as float32, normalised to ``[0, 1]`` by the
image height (y) and width (x) — the Object Detection API convention. Formats that use pixels
(Pascal VOC and CSV: ``xmin, ymin, xmax, ymax``; COCO: ``x, y, width, height``) are converted once,
where they are read or written, with the functions here.

Pixel coordinates follow the OD API's own converters (``create_pascal_tf_record.py``): a pixel
coordinate ``x`` becomes ``x / width``, with no ±1 correction.
"""
from __future__ import annotations

import numpy as np


def _as_array(boxes) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], got {arr.shape}")
    return arr


def normalize_xyxy(boxes, width: int, height: int, dtype=np.float32) -> np.ndarray:
    """Pixel ``[xmin, ymin, xmax, ymax]`` → normalised ``[ymin, xmin, ymax, xmax]``.

    Args:
      boxes: array-like [N, 4], pixel xyxy (VOC / CSV order).
      width, height: image size in pixels.
      dtype: of the result (float64 keeps a reader's full precision).
    Returns:
      ``dtype`` [N, 4], ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1] (not clipped).
    """
    b = _as_array(boxes)
    out = np.stack([b[:, 1] / height, b[:, 0] / width, b[:, 3] / height, b[:, 2] / width], axis=1)
    return out.astype(dtype).reshape(-1, 4)


def denormalize_to_xyxy(boxes, width: int, height: int) -> np.ndarray:
    """Normalised ``[ymin, xmin, ymax, xmax]`` → pixel ``[xmin, ymin, xmax, ymax]`` (float64)."""
    b = _as_array(boxes)
    return np.stack([b[:, 1] * width, b[:, 0] * height, b[:, 3] * width, b[:, 2] * height],
                    axis=1).reshape(-1, 4)


def xywh_to_normalized(boxes, width: int, height: int, dtype=np.float32) -> np.ndarray:
    """COCO pixel ``[x, y, w, h]`` → normalised ``[ymin, xmin, ymax, xmax]`` ``dtype`` [N, 4]."""
    b = _as_array(boxes)
    xyxy = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)
    return normalize_xyxy(xyxy, width, height, dtype)


def normalized_to_xywh(boxes, width: int, height: int) -> np.ndarray:
    """Normalised ``[ymin, xmin, ymax, xmax]`` → COCO pixel ``[x, y, w, h]`` float64 [N, 4]."""
    xyxy = denormalize_to_xyxy(boxes, width, height)
    return np.stack([xyxy[:, 0], xyxy[:, 1], xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]],
                    axis=1).reshape(-1, 4)


def from_pixels(xyxy, width: int, height: int) -> tuple[float, float, float, float]:
    """One pixel box ``(xmin, ymin, xmax, ymax)`` (VOC / CSV order) → normalised
    ``(ymin, xmin, ymax, xmax)`` as Python floats (float64), for the annotation readers."""
    return tuple(float(v) for v in normalize_xyxy([xyxy], width, height, np.float64)[0])


def from_coco(xywh, width: int, height: int) -> tuple[float, float, float, float]:
    """One COCO pixel box ``(x, y, w, h)`` → normalised ``(ymin, xmin, ymax, xmax)`` floats."""
    return tuple(float(v) for v in xywh_to_normalized([xywh], width, height, np.float64)[0])


def to_pixels(yxyx, width: int, height: int) -> tuple[float, float, float, float]:
    """One normalised ``(ymin, xmin, ymax, xmax)`` box → pixel ``(xmin, ymin, xmax, ymax)``
    floats (not rounded), for the annotation writers and messages."""
    return tuple(float(v) for v in denormalize_to_xyxy([yxyx], width, height)[0])


def pixel_tolerance(width: int, height: int, pixels: float = 1.0) -> tuple[float, float]:
    """``pixels`` expressed in normalised units: ``(along y, along x)``."""
    return pixels / max(height, 1), pixels / max(width, 1)


def exif_transform(boxes, orientation: int) -> np.ndarray:
    """Move normalised ``[ymin, xmin, ymax, xmax]`` boxes drawn on an image's stored pixels onto
    the same image turned upright by its EXIF ``orientation`` (1-8, as ``PIL.ImageOps.
    exif_transpose`` turns it: 2 mirror, 3 rotate 180°, 4 flip, 5 transpose, 6 rotate 90°
    clockwise, 7 transverse, 8 rotate 90° counter-clockwise).

    Returns:
      float32 [N, 4] normalised ``[ymin, xmin, ymax, xmax]`` on the upright image.
    """
    b = _as_array(boxes)
    y0, x0, y1, x1 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    # a point (x, y) of the stored image lands at (X, Y) of the upright one
    point = {1: lambda x, y: (x, y), 2: lambda x, y: (1 - x, y),
             3: lambda x, y: (1 - x, 1 - y), 4: lambda x, y: (x, 1 - y),
             5: lambda x, y: (y, x), 6: lambda x, y: (1 - y, x),
             7: lambda x, y: (1 - y, 1 - x), 8: lambda x, y: (y, 1 - x)}[orientation]
    xa, ya = point(x0, y0)
    xb, yb = point(x1, y1)
    out = np.stack([np.minimum(ya, yb), np.minimum(xa, xb), np.maximum(ya, yb),
                    np.maximum(xa, xb)], axis=1)
    return out.astype(np.float32).reshape(-1, 4)
