"""Pascal VOC XML annotations (one ``.xml`` per image, as written by LabelImg and the VOC devkit).

Format (VOC 2007-2012 devkit; pixel coordinates, 1-based in VOC itself but stored as given)::

    <annotation><filename>a.jpg</filename><size><width>W</width><height>H</height></size>
      <object><name>cat</name><difficult>0</difficult><truncated>0</truncated>
        <bndbox><xmin>..</xmin><ymin>..</ymin><xmax>..</xmax><ymax>..</ymax></bndbox></object>
    </annotation>

XML is parsed with lxml with entity resolution, DTD loading and network access turned off, so
XXE and "billion laughs" files are refused with an AnnotationError rather than expanded.
"""
from __future__ import annotations

import os
from pathlib import Path

from lxml import etree

from od.data.paths import resolve_under
from od.data.records import ImageAnnotation, ObjectBox, ReadResult
from od.errors import AnnotationError

_MAX_XML_BYTES = 10_000_000


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_comments=True)


def parse_xml(path: Path) -> etree._Element:
    """Parse an annotation file safely. Raises AnnotationError on DTDs/entities or bad XML."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read annotation ({e.strerror}).") from None
    if len(data) > _MAX_XML_BYTES:
        raise AnnotationError(f"{path}: annotation file is {len(data):,} bytes; refusing files "
                              f"over {_MAX_XML_BYTES:,} bytes.")
    try:
        tree = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        raise AnnotationError(f"{path}: not well-formed XML ({e}). Fix or remove the file.") \
            from None
    if tree.getroottree().docinfo.internalDTD is not None or b"<!ENTITY" in data:
        raise AnnotationError(f"{path}: XML with a DTD or entity declarations is refused (it can "
                              "expand to gigabytes or read local files). Remove the <!DOCTYPE> "
                              "block; VOC annotations never need one.")
    return tree


def _text(el, tag: str, path: Path, *, required: bool = True, default: str = "") -> str:
    child = el.find(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise AnnotationError(f"{path}: missing <{tag}> in <{el.tag}>; every VOC annotation "
                                  f"needs it.")
        return default
    return child.text.strip()


def _number(el, tag: str, path: Path) -> float:
    raw = _text(el, tag, path)
    try:
        return float(raw)
    except ValueError:
        raise AnnotationError(f"{path}: <{tag}> is {raw!r}, not a number.") from None


def _flag(el, tag: str) -> bool:
    child = el.find(tag)
    return child is not None and (child.text or "").strip() in ("1", "true", "True")


def read_file(xml_path: str | os.PathLike, images_dir: str | os.PathLike) -> ImageAnnotation:
    """Read one VOC XML file.

    Args:
      xml_path: the ``.xml`` file.
      images_dir: folder the ``<filename>`` is relative to (it must stay inside it).
    Returns:
      ImageAnnotation with boxes normalised by the XML's ``<size>`` (``x / width``, ``y / height``),
      order ``[ymin, xmin, ymax, xmax]``; ``difficult`` and ``truncated`` kept. Boxes are not
      validated here (see ``od.data.validate``).
    Raises:
      AnnotationError: malformed XML, DTD/entities, missing fields, non-numeric values,
        non-positive size.
      UnsafePathError: ``<filename>`` escapes ``images_dir``.
    """
    path = Path(xml_path)
    root = parse_xml(path)
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: root element is <{root.tag}>, expected <annotation> "
                              "(Pascal VOC).")
    filename = _text(root, "filename", path)
    size = root.find("size")
    if size is None:
        raise AnnotationError(f"{path}: missing <size>; add <size><width>..</width>"
                              "<height>..</height></size>.")
    width, height = int(_number(size, "width", path)), int(_number(size, "height", path))
    if width <= 0 or height <= 0:
        raise AnnotationError(f"{path}: image size {width}x{height} is not positive; fix <size> "
                              "(or re-save the annotation in your labelling tool).")
    boxes = []
    for obj in root.findall("object"):
        bb = obj.find("bndbox")
        if bb is None:
            raise AnnotationError(f"{path}: <object> {_text(obj, 'name', path)!r} has no "
                                  "<bndbox>.")
        xmin, ymin, xmax, ymax = (_number(bb, t, path) for t in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append(ObjectBox(ymin / height, xmin / width, ymax / height, xmax / width,
                               label=_text(obj, "name", path),
                               difficult=_flag(obj, "difficult"),
                               truncated=_flag(obj, "truncated")))
    image_path = resolve_under(images_dir, filename, source=str(path))
    return ImageAnnotation(image_path, width, height, tuple(boxes), source=str(path))


def read(annotations_dir: str | os.PathLike, images_dir: str | os.PathLike | None = None
         ) -> ReadResult:
    """Read every ``*.xml`` in ``annotations_dir`` (sorted by name, not recursive).

    Args:
      annotations_dir: folder of VOC XML files.
      images_dir: folder of images; defaults to ``annotations_dir``.
    Raises:
      AnnotationError: the folder has no XML files, or a file is malformed (named in the message).
    """
    ann_dir = Path(annotations_dir)
    if not ann_dir.is_dir():
        raise AnnotationError(f"{ann_dir}: annotations folder not found.")
    files = sorted(ann_dir.glob("*.xml"))
    if not files:
        raise AnnotationError(f"{ann_dir}: no .xml files found; is this the Pascal VOC "
                              "annotations folder (--annotations)?")
    records = [read_file(f, images_dir or ann_dir) for f in files]
    names: list[str] = []
    for r in records:
        for label in r.labels:
            if label not in names:
                names.append(label)
    return ReadResult(records, names)
