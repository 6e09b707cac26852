"""od — fine-tune a TensorFlow object detector on your own labelled images, evaluate, export, detect.

The public API, one import away (``import od``)::

    import od
    od.convert(["train=train.csv", "test=test.csv"], "DATA", format="csv", images="photos")
    od.fine_tune("configs/retinanet_mobilenetv2_fpn_256.yaml", "RUN", overrides=["data.train=DATA"])
    od.evaluate("RUN", "DATA/test*.tfrecord")["coco"]["AP50"]
    od.export("RUN", "EXPORT")
    detector = od.Detector("EXPORT")        # uint8 RGB [H, W, 3] -> od.Detections
    od.detect_folder("EXPORT", "new_photos", "OUT")

Boxes are ``[ymin, xmin, ymax, xmax]`` normalised to [0, 1] everywhere inside ``od``. Every error
caused by input is a subclass of :class:`OdError` (exported here with its subclasses).

Importing ``od`` is cheap and has no side effects: TensorFlow and Model Garden are imported by the
functions that need them, on first call. ``od.evaluate`` and ``od.export`` are the modules of
those names, made callable, so ``od.evaluate(...)`` runs :func:`od.evaluate.evaluate` while
``from od import evaluate`` / ``od.evaluate.evaluate`` keep working.
"""
from __future__ import annotations

import importlib
import sys
import types

from od.errors import (AnnotationError, CheckpointError, ConfigError, ExportError, ImageError,
                       LabelMapError, MissingImageError, OdError, UnsafePathError, ZooError)

__version__ = "0.1.0"

#: Public name -> (module, attribute); attribute None means the module itself (a callable module).
_LAZY = {
    "convert": ("od.data.convert", "convert"),
    "fine_tune": ("od.train", "fine_tune"),
    "evaluate": ("od.evaluate", None),
    "export": ("od.export", None),
    "Detector": ("od.detect", "Detector"),
    "detect_folder": ("od.detect", "detect_folder"),
    "load_image": ("od.detect", "load_image"),
    "draw_detections": ("od.visualize", "draw_detections"),
    "LabelMap": ("od.label_map", "LabelMap"),
    "Detections": ("od.detections", "Detections"),
}

__all__ = ["AnnotationError", "CheckpointError", "ConfigError", "Detections", "Detector",
           "ExportError", "ImageError", "LabelMap", "LabelMapError", "MissingImageError", "OdError", "UnsafePathError",
           "ZooError", "convert", "detect_folder", "draw_detections", "evaluate", "export",
           "fine_tune", "load_image"]


def __getattr__(name: str):
    """Import a public name on first use (PEP 562), keeping ``import od`` light."""
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'od' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _CallableModule(types.ModuleType):
    """A module whose call runs its main function (``od.evaluate(...)``, ``od.export(...)``)."""

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__name__.rsplit(".", 1)[1])(*args, **kwargs)


def _make_callable(module_name: str) -> None:
    """Let ``od.<name>(...)`` call function ``<name>`` of module ``od.<name>``; the module's
    other attributes are untouched. Called once at the end of od/evaluate.py and od/export.py."""
    sys.modules[module_name].__class__ = _CallableModule
