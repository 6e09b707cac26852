"""TFLite export of a trained run (float32, float16 weights, full-integer int8), checked.

Files, written by ``od.export`` inside its atomic ``EXPORT/`` folder (``FILES``)::

    model.tflite        float32 weights and activations            (format 'tflite')
    model_fp16.tflite   float16 weights, float32 activations       (format 'tflite_fp16')
    model_int8.tflite   int8 weights and activations (integer-only  (format 'tflite_int8')
                        builtin ops), float32 input/output tensors; post-training quantisation
                        calibrated on up to 100 training/val images of the run

They are made with Model Garden's own machinery: the run's RetinaNet is rebuilt with
``detection_generator.nms_version = 'tflite'`` (its post-processing becomes TFLite's built-in
``TFLite_Detection_PostProcess`` op: no Flex ops), wrapped in ``DetectionModule`` with
``input_type='tflite'``, saved, and converted by ``export_tflite_lib.convert_tflite_model`` with
quant_type None / 'fp16' / 'int8_full_fp32_io'. The op runs its fast, class-agnostic NMS (one
class per box) with the run's ``model.nms_iou_threshold``, ``score_threshold`` and
``max_detections`` (K). Not its per-class ``use_regular_nms``: in TF 2.20 that path skips a class
whenever the interpreter has more than one thread (its worker loop pre-increments the shared class
counter). So where boxes of different classes overlap, the SavedModel's per-class NMS keeps both
and TFLite keeps the higher-scoring one; ``compare`` allows for exactly that.

Model Garden's graph clips the decoded boxes to the S×S input before NMS; the op runs NMS on the
boxes as it decodes them. Left so, two boxes crossing the input's edge overlap less in TFLite,
which kept low-scoring boxes the SavedModel's NMS removes (92 of the 200 raccoon photos got such
boxes scoring >= 0.05, e.g. a box over the whole photo at 0.06 beside the raccoon). So the float
and fp16 files decode, clip and encode the boxes again before the op (``_module``), in Model
Garden's own box ops; the int8 file keeps the op's own decoding, since in 8 bits that round trip
(exp, log) would cost box precision, and its low-scoring boxes at the edge can still differ.

Signature ``serving_default`` of every file (S = ``model.input_size``):

- input ``inputs`` float32 [1, S, S, 3] (all three files): the RGB image resized keeping its
  aspect ratio to fit S×S, normalised per channel as ``(pixel - MEAN_RGB) / STDDEV_RGB`` (Model
  Garden's ImageNet mean/std; values about -2.1..2.6) and zero-padded at the bottom/right.
- outputs, all float32: ``detection_boxes`` [1, K, 4] (ymin, xmin, ymax, xmax normalised to the
  S×S input, not to the image), ``detection_classes`` [1, K] (label-map ids; 0 is the background
  column, never trained positive, dropped here), ``detection_scores`` [1, K] (in [0, 1], sorted
  descending), ``num_detections`` [1] (valid rows).

``preprocess`` builds the input and ``to_image_boxes`` maps boxes back to the original image
(divide by the resize scale, as Model Garden's serving module does); ``TFLiteModel`` does both, so
it returns :class:`od.detections.Detections` normalised to the image like the SavedModel.
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from od import atomic
from od import detections
from od.detections import Detections, detect_padded
from od.errors import ExportError

FILES = {"tflite": "model.tflite", "tflite_fp16": "model_fp16.tflite",
         "tflite_int8": "model_int8.tflite"}
QUANT_TYPES = {"tflite": None, "tflite_fp16": "fp16", "tflite_int8": "int8_full_fp32_io"}
CLIP_BEFORE_NMS = ("tflite", "tflite_fp16")  # formats whose boxes are clipped before NMS
#: Check tolerances per format: (max score difference, min IoU of matched boxes).
TOLERANCES = {"tflite": (1e-2, 0.95), "tflite_fp16": (1e-2, 0.95), "tflite_int8": (0.15, 0.7)}
CHECK_MIN_SCORE = 0.3  # detections compared: score >= this in either model
CALIBRATION_IMAGES = 100


def preprocess(image: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 RGB [H, W, 3] → (float32 input [1, S, S, 3], image_info float32 [4, 2]).

    Exactly Model Garden's serving preprocessing (``DetectionModule._build_inputs``); image_info
    is ``[[H, W], [S, S], [y_scale, x_scale], [0, 0]]`` (scale = resized / original side).
    """
    import tensorflow as tf
    from official.vision.ops import preprocess_ops

    x = preprocess_ops.normalize_image(tf.cast(image, tf.float32), offset=preprocess_ops.MEAN_RGB,
                                       scale=preprocess_ops.STDDEV_RGB)
    x, info = preprocess_ops.resize_and_crop_image(x, [size, size], padded_size=[size, size])
    return x.numpy()[None], info.numpy()


