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

import math
import os
import threading
from pathlib import Path

from lxml import etree

from od import atomic
from od.data import values
from od.data.images import probe
from od.data.paths import resolve_under
from od.data.records import ImageAnnotation, ObjectBox, ReadResult
from od.errors import AnnotationError, ImageError

_MAX_XML_BYTES = 10_000_000
_local = threading.local()


def _parser() -> etree.XMLParser:
    """The safe parser, one per thread (an lxml parser may be reused, but not by two threads at
    once); building one per file cost more than parsing a small VOC file."""
    parser = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = etree.XMLParser(
            resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
            huge_tree=False, remove_comments=True)
    return parser


def parse_xml(path: Path) -> etree._Element:
    """Parse an annotation file safely. Raises AnnotationError on DTDs/entities or bad XML."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AnnotationError(f"{path}: cannot read annotation ({e.strerror}).") from None
    if len(data) > _MAX_XML_BYTES:
        raise AnnotationError(f"{path}: annotation file is {len(data):,} bytes; refusing files "
                              f"over {_MAX_XML_BYTES:,} bytes.")
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise _dtd_error(path)
    try:
        tree = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as e:
        raise AnnotationError(f"{path}: not well-formed XML ({e}). Fix or remove the file.") \
            from None
    docinfo = tree.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.doctype:  # e.g. a UTF-16 file
        raise _dtd_error(path)
    return tree


def _dtd_error(path: Path) -> AnnotationError:
    return AnnotationError(f"{path}: XML with a DTD or entity declarations is refused (it can "
                           "expand to gigabytes or read local files). Remove the <!DOCTYPE> "
                           "block; VOC annotations never need one.")


def _children(el) -> dict:
    """``{tag: first child element with that tag}`` (what ``el.find(tag)`` returns), built in
    one pass: a VOC file is read with a dozen lookups, each ``find`` a path evaluation."""
    first: dict = {}
    for child in el:
        first.setdefault(child.tag, child)
    return first


def _text(el, tag: str, path: Path, *, required: bool = True, default: str = "",
          children: dict | None = None) -> str:
    child = (_children(el) if children is None else children).get(tag)
    if child is None or child.text is None or not child.text.strip():
        if required:
            raise AnnotationError(f"{path}: missing <{tag}> in <{el.tag}>; every VOC annotation "
                                  f"needs it.")
        return default
    return child.text.strip()


def _number(el, tag: str, path: Path, where: str = "", children: dict | None = None) -> float:
    raw = _text(el, tag, path, children=children)
    try:
        value = float(raw)
    except ValueError:
        raise AnnotationError(f"{where or path}: <{tag}> is {raw!r}, not a number.") from None
    if not math.isfinite(value):
        values.finite(value, f"<{tag}>", where or str(path))  # raises, naming the value
    return value


def _size(root, path: Path, filename: str, images_dir, children: dict) -> tuple[int, int, bool]:
    """(width, height, taken_from_image): the ``<size>``, or the image's own size when
    ``<size>`` is missing or says 0 (LabelImg writes 0x0 when it could not read the image)."""
    size = children.get("size")
    of_size = {} if size is None else _children(size)
    raw = [None if size is None else ("" if of_size.get(t) is None else of_size[t].text or ""
                                      ).strip() for t in ("width", "height")]
    if all(r not in (None, "") for r in raw):
        w, h = (_number(size, t, path, f"{path}: <size>", of_size) for t in ("width", "height"))
        if w != 0 and h != 0:
            wh = values.image_size(w, h, f"{path}: <size>")
            return wh[0], wh[1], False
        if w < 0 or h < 0:
            values.image_size(w, h, f"{path}: <size>")  # raises for the negative one
    image = resolve_under(images_dir, filename, source=str(path))
    try:
        w, h = probe(image, upright=False)
    except ImageError as e:
        raise AnnotationError(f"{path}: <size> is missing or 0x0 and the image's own size cannot "
                              f"be read ({e}). Fix <size> or the image.") from None
    return w, h, True


def _flag(children: dict, tag: str) -> bool:
    child = children.get(tag)
    return child is not None and (child.text or "").strip() in ("1", "true", "True")


def _normalised(xmin: float, ymin: float, xmax: float, ymax: float, width: int, height: int
                ) -> tuple[float, float, float, float]:
    """``od.boxes.from_pixels`` for one box without NumPy: the same float64 divisions
    (``x / width``, ``y / height``), so the same values (tests/test_data_convert.py checks)."""
    return ymin / height, xmin / width, ymax / height, xmax / width


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
      AnnotationError: malformed XML, DTD/entities, missing fields, non-numeric, NaN or infinite
        values, a negative, fractional or huge size, a ``<bndbox>`` inside the first pixel
        (normalised, not pixels: ``od.data.values.pixel_box``). A ``<size>`` missing or 0 is taken
        from the image file (its stored pixels; ``size_from_image`` is set).
      UnsafePathError: ``<filename>`` escapes ``images_dir``.
    """
    path = xml_path if isinstance(xml_path, Path) else Path(xml_path)
    source = str(path)
    root = parse_xml(path)
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: root element is <{root.tag}>, expected <annotation> "
                              "(Pascal VOC).")
    children = _children(root)
    filename = _text(root, "filename", path, children=children)
    width, height, from_image = _size(root, path, filename, images_dir, children)
    boxes = []
    k = 0
    for obj in root.iterchildren("object"):
        k += 1
        where = f"{source}: <object> {k}"
        of_obj = _children(obj)
        bb = of_obj.get("bndbox")
        if bb is None:
            raise AnnotationError(f"{where} ({_text(obj, 'name', path, children=of_obj)!r}) has "
                                  "no <bndbox>.")
        of_bb = _children(bb)
        xmin, ymin, xmax, ymax = (_number(bb, t, path, where, of_bb)
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
        values.pixel_box(xmin, ymin, xmax, ymax, width, height, where,
                         "Write <bndbox> in pixels (x times the width, y times the height).")
        boxes.append(ObjectBox(*_normalised(xmin, ymin, xmax, ymax, width, height),
                               label=_text(obj, "name", path, children=of_obj),
                               difficult=_flag(of_obj, "difficult"),
                               truncated=_flag(of_obj, "truncated")))
    image_path = resolve_under(images_dir, filename, source=source)
    return ImageAnnotation(image_path, width, height, tuple(boxes), source=source,
                           size_from_image=from_image)


DEVKIT_SPLITS = {"train": "train", "val": "val", "test": "test"}
"""``ImageSets/Main/<name>.txt`` → od split (class lists like ``cat_train.txt`` are ignored)."""


def _devkit_root(ann_dir: Path) -> Path | None:
    if (ann_dir / "Annotations").is_dir():
        return ann_dir
    if ann_dir.name == "Annotations" and (ann_dir.parent / "ImageSets" / "Main").is_dir():
        return ann_dir.parent
    return None


def _devkit_splits(root: Path) -> dict[str, str]:
    """``{image id: split}`` from ``ImageSets/Main/{train,val,test}.txt`` (UTF-8 with or
    without a BOM, or UTF-16 with one; an AnnotationError names a file in another encoding).
    An id in two lists takes the later one (train, val, test)."""
    from od.data.csv import read_text  # main process only: the workers never read these lists

    splits: dict[str, str] = {}
    for name, split in DEVKIT_SPLITS.items():
        f = root / "ImageSets" / "Main" / f"{name}.txt"
        if f.is_file():
            for line in read_text(f, "image list").splitlines():
                if line.split():
                    splits[line.split()[0]] = split
    return splits


def read(annotations_dir: str | os.PathLike, images_dir: str | os.PathLike | None = None,
         *, pool=None) -> ReadResult:
    """Read every ``*.xml`` (``*.XML``...) in ``annotations_dir`` (sorted by name, not
    recursive; hidden files such as macOS ``._a.xml`` are left out).

    A VOC devkit (``annotations_dir`` holds ``Annotations/``, ``JPEGImages/`` and
    ``ImageSets/Main/{train,val,test}.txt``, or is its ``Annotations/`` folder) is read with the
    splits the ImageSets lists give (ids not listed: split by ratio later) and images from
    ``JPEGImages/`` by default.

    Args:
      annotations_dir: folder of VOC XML files, or a devkit folder.
      images_dir: folder of images; default: ``JPEGImages/`` of a devkit, else
        ``annotations_dir``.
      pool: an ``od.data.parallel.Pool`` to parse the files in (chunks of files per job; the
        result and the first error raised are those of reading them one by one), or None.
    Returns:
      ReadResult; boxes ``[ymin, xmin, ymax, xmax]`` normalised by each XML's ``<size>``.
    Raises:
      AnnotationError: the folder has no XML files, or a file is malformed (named in the message).
      UnsafePathError: a ``<filename>`` escapes the images folder.
    """
    ann_dir = Path(annotations_dir)
    if not ann_dir.is_dir():
        raise AnnotationError(f"{ann_dir}: annotations folder not found.")
    root = _devkit_root(ann_dir)
    splits = {}
    if root is not None:
        ann_dir = root / "Annotations"
        images_dir = images_dir or root / "JPEGImages"
        splits = _devkit_splits(root)
    files = sorted((p for p in ann_dir.iterdir() if p.suffix.lower() == ".xml"  # a.XML too
                    and not p.name.startswith(".") and p.is_file()), key=lambda p: p.name)
    if not files:
        raise AnnotationError(f"{ann_dir}: no .xml files found; is this the Pascal VOC "
                              "annotations folder (--annotations)?")
    images_dir = images_dir or ann_dir
    if pool is None:
        records = read_files((files, images_dir, splits))
    else:
        size = pool.chunk_size(len(files), most=64)
        jobs = [(files[k:k + size], images_dir,
                 {f.stem: splits[f.stem] for f in files[k:k + size] if f.stem in splits})
                for k in range(0, len(files), size)]
        records = [r for part in pool.map(read_files, jobs) for r in part]
    names: list[str] = []
    for r in records:
        for label in r.labels:
            if label not in names:
                names.append(label)
    return ReadResult(records, names)


def read_files(job: tuple) -> list[ImageAnnotation]:
    """``read_file`` of each of ``job = (xml files, images folder, {stem: split})``, in order,
    with the split its stem is listed under (None if none). A worker job of ``read``."""
    files, images_dir, splits = job
    records = []
    for f in files:
        r = read_file(f, images_dir)
        split = splits.get(Path(f).stem) if splits else None
        records.append(r if split is None else r.replace(split=split))
    return records


def image_folder(split: str) -> str:
    """Folder (relative to the output) where ``write`` expects the images (the devkit's)."""
    return "JPEGImages"


def to_xml(record: ImageAnnotation, filename: str) -> bytes:
    """One VOC XML document for ``record``; box corners in pixels, rounded to integers."""
    from od import boxes as box_lib  # NumPy: not needed by the readers (convert's workers)

    E = etree.Element
    root = E("annotation")

    def sub(parent, tag, text):
        el = etree.SubElement(parent, tag)
        el.text = str(text)
        return el

    sub(root, "folder", "JPEGImages")
    sub(root, "filename", filename)
    size = etree.SubElement(root, "size")
    sub(size, "width", record.width)
    sub(size, "height", record.height)
    sub(size, "depth", 3)
    sub(root, "segmented", 0)
    for b in record.boxes:
        obj = etree.SubElement(root, "object")
        sub(obj, "name", b.label)
        sub(obj, "pose", "Unspecified")
        sub(obj, "truncated", int(b.truncated))
        sub(obj, "difficult", int(b.difficult))
        bb = etree.SubElement(obj, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"),
                          box_lib.to_pixels(b.yxyx, record.width, record.height)):
            sub(bb, tag, round(v))
    return etree.tostring(root, pretty_print=True, xml_declaration=False, encoding="utf-8")


def write(records: list[ImageAnnotation], out_dir: str | os.PathLike, label_map=None
          ) -> list[Path]:
    """Write a VOC devkit: ``Annotations/<stem>.xml`` per image and
    ``ImageSets/Main/{train,val,test}.txt``; images must already be in ``out_dir/JPEGImages``
    (with distinct stems).

    Args:
      records: boxes normalised ``[ymin, xmin, ymax, xmax]``; ``split`` None is listed in none.
      label_map: unused (classes are written by name); accepted for the writers table.
    Returns:
      the files written (each atomically). Read back with ``--format voc --annotations OUT``.
    """
    out_dir = Path(out_dir)
    written = []
    lists: dict[str, list[str]] = {s: [] for s in DEVKIT_SPLITS.values()}
    for r in records:
        rel = r.image_path.relative_to(out_dir / "JPEGImages").as_posix()
        stem = Path(rel).stem
        written.append(atomic.write_bytes(out_dir / "Annotations" / f"{stem}.xml",
                                          to_xml(r, rel)))
        if r.split:
            lists[r.split].append(stem)
    for split, stems in lists.items():
        if stems:
            written.append(atomic.write_text(out_dir / "ImageSets" / "Main" / f"{split}.txt",
                                             "".join(f"{s}\n" for s in stems)))
    return written
