"""What ``od evaluate`` scores and with what: the labelled images and the detector.

Data (``--data``): TFRecord shards, or any annotation source ``od data convert`` reads (a VOC
folder or devkit, a COCO JSON or Roboflow folder, a pixel CSV, an AutoML CSV), read directly by
the same readers (:func:`od.data.convert.read_annotations`) and checked by the same validation
(:func:`od.data.validate.check_boxes`, :func:`od.data.validate.check_size`); nothing is converted.
Class names are matched to the model's label map by name (then display name); boxes of classes the
model does not know are counted and reported (``unknown_classes``), not scored.

Model (``--model``): a run folder of ``od train`` (its newest checkpoint), an export folder of
``od export`` (``format`` picks saved_model, frozen_graph, tflite, tflite_fp16 or tflite_int8), or
a single ``.tflite`` / frozen ``.pb`` file with ``label_map.pbtxt`` beside it (or ``label_map``).
Every detector is a callable uint8 RGB [H, W, 3] → :class:`od.detections.Detections`.
"""
from __future__ import annotations

import glob
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from od import label_map as label_map_lib
from od import layout
from od.detections import Detections, GroundTruth, detect_padded
from od.errors import AnnotationError, ExportError, LabelMapError, OdError

DATA_FORMATS = ("tfrecord", "voc", "coco", "csv", "automl")
MODEL_FORMATS = ("saved_model", "frozen_graph", "tflite", "tflite_fp16", "tflite_int8")
FROZEN_GRAPH = layout.FROZEN_GRAPH_FILE
_MAX_LISTED = 20


# ---- data -------------------------------------------------------------------------------------
def detect_format(path: str | os.PathLike) -> str:
    """Guess the annotation format of ``path`` (one of ``DATA_FORMATS``).

    TFRecord files/folders/globs; a ``.json`` file or a folder with COCO JSON (Roboflow layout);
    a ``.csv`` file (header with ``filename`` → pixel CSV, else AutoML) or a folder with
    ``*_labels.csv`` / ``automl.csv``; a folder with ``*.xml`` or a VOC devkit.
    Raises:
      AnnotationError: nothing recognisable at ``path``; the message names ``--data-format``.
    """
    from od.data.tfrecord import record_files

    p = Path(path)
    if glob.has_magic(str(path)) and not glob.glob(str(path)):
        raise AnnotationError(f"--data {path}: the pattern matches no file; check the folder and "
                              "the name (e.g. 'DATA/test-*.tfrecord').")
    if p.is_file() and p.suffix.lower() == ".json":
        return "coco"
    if p.is_file() and p.suffix.lower() == ".csv":
        with open(p, encoding="utf-8-sig", errors="replace") as f:
            head = f.readline().lower()
        return "csv" if "filename" in head and "xmin" in head else "automl"
    try:
        record_files(p)
        return "tfrecord"
    except OdError:
        pass
    if p.is_dir():
        if (p / "automl.csv").is_file():
            return "automl"
        if any(p.glob("*_labels.csv")):
            return "csv"
        if any(p.glob("*.xml")) or (p / "Annotations").is_dir():
            return "voc"
        if any(p.glob("*.json")) or any(p.glob("*/_annotations.coco.json")):
            return "coco"
    raise AnnotationError(f"{p}: no TFRecords or annotations recognised there; give "
                          f"--data-format ({', '.join(DATA_FORMATS)}) or check the path.")


def check_options(min_score, max_images) -> None:
    """Raise OdError for a ``min_score`` outside [0, 1] (NaN included) or a negative
    ``max_images``, before anything loads."""
    if min_score is not None and not 0.0 <= float(min_score) <= 1.0:
        raise OdError(f"--min-score {min_score} must be in [0, 1] (the confusion matrix's score "
                      "threshold; default: the model's eval.min_score).")
    if max_images is None or int(max_images) != max_images or int(max_images) < 0:
        raise OdError(f"--max-images {max_images} must be a whole number >= 0 (0: all images).")


@dataclass(frozen=True)
class EvalData:
    """Labelled images ready to score.

    Attributes:
      records: the ImageAnnotations scored, in source order (image id k+1 for records[k]).
      groundtruth: one GroundTruth per record, class ids from the model's label map; boxes of
        classes the model does not know are left out (counted in ``unknown_classes``).
      source, format, split: where the images came from (``split`` None: all of them).
      unknown_classes: {data class name: boxes} for names the model's label map lacks.
      skipped: items the reader left out (``{"item", "reason"}``).
    """

    records: list
    groundtruth: list[GroundTruth]
    source: str
    format: str
    split: str | None
    unknown_classes: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)

    def image(self, k: int) -> np.ndarray:
        """Decoded uint8 RGB [H, W, 3] of ``records[k]`` as training sees it."""
        return load_image(self.records[k])

    def summary(self) -> dict:
        return {"source": self.source, "format": self.format, "split": self.split,
                "images": len(self.records),
                "boxes": sum(len(g.class_ids) for g in self.groundtruth),
                "unknown_classes": dict(self.unknown_classes),
                "unknown_class_boxes": sum(self.unknown_classes.values()),
                "skipped": self.skipped}


def load_image(record) -> np.ndarray:
    """uint8 RGB [H, W, 3] of an ImageAnnotation: stored bytes (TFRecord) decoded as training
    does (``tf.io.decode_image``); a file decoded upright by ``od.data.images.decode_rgb``.

    Raises:
      ImageError: missing or undecodable image (named).
    """
    if record.image_data is not None:
        from od.evaluate import decode_image
        return decode_image(record.image_data)
    from od.data.images import decode_rgb
    return np.asarray(decode_rgb(record.image_path))