def to_image_boxes(boxes: np.ndarray, image_info: np.ndarray, size: int) -> np.ndarray:
    """Boxes [K, 4] normalised to the S×S input → normalised to the original image, clipped."""
    from official.vision.ops import box_ops

    pixels = box_ops.denormalize_boxes(np.asarray(boxes, np.float32), [size, size])
    pixels = pixels / np.tile(image_info[2], 2)
    return np.clip(box_ops.normalize_boxes(pixels, image_info[0]).numpy(), 0.0, 1.0)


class TFLiteModel:
    """A ``.tflite`` written by ``write``, run with ``tf.lite.Interpreter`` on CPU.

    Call with uint8 RGB [H, W, 3] → Detections normalised to that image (module doc).
    Raises ExportError if the file is missing or not such a model.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int | None = None):
        import tensorflow as tf

        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"{self.path}: no such TFLite file; export it with `od export "
                              "--format tflite` (or tflite_fp16 / tflite_int8).")
        try:
            with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated" (LiteRT)
                warnings.simplefilter("ignore", UserWarning)
                interpreter = tf.lite.Interpreter(model_path=str(self.path),
                                                  num_threads=num_threads or os.cpu_count())
            self._run = interpreter.get_signature_runner("serving_default")
            self._input = self._run.get_input_details()["inputs"]
        except (ValueError, RuntimeError, KeyError) as e:
            raise ExportError(f"{self.path}: not a detector written by `od export --format "
                              f"tflite` ({e}); re-export it.") from None
        self.input_size = int(self._input["shape"][1])

    def raw(self, x: np.ndarray) -> dict:
        """The signature's outputs (module doc) for a preprocessed input [1, S, S, 3]."""
        return self._run(inputs=np.asarray(x, np.float32))

    def __call__(self, image: np.ndarray) -> Detections:
        return detect_padded(self._detect, np.asarray(image, np.uint8))  # a 3x5000 strip

    def _detect(self, image: np.ndarray) -> Detections:
        x, info = preprocess(image, self.input_size)
        out = self.raw(x)
        n = int(out["num_detections"][0])
        classes = out["detection_classes"][0, :n].astype(np.int32)
        keep = classes > 0
        boxes = to_image_boxes(out["detection_boxes"][0, :n][keep], info, self.input_size)
        return Detections.make(boxes, out["detection_scores"][0, :n][keep], classes[keep],
                               image.shape[1], image.shape[0])


def calibration_files(cfg) -> list[Path]:
    """The run's TFRecord shards that calibrate int8: data.train, then data.val.

    Raises:
      ExportError: none exists (e.g. the data folder was moved).
    """
    from od.data import tfrecord
    from od.errors import AnnotationError

    files = []
    for pattern in (cfg.data.train, cfg.data.val):
        try:
            files += tfrecord.record_files(pattern) if pattern else []
        except AnnotationError:
            pass
    if not files:
        relative = bool(cfg.data.train) and "://" not in cfg.data.train and not os.path.isabs(
            cfg.data.train)
        hint = (f" It is a relative path (a run trained before od stored them absolute), read "
                f"from {os.getcwd()}: run od export from the folder training ran in, or write "
                "the absolute path into pipeline.yaml." if relative else "")
        raise ExportError(f"tflite_int8 is calibrated on the run's training images, but "
                          f"data.train = {cfg.data.train!r} (pipeline.yaml) matches no TFRecord; "
                          f"restore that data folder or export without tflite_int8.{hint}")
    return files


