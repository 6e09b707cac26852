#!/usr/bin/env python3
"""Run an ``od export`` TFLite detector without TensorFlow (e.g. on a Raspberry Pi).

Needs only numpy, Pillow and LiteRT (``pip install ai-edge-litert``; ``tflite_runtime`` is used if
that is what is installed). Copy the export folder (``model_int8.tflite`` or another ``.tflite``,
``labels.txt`` and this file) to the board, then::

    python detect_tflite.py --model model_int8.tflite --images DIR --out OUT [--min-score 0.5]

For each image of DIR (JPEG, PNG, BMP, GIF, WebP, TIFF; EXIF rotation applied, transparency on
black) it writes ``OUT/<stem>.jpg`` with the boxes drawn (``<stem>_<ext>`` where two images share
a stem, as ``od detect``) and ``OUT/detections.json``, the same form as ``od detect``:
``{"images": [per image {"image", "width", "height", "detections": [{"class_id", "class",
"score", "box": [ymin, xmin, ymax, xmax] normalised, "box_pixels": [xmin, ymin, xmax, ymax]}]}],
"skipped": [{"image", "reason"}]}``; an image that cannot be decoded is listed under ``skipped``.
OUT may not be, hold or lie inside DIR, and an existing OUT must be empty or an earlier output.

Preprocessing and box mapping are those of ``od.tflite`` (Model Garden's serving input): pixels
normalised per channel by the ImageNet mean/std, resized bilinearly (half-pixel centres) keeping
the aspect ratio to fit S×S, zero-padded bottom/right; boxes divided by the resize scale and
normalised to the image. ``labels.txt``: line k is the name of class id k (line 0: background).

This file was written by ``od export`` and does not import ``od`` or TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

MEAN_RGB = np.array([0.485 * 255, 0.456 * 255, 0.406 * 255], np.float32)
STDDEV_RGB = np.array([0.229 * 255, 0.224 * 255, 0.225 * 255], np.float32)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif",
                  ".tiff")  # a copy of od.data.images.IMAGE_SUFFIXES: this file stands alone
MAX_ASPECT = 32  # a longer strip is padded to this ratio first (od.detections.pad_aspect)
PAD_RGB = (124, 116, 104)


class RunnerError(Exception):
    """Bad input: the message names the file and the fix."""


def interpreter_class():
    """LiteRT's Interpreter, else tflite_runtime's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise RunnerError("no TFLite runtime: pip install ai-edge-litert (or tflite-runtime)"
                              ) from None
    return Interpreter


def load_image(path: Path) -> np.ndarray:
    """uint8 RGB [H, W, 3]: EXIF-rotated upright, transparency composited on black."""
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "P", "PA", "RGBa", "La"):
                rgba = img.convert("RGBA")
                img = Image.new("RGB", rgba.size, (0, 0, 0))
                img.paste(rgba, mask=rgba.getchannel("A"))
            return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise RunnerError(f"{path}: cannot decode image ({e}); re-export it or remove it.") from None


