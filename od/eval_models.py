"""The detector ``od evaluate`` scores (``--model``): a run folder of ``od train`` (its newest
checkpoint), an export folder of ``od export`` (``format`` picks saved_model, frozen_graph,
tflite, tflite_fp16 or tflite_int8), or a single ``.tflite`` / frozen ``.pb`` file with
``label_map.pbtxt`` beside it (or ``label_map``). Every detector is a callable uint8 RGB
[H, W, 3] → :class:`od.detections.Detections` (boxes float32 [K, 4] ``[ymin, xmin, ymax, xmax]``
normalised to that image). The data side is :mod:`od.eval_inputs`, which re-exports these names.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from od import label_map as label_map_lib
from od import layout
from od.detections import Detections, detect_padded
from od.errors import ExportError, LabelMapError, OdError

MODEL_FORMATS = ("saved_model", "frozen_graph", "tflite", "tflite_fp16", "tflite_int8")
FROZEN_GRAPH = layout.FROZEN_GRAPH_FILE


class FrozenGraphModel:
    """A ``frozen_inference_graph.pb`` of ``od export`` (OD API tensor names, see
    ``od.export.run_frozen_graph``), imported once and run in one session.
    Call with uint8 RGB [H, W, 3] → Detections normalised to that image."""

    _OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")

    def __init__(self, path: str | os.PathLike):
        import tensorflow as tf

        path = Path(path)
        if not path.is_file():
            raise ExportError(f"{path}: no frozen graph; export it with `od export --format "
                              "frozen_graph`.")
        try:
            graph_def = tf.compat.v1.GraphDef.FromString(path.read_bytes())
            graph = tf.Graph()
            with graph.as_default():
                tf.compat.v1.import_graph_def(graph_def, name="")
        except Exception as e:  # protobuf DecodeError / ValueError: not a GraphDef
            raise ExportError(f"{path}: not a frozen detection graph ({e}); export one with "
                              "`od export --format frozen_graph`.") from None
        self._session = tf.compat.v1.Session(graph=graph)
        self._fetch = [f"{k}:0" for k in self._OUTPUTS]

    def __call__(self, image: np.ndarray) -> Detections:
        return detect_padded(self._detect, np.asarray(image, np.uint8))  # a 3x5000 strip

    def _detect(self, image: np.ndarray) -> Detections:
        values = self._session.run(self._fetch, {"image_tensor:0": image[None]})
        return Detections.from_outputs(dict(zip(self._OUTPUTS, values)), image.shape[1],
                                       image.shape[0])


@dataclass(frozen=True)
class Model:
    """A detector to score: ``predict`` (uint8 RGB [H, W, 3] → Detections), its label map, what
    it is (``kind``: run / export / file, ``format``), its eval settings and default out folder."""

    predict: object
    label_map: object
    path: str
    kind: str
    format: str
    min_score: float = 0.5
    iou: float = 0.5
    default_out: Path | None = None
    checkpoint: str = ""


def _labels(beside: Path, label_map, what: str):
    if label_map:
        return label_map_lib.read(label_map)
    if layout.label_map_path(beside).is_file():
        return label_map_lib.read(layout.label_map_path(beside))
    raise LabelMapError(f"{what}: no label_map.pbtxt beside it, so its class ids have no names; "
                        "put the label map it was trained with there, or pass --label-map.")


def _eval_settings(folder: Path) -> tuple[float, float]:
    from od import config as config_lib
    if (folder / layout.PIPELINE_FILE).is_file():
        cfg = config_lib.load(folder / layout.PIPELINE_FILE)
        return cfg.eval.min_score, cfg.eval.iou_threshold
    return 0.5, 0.5


def load_model(model: str | os.PathLike, format: str | None = None, label_map=None,
               checkpoint: str | None = None) -> Model:
    """Open a run folder, export folder, ``.tflite`` or frozen ``.pb`` file (module doc).
    ``checkpoint`` (best, latest or a path; None: best when ``RUN/best/`` exists, else latest)
    picks the checkpoint of a run folder and is refused for anything else.

    Labels are checked before any weights load. Raises:
      ExportError: unknown format, a format the folder lacks, not a model; LabelMapError: a
        detector without its label map; ConfigError / CheckpointError: a broken run folder.
    """
    from od.errors import ConfigError

    p = Path(model)
    if checkpoint and not layout.is_run(p):
        raise OdError(f"--checkpoint {checkpoint} picks a checkpoint of a training run; {p} is "
                      "not a run folder (pipeline.yaml + checkpoints). Leave --checkpoint out.")
    if format is not None and format not in MODEL_FORMATS:
        raise ExportError(f"unknown model format {format!r}; choose {', '.join(MODEL_FORMATS)}.")
    if p.is_file():
        if p.suffix.lower() not in (".tflite", ".pb"):
            raise ExportError(f"{p} is a file, not a model: give a run folder (od train), an "
                              "export folder (od export) or a .tflite / frozen .pb file.")
        fmt = format or ("frozen_graph" if p.suffix == ".pb" else "tflite")
        lm = _labels(p.parent, label_map, str(p))
        predict = FrozenGraphModel(p) if fmt == "frozen_graph" else _tflite(p)
        return Model(predict, lm, str(p), "file", fmt, *_eval_settings(p.parent),
                     p.parent / f"{p.stem}_eval")
    if not p.is_dir():
        raise OdError(f"{p}: no such model; give a run folder (od train), an export folder "
                      "(od export) or a .tflite / .pb file.")
    is_export = (p / layout.SAVED_MODEL_DIR).is_dir() or (p / "saved_model.pb").is_file()
    if not is_export and layout.is_run(p):
        if format not in (None, "saved_model"):
            raise ExportError(f"{p} is a training run; --format {format} needs an export folder: "
                              f"run `od export --model-dir {p} --out EXPORT --format {format}` and "
                              "evaluate EXPORT.")
        from od.model import Predictor
        if label_map:
            raise ConfigError(f"{p} is a training run; it evaluates with its own label map, "
                              "leave out --label-map.")
        pred = Predictor.from_run(p, checkpoint)
        return Model(pred, pred.label_map, str(p), "run", "checkpoint", pred.cfg.eval.min_score,
                     pred.cfg.eval.iou_threshold, p / "eval", pred.checkpoint)
    if not is_export:
        raise ExportError(f"{p}: neither a run folder (pipeline.yaml + checkpoints) nor an export "
                          "folder (saved_model/); train with `od train` or export with "
                          "`od export`.")
    fmt = format or "saved_model"
    lm = _labels(p, label_map, str(p))
    if fmt == "frozen_graph":
        predict = FrozenGraphModel(p / FROZEN_GRAPH)
    else:
        from od.detect import Detector
        predict = Detector(p, fmt)
    out = p / ("eval" if fmt == "saved_model" else f"eval_{fmt}")
    return Model(predict, lm, str(p), "export", fmt, *_eval_settings(p), out)


def _tflite(path: Path):
    from od.tflite import TFLiteModel
    return TFLiteModel(path)
