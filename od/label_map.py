"""Label maps: ``label_map.pbtxt`` files in the Object Detection API's ``StringIntLabelMap`` format.

Format (text protobuf, from ``object_detection/protos/string_int_label_map.proto``)::

    item { id: 1 name: 'cat' display_name: 'Cat' }
    item { id: 2 name: 'dog' }

Ids start at 1; id 0 is reserved for the background class and is an error here, as it is in the
OD API. The message classes are built from a descriptor at import time with ``protobuf`` (no
``protoc`` step), and files are parsed and printed with ``google.protobuf.text_format``.
"""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from od import atomic
from od.errors import LabelMapError, undecodable_at


def _build_messages():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="od/string_int_label_map.proto", package="object_detection.protos", syntax="proto2")
    F = descriptor_pb2.FieldDescriptorProto
    kp = fdp.message_type.add(name="LabelMapItemKeypoint")
    kp.field.add(name="id", number=1, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    kp.field.add(name="label", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    item = fdp.message_type.add(name="StringIntLabelMapItem")
    item.field.add(name="name", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    item.field.add(name="id", number=2, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    item.field.add(name="display_name", number=3, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    item.field.add(name="keypoints", number=4, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                   type_name=".object_detection.protos.LabelMapItemKeypoint")
    item.field.add(name="ancestor_ids", number=5, type=F.TYPE_INT32, label=F.LABEL_REPEATED)
    item.field.add(name="descendant_ids", number=6, type=F.TYPE_INT32, label=F.LABEL_REPEATED)
    item.field.add(name="frequency", number=7, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    item.field.add(name="instance_count", number=8, type=F.TYPE_INT32, label=F.LABEL_OPTIONAL)
    lm = fdp.message_type.add(name="StringIntLabelMap")
    lm.field.add(name="item", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                 type_name=".object_detection.protos.StringIntLabelMapItem")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("object_detection.protos.StringIntLabelMap"))


StringIntLabelMap = _build_messages()

MAX_ID = 100_000
"""Largest class id accepted (the same bound as ``od.data.values.MAX_CLASS_ID``): a detector has
``max_id + 1`` outputs, so an id of 2,000,000,000 would ask for terabytes of weights."""


@dataclass(frozen=True)
class LabelMapItem:
    """One class: ``id`` >= 1, ``name`` as in the annotations, optional human ``display_name``."""

    id: int
    name: str
    display_name: str = ""

    @property
    def title(self) -> str:
        """The name to show a person: ``display_name`` if set, else ``name``."""
        return self.display_name or self.name


@dataclass(frozen=True)
class LabelMap:
    """An ordered set of classes with ids from 1 (0 is background).

    Raises:
      LabelMapError: on construction, if an id is not an integer, is < 1 or > ``MAX_ID``, a name
        is not text or is blank, or an id or name repeats.
    """

    items: tuple[LabelMapItem, ...]
    source: str = "<memory>"

    def __post_init__(self):
        seen_ids, seen_names = {}, {}
        for it in self.items:
            if isinstance(it.id, bool) or not isinstance(it.id, numbers.Integral):
                raise LabelMapError(f"{self.source}: label map id {it.id!r} (name {it.name!r}) is "
                                    "not an integer; number classes 1, 2, 3...")
            if not isinstance(it.name, str) or not it.name.strip():
                raise LabelMapError(f"{self.source}: class id {it.id} has the name {it.name!r}; "
                                    "give every class a non-blank name (text).")
            if it.id < 1:
                raise LabelMapError(
                    f"{self.source}: label map id {it.id} (name {it.name!r}) is invalid: id 0 is "
                    "reserved for the background class; number classes from 1.")
            if it.id > MAX_ID:
                raise LabelMapError(
                    f"{self.source}: label map id {it.id:,} (name {it.name!r}) is too large: a "
                    f"model has one output per id up to the largest, so od accepts ids up to "
                    f"{MAX_ID:,}. Number the classes 1, 2, 3...")
            if it.id in seen_ids:
                raise LabelMapError(f"{self.source}: id {it.id} is used by both {seen_ids[it.id]!r} "
                                    f"and {it.name!r}; give every class its own id.")
            if it.title in seen_names:
                raise LabelMapError(f"{self.source}: class {it.title!r} appears twice (ids "
                                    f"{seen_names[it.title]} and {it.id}); give each class a "
                                    "unique name or display_name.")
            seen_ids[it.id], seen_names[it.title] = it.name, it.id

    @classmethod
    def from_names(cls, names, display_names=None) -> "LabelMap":
        """Ids 1..N in the given order. ``display_names``: optional list of the same length.

        Raises:
          LabelMapError: ``display_names`` has another length, or a name is blank or repeats.
        """
        names = list(names)
        display_names = list(display_names or [""] * len(names))
        if len(display_names) != len(names):
            raise LabelMapError(f"{len(names)} class names but {len(display_names)} display "
                                "names; give one display name per class (or none).")
        return cls(tuple(LabelMapItem(i + 1, n, d) for i, (n, d) in
                         enumerate(zip(names, display_names))))

    @property
    def names(self) -> list[str]:
        return [it.name for it in self.items]

    @property
    def max_id(self) -> int:
        """Largest id; a detector needs ``max_id + 1`` outputs (ids may have gaps, as in COCO)."""
        return max((it.id for it in self.items), default=0)

    def id_of(self, name: str, *, where: str = "") -> int:
        """The id of class ``name``, matched against ``name`` then ``display_name``.

        Raises:
          LabelMapError: the class is not in the label map (the message names ``where``).
        """
        by_name = [it for it in self.items if it.name == name]
        if len(by_name) == 1:  # names may repeat (COCO's 'NA'); display names then decide
            return by_name[0].id
        for it in self.items:
            if it.display_name and it.display_name == name:
                return it.id
        where = f"{where}: " if where else ""
        raise LabelMapError(
            f"{where}unknown class {name!r}: it is not in the label map {self.source} "
            f"(classes: {', '.join(self.names[:20])}{'...' if len(self.items) > 20 else ''}). "
            "Fix the label in the annotation or add the class to the label map.")

    def item(self, class_id: int) -> LabelMapItem | None:
        for it in self.items:
            if it.id == class_id:
                return it
        return None

    def title_of(self, class_id: int) -> str:
        """Human name for ``class_id``; ``'class <id>'`` if the id is not in the map."""
        it = self.item(class_id)
        return it.title if it else f"class {class_id}"

    def to_pbtxt(self) -> str:
        msg = StringIntLabelMap()
        for it in self.items:
            m = msg.item.add(id=it.id, name=it.name)
            if it.display_name:
                m.display_name = it.display_name
        return text_format.MessageToString(msg)


def parse(text: str, source: str = "<string>") -> LabelMap:
    """Parse ``label_map.pbtxt`` text. Raises LabelMapError naming ``source`` on bad syntax or
    when it lists no class at all."""
    msg = StringIntLabelMap()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as e:
        raise LabelMapError(f"{source}: not a valid label map ({e}). Expected entries like "
                            "item { id: 1 name: 'cat' }.") from None
    items = []
    for m in msg.item:
        if not m.HasField("id"):
            raise LabelMapError(f"{source}: item {m.name!r} has no id; add 'id: N' (N >= 1).")
        if not m.name.strip() and not m.display_name.strip():
            raise LabelMapError(f"{source}: item with id {m.id} has no name; add name: '...'.")
        items.append(LabelMapItem(m.id, m.name if m.name.strip() else m.display_name,
                                 m.display_name))
    if not items:
        raise LabelMapError(f"{source}: the label map lists no classes; write one entry per "
                            "class, e.g. item { id: 1 name: 'cat' }.")
    return LabelMap(tuple(items), source=source)


def read(path: str | os.PathLike) -> LabelMap:
    """Read a ``label_map.pbtxt`` file.

    Raises:
      LabelMapError: the file is missing, not a StringIntLabelMap, or has bad ids/names.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8-sig")  # a BOM (Windows Notepad) is no text
    except OSError as e:
        raise LabelMapError(f"cannot read label map {path}: {e.strerror}.") from None
    except UnicodeDecodeError as e:
        line, bad = undecodable_at(e)
        raise LabelMapError(f"{path}:{line}: the label map is not UTF-8 text (bytes "
                            f"{bad!r} on that line). "
                            "Save it as UTF-8.") from None
    return parse(text, str(path))


def write(label_map: LabelMap, path: str | os.PathLike) -> Path:
    """Write ``label_map`` as a ``label_map.pbtxt`` file, atomically.

    Raises:
      LabelMapError: the label map has no classes (:func:`read` would refuse the file).
    """
    if not label_map.items:
        raise LabelMapError(f"label map {label_map.source} has no classes; not writing an empty "
                            f"{path} (od would refuse to read it).")
    return atomic.write_text(path, label_map.to_pbtxt())