def _pick_split(records, split: str | None, source) -> tuple[list, str | None]:
    present = sorted({r.split for r in records if r.split})
    if split is None:
        if not present:
            return records, None
        split = present[0] if len(present) == 1 else "test"
    if not present:
        raise AnnotationError(f"{source}: the source defines no train/val/test split, so --split "
                              f"{split} cannot pick one; leave --split out to score all "
                              f"{len(records)} images.")
    chosen = [r for r in records if r.split == split]
    if not chosen:
        raise AnnotationError(f"{source}: no images in split {split!r} (splits present: "
                              f"{', '.join(present)}); pick one with --split.")
    return chosen, split


def _validate(records, box_policy: str) -> list:
    """check_boxes and, for image files, check_size against the image header (as convert)."""
    from od.data.convert import InvalidDataError
    from od.data.images import probe
    from od.data.validate import check_boxes, check_size
    from od.errors import ImageError

    checked, problems = [], []
    for r in records:
        fixed, probs, _ = check_boxes(r, None, box_policy)
        if r.image_data is not None and not (r.width and r.height):  # OD API records may omit it
            from PIL import Image
            try:
                w, h = Image.open(io.BytesIO(r.image_data)).size
                fixed = fixed.replace(width=w, height=h)
            except (OSError, ValueError) as e:
                probs = probs + [f"{r.source}: the stored image cannot be decoded ({e})."]
        elif r.image_data is None:
            try:
                w, h = probe(r.image_path)
                size = check_size(r, w, h) if r.width and r.height else None
                fixed = fixed if r.width and r.height else fixed.replace(width=w, height=h)
                probs = probs + ([size.message] if size else [])
            except ImageError as e:
                probs = probs + [str(e)]
        problems.extend(p if isinstance(p, str) else p.message for p in probs)
        checked.append(fixed)
    if problems:
        listed = "\n  ".join(problems[:_MAX_LISTED])
        more = len(problems) - _MAX_LISTED
        raise InvalidDataError(f"{len(problems)} invalid item(s) in the evaluation data; nothing "
                               f"was scored:\n  {listed}"
                               + (f"\n  ... and {more} more" if more > 0 else "")
                               + "\nFix them (or pass --clip-boxes for boxes outside the image).")
    return checked


def _class_id(lm, name: str) -> int | None:
    try:
        return lm.id_of(name)
    except LabelMapError:
        return None


def read_data(data: str | os.PathLike, label_map, *, format: str | None = None,
              split: str | None = None, images=None, box_policy: str = "error",
              max_images: int = 0) -> EvalData:
    """Read, validate and class-match the evaluation images (module doc).

    Args:
      data: TFRecord file/folder/glob or annotation source.
      label_map: the model's od.label_map.LabelMap; data classes are matched to it by name.
      format: one of ``DATA_FORMATS``; None: :func:`detect_format`.
      split: 'train', 'val' or 'test' where the source has splits; None: the only split, else
        'test'; a source without splits is scored whole.
      images: images folder for an annotation source (as ``od data convert --images``).
      box_policy: 'error' or 'clip' (``od.data.validate``).
      max_images: score only the first N images (0 = all).
    Raises:
      AnnotationError: unrecognised or empty source, missing split; InvalidDataError: invalid
        boxes or image sizes (all listed); LabelMapError: no data class is in the label map.
    """
    from od.data.convert import read_annotations

    format = format or detect_format(data)
    if format not in DATA_FORMATS:
        raise AnnotationError(f"unknown data format {format!r}; choose {', '.join(DATA_FORMATS)}.")
    source = Path(data)
    if format == "tfrecord" and source.is_dir():  # an `od data convert` folder: read one split
        shards = source / f"{split or 'test'}-*.tfrecord"
        source = shards if glob.glob(str(shards)) else source
    read = read_annotations(str(source), format, images)
    if not read.records:
        raise AnnotationError(f"{data}: the {format} source holds no images; nothing to evaluate.")
    records, split = _pick_split(read.records, split, data)
    if max_images:
        records = records[:max_images]
    records = _validate(records, box_policy)
    names = Counter(b.label for r in records for b in r.boxes)
    ids = {n: _class_id(label_map, n) for n in names}
    unknown = {n: c for n, c in sorted(names.items()) if ids[n] is None}
    if names and len(unknown) == len(names):
        raise LabelMapError(
            f"{data}: none of the data's classes ({', '.join(sorted(names)[:_MAX_LISTED])}) is in "
            f"the model's label map {label_map.source} ({', '.join(label_map.names[:_MAX_LISTED])})"
            "; evaluate with a model trained on these classes, or fix the class names.")
    gts = []
    for k, r in enumerate(records):
        kept = [b for b in r.boxes if ids[b.label] is not None]
        gts.append(GroundTruth.make(k + 1, r.width, r.height, [b.yxyx for b in kept],
                                    [ids[b.label] for b in kept], [b.is_crowd for b in kept],
                                    name=str(r.image_path)))
    skipped = [{"item": s.item, "reason": s.reason} for s in read.skipped]
    return EvalData(records, gts, str(data), format, split, unknown, skipped)


# ---- models -----------------------------------------------------------------------------------
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
            raise ExportError(f"{path}: not a frozen detection graph ({e}).") from None
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