class _CalibrationTask:
    """Model Garden's ``task`` hook of ``export_tflite_lib.representative_dataset``: its
    ``build_inputs`` gives (input [1, S, S, 3], dummy label) for up to ``limit`` images of
    ``files``, decoded as in training (``od.evaluate.decode_image``), preprocessed as in
    inference (``preprocess``)."""

    def __init__(self, files: list[Path], size: int, limit: int):
        self._files, self._size, self._limit = files, size, limit

    def _inputs(self):
        from od.data import tfrecord, tfrecord_io
        from od.evaluate import decode_image

        count = 0
        for path in self._files:
            for raw in tfrecord_io.iter_records(path):
                if count >= self._limit:
                    return
                image = decode_image(tfrecord.parse_example(raw, str(path)).encoded)
                yield preprocess(image, self._size)[0], 0
                count += 1

    def build_inputs(self, params=None):
        import tensorflow as tf

        return tf.data.Dataset.from_generator(self._inputs, output_signature=(
            tf.TensorSpec([1, self._size, self._size, 3], tf.float32), tf.TensorSpec([], tf.int32)))


def _module(params, size: int, clip_before_nms: bool):
    """Model Garden's ``DetectionModule`` for ``input_type='tflite'``; with ``clip_before_nms``
    its RetinaNet clips the decoded boxes to the S×S input before TFLite's NMS op, as Model
    Garden's graph forms do (module doc)."""
    import tensorflow as tf
    from official.vision.modeling.layers import detection_generator
    from official.vision.ops import box_ops
    from official.vision.serving import detection

    class ClipThenNMS(detection_generator.MultilevelDetectionGenerator):
        """Decode each level's boxes as Model Garden does (``box_ops.decode_boxes``), clip them
        to ``image_shape`` (``box_ops.clip_boxes``; for TFLite inputs Model Garden's ``serve``
        passes the S×S input) and encode them again (``box_ops.encode_boxes``) for the op."""

        def __call__(self, raw_boxes, raw_scores, anchor_boxes, image_shape, raw_attributes=None):
            weights = self.get_config()["box_coder_weights"]
            clipped = {}
            for level, raw in raw_boxes.items():
                shape = tf.shape(raw)
                anchors = tf.reshape(anchor_boxes[level], [1, -1, 4])
                boxes = box_ops.decode_boxes(tf.reshape(raw, [shape[0], -1, 4]), anchors, weights)
                boxes = box_ops.clip_boxes(boxes, image_shape[:, None, :])
                clipped[level] = tf.reshape(box_ops.encode_boxes(boxes, anchors, weights), shape)
            return super().__call__(clipped, raw_scores, anchor_boxes, image_shape, raw_attributes)

    module = detection.DetectionModule(params, batch_size=1, input_image_size=[size, size],
                                       input_type="tflite")
    if clip_before_nms:
        model = module.model
        model._detection_generator = ClipThenNMS(**model.detection_generator.get_config())
    return module


def tflite_experiment(cfg, params=None):
    """The run's Model Garden ExperimentConfig with TFLite post-processing (module doc): a copy of
    ``params`` (the command's ExperimentConfig of ``cfg``) when given, else built here."""
    import copy

    from official.vision.configs import common

    from od.experiment import to_experiment

    params = copy.deepcopy(params) if params is not None else to_experiment(cfg)
    m = cfg.model
    gen = params.task.model.detection_generator
    gen.nms_version = "tflite"
    gen.tflite_post_processing = common.TFLitePostProcessingConfig(
        max_detections=m.max_detections, max_classes_per_detection=1, use_regular_nms=False,
        nms_score_threshold=m.score_threshold, nms_iou_threshold=m.nms_iou_threshold)
    # the op's boxes are in input pixels; DetectionModule.serve divides them by S and clips
    params.task.export_config.output_normalized_coordinates = True
    return params


