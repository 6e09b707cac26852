"""COCO JSON detection annotations, including Roboflow exports.

Format (``cocodataset.org/#format-data``, "Object Detection")::

    {"images": [{"id": 0, "file_name": "a.jpg", "width": W, "height": H}, ...],
     "annotations": [{"id": 1, "image_id": 0, "category_id": 3,
                      "bbox": [x, y, w, h], "iscrowd": 0, "area": w*h}, ...],
     "categories": [{"id": 3, "name": "cat", "supercategory": "animal"}, ...]}

``bbox`` is pixels, top-left corner plus width and height. Category ids may have gaps (COCO's own
run 1..90 for 80 classes); a category no annotation uses (Roboflow's parent class, id 0
``"pieces"`` in its chess export) is not a class. An image without annotations is a negative.

Roboflow exports a folder with ``train/ valid/ test/``, each holding ``_annotations.coco.json``
and its images; the folder names give the split (``valid`` → ``val``). ``write`` produces that
layout.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from od import atomic
from od import boxes as box_lib
from od.boxes import normalized_to_xywh
from od.data import values
from od.data.paths import resolve_under
from od.data.records import ImageAnnotation, ObjectBox, ReadResult
from od.errors import AnnotationError

ROBOFLOW_JSON = "_annotations.coco.json"
SPLIT_FOLDERS = {"train": "train", "valid": "val", "val": "val", "test": "test"}
"""Roboflow / common split folder name → od split."""
WRITE_FOLDERS = {"train": "train", "val": "valid", "test": "test"}
"""od split → folder name ``write`` uses (Roboflow's)."""


def image_folder(split: str) -> str:
    """Folder (relative to the output) where ``write`` expects the images of ``split``."""
    return WRITE_FOLDERS[split]


def _sources(path: Path) -> list[tuple[Path, str | None]]:
    if path.is_file():
        return [(path, None)]
    if not path.is_dir():
        raise AnnotationError(f"{path}: COCO annotations not found (expected a .json file or a "
                              "Roboflow export folder).")
    if (path / ROBOFLOW_JSON).is_file():
        return [(path / ROBOFLOW_JSON, SPLIT_FOLDERS.get(path.name))]
    found = [(path / d / ROBOFLOW_JSON, s) for d, s in SPLIT_FOLDERS.items()
             if (path / d / ROBOFLOW_JSON).is_file()]
    if found:
        return found
    jsons = sorted(path.glob("*.json"))
    if len(jsons) == 1:
        return [(jsons[0], None)]
    raise AnnotationError(f"{path}: no COCO JSON found: expected {ROBOFLOW_JSON}, a "
                          "train/ valid/ test/ Roboflow export, or exactly one .json file.")


def _load(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read COCO JSON ({e.strerror}).") from None
    except (ValueError, RecursionError) as e:
        raise AnnotationError(f"{path}: not valid JSON ({e}). Re-export the annotations."
                              ) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("categories"), list):
        raise AnnotationError(f"{path}: not a COCO detection file (needs 'images', "
                              "'annotations' and 'categories' lists).")
    return data


def _field(obj: dict, key: str, kind, where: str):
    value = obj.get(key) if isinstance(obj, dict) else None
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value  # an int stays exact (ids); checked by od.data.values
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise AnnotationError(f"{where}: {key!r} is {value!r}; expected a {kind.__name__}.")


def read_file(json_path: Path, images_dir: Path, split: str | None = None) -> ReadResult:
    """Read one COCO JSON file; images are resolved under ``images_dir`` (they must stay in it).

    Returns:
      ReadResult: one record per ``images`` entry (in file order; negatives included), boxes
      ``[ymin, xmin, ymax, xmax]`` normalised from ``bbox`` by the entry's width/height,
      ``is_crowd`` from ``iscrowd``; class names = categories used by at least one annotation,
      in category-id order.
    Raises:
      AnnotationError: malformed JSON or entries, no images, an annotation naming an unknown
        image or category, NaN/infinite numbers, sizes or ids out of range (``od.data.values``;
        a width written ``2048.0`` is accepted), repeated ids (the message gives the file, the
        annotation id and the value), a ``bbox`` inside the first pixel (normalised, not
        pixels: ``od.data.values.pixel_box``), two used categories with one name.
      UnsafePathError: a ``file_name`` escapes ``images_dir``.
    """
    data = _load(json_path)
    cats = {}
    for c in data["categories"]:
        where = f"{json_path}: category {c!r}"
        cid = values.class_id(_field(c, "id", float, where), where, low=0)
        if cid in cats:
            raise AnnotationError(f"{where}: category id {cid} is used twice (also by "
                                  f"{cats[cid]!r}); give every category its own id.")
        cats[cid] = _field(c, "name", str, where).strip()
        if not cats[cid]:
            raise AnnotationError(f"{where}: the category has an empty name; name it (it becomes "
                                  "the class name).")
    if not data["images"]:
        raise AnnotationError(f"{json_path}: 'images' is empty: the export holds no images. "
                              "Re-export the dataset, or leave this file out.")
    images, order = {}, []
    for im in data["images"]:
        where = f"{json_path}: image {im.get('id') if isinstance(im, dict) else im!r}"
        iid = values.image_id(_field(im, "id", float, where), where)
        if iid in images:
            raise AnnotationError(f"{where}: image id {iid} is used twice; give every image its "
                                  "own id.")
        w, h = values.image_size(_field(im, "width", float, where),
                                 _field(im, "height", float, where), where)
        name = _field(im, "file_name", str, where)
        images[iid] = {"name": name, "w": w, "h": h, "boxes": [],
                       "path": resolve_under(images_dir, name, source=where)}
        order.append(iid)
    used = set()
    for ann in data.get("annotations") or []:
        where = f"{json_path}: annotation {ann.get('id') if isinstance(ann, dict) else ann!r}"
        iid = values.image_id(_field(ann, "image_id", float, where), where)
        cid = values.class_id(_field(ann, "category_id", float, where), where, low=0)
        if iid not in images:
            raise AnnotationError(f"{where}: image_id {iid} is not in 'images'; fix the export.")
        if cid not in cats:
            raise AnnotationError(f"{where}: category_id {cid} is not in 'categories' (ids "
                                  f"{sorted(cats)}); fix the export or add the category.")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and
                all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
            raise AnnotationError(f"{where}: 'bbox' is {bbox!r}; expected [x, y, width, height] "
                                  "in pixels.")
        crowd = ann.get("iscrowd") or 0
        if isinstance(crowd, str) or crowd not in (0, 1):
            raise AnnotationError(f"{where}: 'iscrowd' is {crowd!r}; expected 0 or 1.")
        im = images[iid]
        x, y, bw, bh = (values.finite(v, f"'bbox' {bbox!r}", where) for v in bbox)
        if bw < 0 or bh < 0:
            raise AnnotationError(f"{where}: 'bbox' {bbox!r} has a negative width or height; "
                                  "COCO boxes are [x, y, width, height] with width, height >= 0.")
        values.pixel_box(x, y, x + bw, y + bh, im["w"], im["h"], where,
                         "COCO 'bbox' is [x, y, width, height] in pixels; multiply by the image "
                         "width and height.")
        im["boxes"].append(ObjectBox(*box_lib.from_coco((x, y, bw, bh), im["w"], im["h"]),
                                     cats[cid], is_crowd=bool(crowd)))
        used.add(cid)
    records = [ImageAnnotation(images[i]["path"], images[i]["w"], images[i]["h"],
                               tuple(images[i]["boxes"]), source=f"{json_path}: image {i}",
                               split=split) for i in order]
    names, ids_of = [], {}
    for cid in sorted(used):
        if cats[cid] in ids_of:
            raise AnnotationError(
                f"{json_path}: categories {ids_of[cats[cid]]} and {cid} are both named "
                f"{cats[cid]!r} and both used by annotations, so they would become one class. "
                "Rename one category if they are different classes, or give their annotations "
                "one category_id if they are the same.")
        ids_of[cats[cid]] = cid
        names.append(cats[cid])
    return ReadResult(records, names)


def read(path: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> ReadResult:
    """Read COCO annotations: a ``.json`` file, a folder with ``_annotations.coco.json``, or a
    Roboflow export folder with ``train/ valid/ test/`` (the split of each record is set).

    Args:
      path: see above.
      images_dir: folder the ``file_name`` values are relative to; default: the JSON's folder.
        For a Roboflow export with ``images_dir`` given, ``images_dir/<split folder>`` is used
        when it exists.
    Raises:
      AnnotationError, UnsafePathError: see ``read_file``.
    """
    result = ReadResult([], [])
    for json_path, split in _sources(Path(path)):
        root = json_path.parent
        if images_dir is not None:
            root = Path(images_dir)
            if split and (root / json_path.parent.name).is_dir():
                root = root / json_path.parent.name
        part = read_file(json_path, root, split)
        result.records.extend(part.records)
        result.class_names.extend(c for c in part.class_names if c not in result.class_names)
    return result


def write(records: list[ImageAnnotation], out_dir: str | os.PathLike, label_map) -> list[Path]:
    """Write ``out_dir/<split folder>/_annotations.coco.json`` for each split present.

    Args:
      records: images with ``split`` set and ``image_path`` inside
        ``out_dir/image_folder(split)``; boxes normalised ``[ymin, xmin, ymax, xmax]``.
      label_map: od.label_map.LabelMap; its ids become the category ids (every class named in
        ``records`` must be in it).
    Returns:
      the JSON files written (atomically). ``bbox`` is pixels ``[x, y, w, h]``, 2 decimals.
    """
    out_dir = Path(out_dir)
    categories = [{"id": it.id, "name": it.name, "supercategory": "none"}
                  for it in label_map.items]
    written = []
    for split, folder in WRITE_FOLDERS.items():
        recs = [r for r in records if (r.split or "train") == split]
        if not recs:
            continue
        json_dir = out_dir / folder
        images, anns = [], []
        for iid, r in enumerate(recs):
            images.append({"id": iid, "file_name": r.image_path.relative_to(json_dir).as_posix(),
                           "width": r.width, "height": r.height})
            xywh = normalized_to_xywh([b.yxyx for b in r.boxes], r.width, r.height)
            for b, (x, y, w, h) in zip(r.boxes, xywh):
                anns.append({"id": len(anns) + 1, "image_id": iid,
                             "category_id": label_map.id_of(b.label, where=r.source),
                             "bbox": [round(float(v), 2) for v in (x, y, w, h)],
                             "area": round(float(w * h), 2), "segmentation": [],
                             "iscrowd": int(b.is_crowd)})
        doc = {"info": {"description": "written by od data convert"}, "categories": categories,
               "images": images, "annotations": anns}
        written.append(atomic.write_json(json_dir / ROBOFLOW_JSON, doc))
    return written
