"""The in-memory form of an annotated dataset, shared by every reader and writer.

Readers (``od.data.voc``, ``od.data.csv``, ...) turn a file format into a list of
:class:`ImageAnnotation`; writers (TFRecord, VOC, COCO, CSV) turn that list back into a format.
Boxes are always ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1] (see ``od.boxes``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ObjectBox:
    """One labelled box.

    Attributes:
      ymin, xmin, ymax, xmax: float, normalised to [0, 1] by image height / width.
      label: class name as written in the annotation file (e.g. ``'raccoon'``).
      difficult, truncated: Pascal VOC flags (False where the format has none).
      is_crowd: COCO ``iscrowd`` flag.
    """

    ymin: float
    xmin: float
    ymax: float
    xmax: float
    label: str
    difficult: bool = False
    truncated: bool = False
    is_crowd: bool = False

    @property
    def yxyx(self) -> tuple[float, float, float, float]:
        return (self.ymin, self.xmin, self.ymax, self.xmax)


@dataclass(frozen=True)
class ImageAnnotation:
    """One image and its boxes.

    Attributes:
      image_path: absolute path of the image file.
      width, height: image size in pixels as stated by the annotation (checked against the real
        image by ``od.data.images.probe``).
      boxes: the image's boxes; empty for a negative (background-only) image.
      source: the annotation file (or ``file:line``) this record came from, for error messages.
      split: ``'train'``, ``'val'``, ``'test'`` where the source defines the split, else None.
      image_data: the encoded image bytes when the source holds them (a TFRecord); then
        ``image_path`` names the image but need not exist. None: read ``image_path``.
      size_from_image: True when the source gave no size (a VOC ``<size>`` of 0x0 or missing)
        and ``width``/``height`` were read from the image file (counted in summary.json).
    """

    image_path: Path
    width: int
    height: int
    boxes: tuple[ObjectBox, ...] = ()
    source: str = ""
    split: str | None = None
    image_data: bytes | None = field(default=None, repr=False, compare=False)
    size_from_image: bool = field(default=False, compare=False)

    @property
    def labels(self) -> list[str]:
        return [b.label for b in self.boxes]

    def replace(self, **changes) -> "ImageAnnotation":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Skipped:
    """An item left out of a dataset, with the reason, for the summary report."""

    item: str
    reason: str


@dataclass
class ReadResult:
    """What a reader returns: records, the class names in first-seen order, and skipped items."""

    records: list[ImageAnnotation]
    class_names: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