def write(cfg, checkpoint: str, folder: str | os.PathLike, formats,
          calibration_images: int = CALIBRATION_IMAGES, params=None) -> dict[str, Path]:
    """Write ``FILES[f]`` into ``folder`` for each TFLite format ``f`` in ``formats``.

    Args:
      cfg: the run's resolved PipelineConfig; checkpoint: checkpoint prefix to export.
      calibration_images: at most this many images calibrate int8 (``calibration_files``).
    Returns:
      {format: path written}.
    Raises:
      CheckpointError: the checkpoint does not fit; ExportError: conversion failed, or no
        calibration images.
    """
    from official.vision.serving import export_tflite_lib

    from od.model import restore, save_serving

    formats = [f for f in FILES if f in formats]
    if not formats:
        return {}
    size = cfg.model.input_size
    files = calibration_files(cfg) if "tflite_int8" in formats else []
    params = tflite_experiment(cfg, params)
    written = {}
    for clip in (True, False):  # the float files clip before NMS, int8 does not (module doc)
        group = [f for f in formats if (f in CLIP_BEFORE_NMS) == clip]
        if not group:
            continue
        module = _module(params, size, clip)
        restore(module.model, checkpoint)  # the generator holds no weights
        with tempfile.TemporaryDirectory(dir=folder, prefix=".tflite_saved_model") as sm:
            save_serving(module, {"tflite": "serving_default"}, sm)
            for fmt in group:
                try:
                    data = export_tflite_lib.convert_tflite_model(
                        saved_model_dir=sm, quant_type=QUANT_TYPES[fmt], params=params,
                        task=_CalibrationTask(files, size, calibration_images),
                        calibration_steps=calibration_images)
                except Exception as e:  # the converter raises ConverterError, ValueError, ...
                    raise ExportError(f"{FILES[fmt]}: TFLite conversion ({fmt}) of {checkpoint} "
                                      f"failed: {e}. Export the other formats without {fmt}."
                                      ) from None
                written[fmt] = atomic.write_bytes(Path(folder) / FILES[fmt], data)
    return written


def compare(name: str, ref: Detections, got: Detections, min_score: float = CHECK_MIN_SCORE,
            nms_iou: float = 0.5) -> dict:
    """Match the confident detections of ``ref`` (SavedModel) and ``got`` (TFLite).

    ``od.detections.compare`` with ``TOLERANCES[name]`` (max score difference, min IoU of matched
    boxes): each detection with score >= ``min_score`` in either model is paired with the
    same-class detection of the other model of highest IoU. A reference detection without a
    partner that overlaps (IoU > ``nms_iou``, the run's NMS threshold) a TFLite detection of
    another class scoring at least as high was removed by TFLite's class-agnostic NMS: counted in
    ``suppressed_by_class_agnostic_nms`` and not compared. Boxes of zero area are left out.
    Returns that report with ``format`` and ``min_score``.
    """
    max_diff, min_iou = TOLERANCES[name]
    return {"format": name, "min_score": min_score,
            **detections.compare(ref, got, max_score_diff=max_diff, min_iou=min_iou,
                                 min_score=min_score, nms_iou=nms_iou)}


def check(name: str, path: str | os.PathLike, image: np.ndarray, ref: Detections,
          nms_iou: float = 0.5) -> dict:
    """``compare`` the .tflite at ``path`` with the reference detections on ``image``."""
    return {**compare(name, ref, TFLiteModel(path)(image), nms_iou=nms_iou),
            "file": Path(path).name, "bytes": Path(path).stat().st_size}


def latency_ms(path: str | os.PathLike, image: np.ndarray, runs: int = 20,
               num_threads: int | None = None) -> float:
    """Median milliseconds of one ``invoke`` of the .tflite on a preprocessed ``image`` (CPU,
    ``num_threads`` default all cores; preprocessing and box mapping excluded)."""
    model = TFLiteModel(path, num_threads)
    x = preprocess(np.asarray(image, np.uint8), model.input_size)[0]
    model.raw(x)  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.raw(x)
        times.append((time.perf_counter() - t) * 1000.0)
    return float(np.median(times))
