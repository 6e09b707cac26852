"""The TFLite runner ``od export`` writes beside the ``.tflite`` files, for boards without
TensorFlow: ``detect_tflite.py`` (this package's module of that name, copied verbatim; it imports
only numpy, Pillow and LiteRT) and ``labels.txt`` (line k: the name of class id k; line 0 and ids
missing from the label map: ``???``)."""
from __future__ import annotations

import os
from pathlib import Path

from od import atomic

RUNNER = Path(__file__).with_name("detect_tflite.py")


def labels_text(label_map) -> str:
    """``labels.txt`` of a :class:`od.label_map.LabelMap`."""
    names = ["???"] * (label_map.max_id + 1)
    for class_id in range(1, label_map.max_id + 1):
        if label_map.item(class_id) is not None:
            names[class_id] = label_map.title_of(class_id)
    return "\n".join(names) + "\n"


def write_runner(folder: str | os.PathLike, label_map) -> list[Path]:
    """Write ``detect_tflite.py`` and ``labels.txt`` into ``folder`` (atomically); their paths."""
    folder = Path(folder)
    return [atomic.write_text(folder / "detect_tflite.py", RUNNER.read_text(encoding="utf-8")),
            atomic.write_text(folder / "labels.txt", labels_text(label_map))]