def _weights(in_size: int, out_size: int):
    """TF's bilinear resize (half-pixel centres) source rows and weights, in float32."""
    scale = np.float32(in_size) / np.float32(out_size)
    x = (np.arange(out_size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(x)
    lower = np.maximum(floor, 0).astype(np.int64)
    upper = np.minimum(np.ceil(x), in_size - 1).astype(np.int64)
    return lower, upper, (x - floor).astype(np.float32)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """float32 [H, W, C] → [height, width, C] as ``tf.image.resize(..., 'bilinear')``."""
    y0, y1, fy = _weights(image.shape[0], height)
    x0, x1, fx = _weights(image.shape[1], width)
    fx = fx[None, :, None]
    top = image[y0][:, x0] + (image[y0][:, x1] - image[y0][:, x0]) * fx
    bottom = image[y1][:, x0] + (image[y1][:, x1] - image[y1][:, x0]) * fx
    return top + (bottom - top) * fy[:, None, None]


def preprocess(image: np.ndarray, size: int):
    """uint8 RGB [H, W, 3] → (float32 input [1, S, S, 3], image_info float32 [4, 2]) as
    ``od.tflite.preprocess``."""
    x = (image.astype(np.float32) - MEAN_RGB) / STDDEV_RGB
    hw = np.array(image.shape[:2], np.float32)
    scale = min(np.float32(size) / hw[0], np.float32(size) / hw[1])
    scaled = np.round(hw * scale).astype(np.float32)
    x = resize_bilinear(x, int(scaled[0]), int(scaled[1]))
    out = np.zeros((1, size, size, 3), np.float32)
    out[0, :x.shape[0], :x.shape[1]] = x[:size, :size]
    info = np.stack([hw, np.array([size, size], np.float32), scaled / hw,
                     np.zeros(2, np.float32)])
    return out, info


def to_image_boxes(boxes: np.ndarray, info: np.ndarray, size: int) -> np.ndarray:
    """Boxes [K, 4] normalised to the S×S input → normalised to the image, clipped to [0, 1]."""
    pixels = np.asarray(boxes, np.float32) * np.float32(size)
    pixels = pixels / np.tile(info[2], 2)
    return np.clip(pixels / np.tile(info[0], 2), 0.0, 1.0)


class Detector:
    """A ``.tflite`` of ``od export``: call with uint8 RGB [H, W, 3] → (boxes [K, 4] normalised
    yxyx, scores [K], class ids [K]) sorted by score, class 0 (background) dropped."""

    def __init__(self, path: Path, num_threads: int | None = None):
        if not path.is_file():
            raise RunnerError(f"{path}: no such model file; give the .tflite of the export folder.")
        try:
            interp = interpreter_class()(model_path=str(path),
                                         num_threads=num_threads or os.cpu_count())
            self._run = interp.get_signature_runner("serving_default")
            self.input_size = int(self._run.get_input_details()["inputs"]["shape"][1])
        except (ValueError, RuntimeError, KeyError) as e:
            raise RunnerError(f"{path}: not a detector written by `od export --format tflite*` "
                              f"({e}).") from None

    def raw(self, x: np.ndarray) -> dict:
        """The model's outputs (all float32: detection_boxes [1, K, 4] normalised to the S×S
        input, detection_classes [1, K], detection_scores [1, K], num_detections [1]) for a
        preprocessed input [1, S, S, 3]."""
        return self._run(inputs=np.asarray(x, np.float32))

    def __call__(self, image: np.ndarray):
        h, w = image.shape[:2]
        ph, pw = max(h, -(-w // MAX_ASPECT)), max(w, -(-h // MAX_ASPECT))
        if (ph, pw) != (h, w):  # a strip: its short side would resize to 0 px
            padded = np.empty((ph, pw, 3), np.uint8)
            padded[...] = PAD_RGB
            padded[:h, :w] = image
            image = padded
        x, info = preprocess(image, self.input_size)
        out = self.raw(x)
        n = int(out["num_detections"][0])
        classes = out["detection_classes"][0, :n].astype(np.int32)
        keep = classes > 0
        boxes = to_image_boxes(out["detection_boxes"][0, :n][keep], info, self.input_size)
        scores, classes = out["detection_scores"][0, :n][keep].astype(np.float32), classes[keep]
        if (ph, pw) != (h, w):  # back to the image inside the padding (od.detections.unpad)
            boxes = np.clip(boxes * np.array([ph / h, pw / w] * 2, np.float32), 0.0, 1.0)
        inside = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return boxes[inside], scores[inside], classes[inside]


def read_labels(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


def records(boxes, scores, classes, labels, width: int, height: int) -> list[dict]:
    """Detections as ``od detect``'s detections.json entries."""
    out = []
    for b, s, c in zip(boxes, scores, classes):
        c = int(c)
        name = labels[c] if 0 < c < len(labels) and labels[c] != "???" else f"class {c}"
        px = [b[1] * width, b[0] * height, b[3] * width, b[2] * height]
        out.append({"class_id": c, "class": name, "score": round(float(s), 4),
                    "box": [round(float(v), 5) for v in b],
                    "box_pixels": [round(float(v), 1) for v in px]})
    return out


def label_font(size: int):
    """DejaVu Sans (installed on Raspberry Pi OS and most Linux systems: accented Latin, Greek,
    Cyrillic class names drawn as letters) at ``size`` px, else Pillow's built-in font."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        try:
            return ImageFont.load_default(size)
        except TypeError:  # Pillow < 10.1: the fixed bitmap font
            return ImageFont.load_default()


def draw(image: np.ndarray, recs: list[dict]) -> Image.Image:
    img = Image.fromarray(image)
    pen = ImageDraw.Draw(img)
    width = max(2, round(min(img.size) / 200))
    size = max(10, round(min(img.size) / 40))
    font = label_font(size) if recs else None
    for r in recs:
        x0, y0, x1, y1 = r["box_pixels"]
        pen.rectangle([x0, y0, x1, y1], outline=(255, 64, 0), width=width)
        pen.text((x0 + width, max(0, y0 - size - 2)), f"{r['class']} {r['score']:.2f}",
                 fill=(255, 64, 0), font=font)
    return img


def output_stems(files: list[Path]) -> dict[Path, str]:
    """The stem of each image's outputs (``<stem>.jpg``; ``od detect`` also ``voc/<stem>.xml``,
    ``crops/<stem>_*``): its own, or ``<stem>_<ext>`` (``a_jpg``, ``a_png``; ``_2``... if taken)
    for images whose stems are the same, so no image's outputs replace another's. ``od detect``
    uses this function (``od.detect_files.output_stems``)."""
    counts: dict[str, int] = {}
    for f in files:
        counts[f.stem] = counts.get(f.stem, 0) + 1
    used = {stem for stem, n in counts.items() if n == 1}
    stems = {}
    for f in files:
        if counts[f.stem] == 1:
            stems[f] = f.stem
            continue
        base = f"{f.stem}_{f.suffix.lstrip('.')}" if f.suffix else f.stem
        name, k = base, 1
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        stems[f] = name
    return stems


def check_out(out: Path, images: Path, model: Path) -> None:
    """Refuse an OUT that would overwrite inputs or a user's files."""
    o, i = out.resolve(), images.resolve()
    folder = i if i.is_dir() else i.parent
    model_folder = model.resolve().parent
    for inp, what in ((folder, "the images folder"), (model_folder, "the model's folder")):
        if o == inp or inp in o.parents or o in inp.parents:
            raise RunnerError(f"--out {out} is, holds or lies inside {what} ({inp}); the drawn "
                              "images would overwrite or mix with it. Give a new folder.")
    if o.is_dir() and any(o.iterdir()) and not (o / "detections.json").is_file():
        raise RunnerError(f"--out {out} exists, is not empty and is not an output of this "
                          "runner; give a new or empty folder.")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help=".tflite file of the export folder")
    ap.add_argument("--images", required=True, help="folder of images (or one image)")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--labels", help="labels.txt (default: beside the model)")
    ap.add_argument("--min-score", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    try:
        model, images, out = Path(a.model), Path(a.images), Path(a.out)
        if not 0.0 <= a.min_score <= 1.0:
            raise RunnerError(f"--min-score {a.min_score} must be in [0, 1].")
        files = ([images] if images.is_file() else
                 sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                 if images.is_dir() else [])
        if not files:
            raise RunnerError(f"{images}: no images found (looked for {', '.join(IMAGE_SUFFIXES)}).")
        check_out(out, images, model)
        labels = read_labels(Path(a.labels) if a.labels else model.with_name("labels.txt"))
        detector = Detector(model, a.threads)
        out.mkdir(parents=True, exist_ok=True)
        results, skipped, stems = [], [], output_stems(files)
        for path in files:
            try:
                image = load_image(path)
            except RunnerError as e:  # listed, the others still run (as od detect)
                skipped.append({"image": path.name, "reason": str(e)})
                continue
            boxes, scores, classes = detector(image)
            keep = scores >= a.min_score
            h, w = image.shape[:2]
            recs = records(boxes[keep], scores[keep], classes[keep], labels, w, h)
            stem = stems[path]
            results.append({"image": path.name, "width": w, "height": h, "detections": recs,
                            **({} if stem == path.stem else {"output": f"{stem}.jpg"})})
            tmp = out / f".{stem}.jpg.tmp-{os.getpid()}"
            draw(image, recs).save(tmp, format="JPEG", quality=92)
            os.replace(tmp, out / f"{stem}.jpg")
        doc = {"images": results, "skipped": skipped}
        _write_atomic(out / "detections.json", (json.dumps(doc, indent=2) + "\n").encode())
    except RunnerError as e:
        print(f"detect_tflite: error: {e}", file=sys.stderr)
        return 2
    print(f"{sum(len(r['detections']) for r in results)} boxes in {len(results)} images → {out}/"
          + (f"; {len(skipped)} skipped (see detections.json)" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
