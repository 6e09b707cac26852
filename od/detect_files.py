"""The files ``od detect`` reads and writes: which entries of ``--images`` are images, the
output name of each (``output_stems``), and one image's drawing, VOC pre-label and crops.

Boxes in ``records`` are ``[ymin, xmin, ymax, xmax]`` normalised (``box``) and ``[xmin, ymin,
xmax, ymax]`` pixels of the image as displayed (``box_pixels``).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from od import atomic
from od.boxes import denormalize_to_xyxy
from od.data.images import IMAGE_SUFFIXES
from od.detections import Detections
# one output-name rule for od detect and the TFLite runner, which may not import od: it holds it
from od.lite.detect_tflite import output_stems  # noqa: F401  (od.detect_files.output_stems)


def records(det: Detections, lm) -> list[dict]:
    """One dict per box of ``det`` for detections.json: ``class_id`` (label-map id), ``class``
    (display name), ``score``, ``box`` (normalised ymin, xmin, ymax, xmax), ``box_pixels`` (xmin,
    ymin, xmax, ymax in pixels of ``det``'s image)."""
    px = denormalize_to_xyxy(det.boxes, det.width, det.height)
    return [{"class_id": int(c), "class": lm.title_of(int(c)) if lm else str(int(c)),
             "score": round(float(s), 4), "box": [round(float(v), 5) for v in b],
             "box_pixels": [round(float(v), 1) for v in p]}
            for b, p, s, c in zip(det.boxes, px, det.scores, det.class_ids)]


def jpeg(image) -> bytes:
    """A PIL image as JPEG bytes, quality 92."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def crop_names(stem: str, recs: list[dict]) -> list[tuple[str, tuple]]:
    """``(crops/ file name, (x0, y0, x1, y1) pixels)`` of each non-empty box."""
    names = []
    for k, r in enumerate(recs):
        x0, y0, x1, y1 = (int(round(v)) for v in r["box_pixels"])
        if x1 > x0 and y1 > y0:
            safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in r["class"])
            names.append((f"{stem}_{k}_{safe}.jpg", (x0, y0, x1, y1)))
    return names


def write_image(out: Path, path: Path, stem: str, image: np.ndarray, det: Detections,
                 recs: list[dict], lm, min_score: float, voc: bool, crops: list,
                 after: list) -> None:
    """Draw and write one image's outputs (``<stem>.jpg``, ``voc/<stem>.xml``, ``crops/``), after
    the jobs in ``after`` that write files of the same names (so the later write wins, as in a
    plain loop)."""
    from PIL import Image

    from od.data.records import ImageAnnotation, ObjectBox
    from od.data.voc import to_xml
    from od.visualize import draw_detections

    for job in after:
        job.result()
    drawn = draw_detections(image, det, lm, min_score=min_score)
    atomic.write_bytes(out / f"{stem}.jpg", jpeg(drawn))
    if voc:
        boxes = tuple(ObjectBox(*map(float, r["box"]), label=r["class"]) for r in recs)
        rec = ImageAnnotation(path, det.width, det.height, boxes)
        atomic.write_bytes(out / "voc" / f"{stem}.xml", to_xml(rec, path.name))
    if crops:
        pil = Image.fromarray(image)
        for name, box in crops:
            atomic.write_bytes(out / "crops" / name, jpeg(pil.crop(box)))


def list_images(images: Path) -> tuple[list[Path], list[str]]:
    """(image files of ``images``: the file itself, or the folder's files with an image suffix,
    sorted; names of the folder's other entries, hidden ones left out, sub-folders with a '/')."""
    if images.is_file():
        return [images], []
    if not images.is_dir():
        return [], []
    files, others = [], []
    for p in sorted(images.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir():
            files.append(p)
        elif not p.name.startswith("."):
            others.append(p.name + ("/" if p.is_dir() else ""))
    return files, others
