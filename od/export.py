"""``od export``: a trained run → SavedModel (+ optional frozen graph and TFLite), checked.

Layout of ``EXPORT/`` (written atomically: the folder appears only when complete and checked)::

    EXPORT/saved_model/            signatures:
        serving_default  images: uint8 [N, H, W, 3], any H, W (RGB)
        serving_bytes    images: string [N], encoded JPEG/PNG bytes
      outputs: detection_boxes float32 [N, K, 4] (ymin, xmin, ymax, xmax normalised to the input
               image), detection_scores float32 [N, K], detection_classes int [N, K] (label-map
               ids), num_detections int [N]
    EXPORT/frozen_inference_graph.pb   (formats 'frozen_graph') the image-tensor signature with
                                       variables folded into constants (TF1-style GraphDef)
    EXPORT/model.tflite, model_fp16.tflite, model_int8.tflite
                                   (formats 'tflite', 'tflite_fp16', 'tflite_int8') TFLite with
                                   TFLite's built-in detection post-processing op; input
                                   [1, S, S, 3] preprocessed, boxes normalised to that input
                                   (see od.tflite for the signature and od.tflite.TFLiteModel)
    EXPORT/detect_tflite.py, EXPORT/labels.txt   (with any TFLite format) a runner that needs only
                                   numpy, Pillow and LiteRT (od.lite; no TensorFlow, no od)
    EXPORT/label_map.pbtxt, EXPORT/pipeline.yaml
    EXPORT/export_check.json       each format vs the checkpoint, detections matched by class
                                   and IoU (od.detections.compare): SavedModel and frozen graph,
                                   the top 20 within 1e-3 in box and score; TFLite, detections
                                   with score >= 0.3 (max score difference, min IoU, tolerances:
                                   od.tflite.TOLERANCES)

The SavedModel holds the signatures of Model Garden's serving ``DetectionModule``
(``od.model.save_serving``: the signatures' functions only, no per-layer Keras traces and no
second trace of the module's functions); the checkpoint is the run's best or newest
(``od.layout.run_checkpoint``).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from od import atomic
from od import detections
from od import label_map as label_map_lib
from od import layout
from od import lite
from od import tflite
from od.detections import Detections
from od.errors import ExportError

FORMATS = ("saved_model", "frozen_graph", *tflite.FILES)
SIGNATURES = {"image_tensor": "serving_default", "image_bytes": "serving_bytes"}
_TOLERANCE = 1e-3  # max score and box-coordinate difference of a SavedModel/frozen graph
_TOP_K = 20  # detections compared (each side's highest-scoring)


def _sample_image(cfg) -> np.ndarray:
    """A real image for the export check: the first of the val/test/train shards."""
    import tensorflow as tf

    from od.experiment import data_folder
    from od.data import tfrecord
    from od.evaluate import decode_image

    folder = data_folder(cfg)
    for pattern in (os.path.join(folder, "test-*.tfrecord"), cfg.data.val, cfg.data.train):
        if pattern and tf.io.gfile.glob(pattern):
            raw = next(iter(tf.data.TFRecordDataset(tf.io.gfile.glob(pattern)[:1])))
            ex = tfrecord.parse_example(raw.numpy())
            return decode_image(ex.encoded)
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (cfg.model.input_size, cfg.model.input_size, 3), np.uint8)


def _compare(name: str, ref: dict, got: dict, width: int, height: int) -> dict:
    """``od.detections.compare`` of the first ``_TOP_K`` detections of two output dicts (of one
    image) within ``_TOLERANCE`` in score and box coordinates; their counts must also agree
    unless both reach ``_TOP_K``."""
    n_ref, n_got = int(ref["num_detections"][0]), int(got["num_detections"][0])
    c = detections.compare(Detections.from_outputs(ref, width, height),
                           Detections.from_outputs(got, width, height),
                           max_score_diff=_TOLERANCE, max_box_diff=_TOLERANCE, top_k=_TOP_K)
    ok = c["ok"] and (n_ref == n_got or min(n_ref, n_got) >= _TOP_K)
    return {"format": name, "num_detections": [n_ref, n_got], "max_box_diff": c["max_box_diff"],
            "max_score_diff": c["max_score_diff"], "min_matched_iou": c["min_matched_iou"],
            "ok": ok}


_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def _frozen_graph(module, path: Path) -> None:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    @tf.function
    def named(image_tensor):
        out = module.serve(image_tensor)
        return {k: tf.identity(out[k], name=k) for k in _OUTPUTS}

    fn = named.get_concrete_function(tf.TensorSpec([1, None, None, 3], tf.uint8,
                                                   name="image_tensor"))
    frozen = convert_variables_to_constants_v2(fn)
    atomic.write_bytes(path, frozen.graph.as_graph_def().SerializeToString())


def run_frozen_graph(path: str | os.PathLike, image: np.ndarray) -> dict:
    """Run a ``frozen_inference_graph.pb`` written by ``export`` on one uint8 image [H, W, 3].

    The graph has the OD API's tensor names: input ``image_tensor:0`` (uint8 [1, H, W, 3]),
    outputs ``detection_boxes:0``, ``detection_scores:0``, ``detection_classes:0``,
    ``num_detections:0``.
    """
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef.FromString(Path(path).read_bytes())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        values = sess.run([f"{k}:0" for k in _OUTPUTS], {"image_tensor:0": image[None]})
    return dict(zip(_OUTPUTS, values))


def _data_inputs(model_dir) -> list:
    """The data the run's pipeline.yaml names (shard globs, label map), which the export check
    and the tflite_int8 calibration read, so ``out`` may not be, hold or lie inside it; [] when
    pipeline.yaml cannot be read (``load_run`` then says why)."""
    from od import config as config_lib
    from od.errors import OdError

    try:
        d = config_lib.load(Path(model_dir) / layout.PIPELINE_FILE).data
    except (OdError, OSError):
        return []
    return [d.train or None, d.val or None, d.label_map or None]


def export(model_dir: str | os.PathLike, out: str | os.PathLike,
           formats=("saved_model",), calibration_images: int = tflite.CALIBRATION_IMAGES,
           checkpoint: str | None = None, overwrite: bool = False,
           verbose: bool = False) -> dict:
    """Export a checkpoint of ``model_dir`` to ``out`` (see module doc) and check it. Library
    logging (TensorFlow, the TFLite converter) goes to ``RUN/export.log`` unless ``verbose``.

    Args:
      model_dir: run folder of ``od train``.
      out: export folder (replaced atomically).
      formats: any of ``FORMATS``; ``saved_model`` is always written.
      calibration_images: at most this many training/val images calibrate ``tflite_int8``
        (>= 1; ExportError otherwise).
      overwrite: write into an existing folder that is not a previous export (only the files
        export writes are replaced; od.outputs).
      checkpoint: best, latest or a checkpoint path; None = ``RUN/best/`` when it exists, else
        the newest (od.layout.run_checkpoint).
    Returns:
      The export check (also ``export_check.json``): per format the max difference of boxes and
      scores against the in-memory model on a real image from the run's data (TFLite formats:
      ``od.tflite.compare``).
    Raises:
      ConfigError / CheckpointError: not a trained run; ExportError: unknown format, a failed
      TFLite conversion, or an exported format disagrees with the checkpoint by more than 1e-3
      (TFLite: more than ``od.tflite.TOLERANCES``). OutputError: ``out`` is, holds or lies
      inside the run folder or the data its pipeline.yaml names, or is not writable
      (od.outputs.prepare_out).
    """
    from od import logs, outputs
    outputs.prepare_out(out, inputs=[model_dir, *_data_inputs(model_dir)], command="export",
                        overwrite=overwrite)
    log_file = Path(model_dir) / "export.log" if layout.is_run(Path(model_dir)) else None
    with logs.routed(log_file, verbose):  # never a log file in a folder that is not a run
        return _export(model_dir, out, formats, calibration_images, checkpoint)


def _export(model_dir, out, formats, calibration_images: int, checkpoint) -> dict:
    import tensorflow as tf

    from od.layout import run_checkpoint
    from od.model import build_model, detection_module, load_run, restore, save_serving

    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise ExportError(f"unknown export format(s) {bad}; choose from {', '.join(FORMATS)}.")
    if "tflite_int8" in formats and (isinstance(calibration_images, bool) or not isinstance(
            calibration_images, int) or calibration_images < 1):
        raise ExportError(f"--calibration-images {calibration_images!r}: tflite_int8 is "
                          "calibrated on at least 1 training image (default "
                          f"{tflite.CALIBRATION_IMAGES}); give a whole number >= 1.")
    cfg, _ = load_run(model_dir)
    from od import fasterrcnn
    fasterrcnn.refuse_tflite(cfg, formats)
    ckpt = run_checkpoint(model_dir, checkpoint)
    from od.experiment import to_experiment
    params = to_experiment(cfg)  # built once for the SavedModel, frozen graph and TFLite files
    model = build_model(cfg, params)
    restore(model, ckpt)  # the moving averages, where the run kept them (train.ema_decay)
    module = detection_module(cfg, model, batch_size=None, params=params)
    image = _sample_image(cfg)
    checks = []
    with atomic.atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        save_serving(module, SIGNATURES, tmp / layout.SAVED_MODEL_DIR)
        ref = {k: v.numpy() for k, v in module.serve(tf.constant(image[None])).items()}
        loaded = tf.saved_model.load(str(tmp / layout.SAVED_MODEL_DIR))
        got = loaded.signatures["serving_default"](tf.constant(image[None]))
        size = (image.shape[1], image.shape[0])
        checks.append(_compare("saved_model", ref, {k: v.numpy() for k, v in got.items()}, *size))
        encoded = tf.io.encode_png(image)
        got = loaded.signatures["serving_bytes"](tf.reshape(encoded, [1]))
        checks.append(_compare("saved_model:serving_bytes", ref,
                               {k: v.numpy() for k, v in got.items()}, *size))
        if "frozen_graph" in formats:
            _frozen_graph(module, tmp / layout.FROZEN_GRAPH_FILE)
            checks.append(_compare("frozen_graph", ref,
                                   run_frozen_graph(tmp / layout.FROZEN_GRAPH_FILE, image), *size))
        ref_det = Detections.from_outputs(ref, *size)
        for fmt, path in tflite.write(cfg, ckpt, tmp, formats, calibration_images,
                                      params=params).items():
            checks.append(tflite.check(fmt, path, image, ref_det, cfg.model.nms_iou_threshold))
        for name in (layout.LABEL_MAP_FILE, layout.PIPELINE_FILE):
            shutil.copy(Path(model_dir) / name, tmp / name)
        if any(f in tflite.FILES for f in formats):  # a runner for boards without TensorFlow
            lite.write_runner(tmp, label_map_lib.read(layout.label_map_path(tmp)))
        report = {"checkpoint": ckpt, "image_shape": list(image.shape), "checks": checks}
        failed = [c for c in checks if not c["ok"]]
        if failed:
            raise ExportError(f"exported model disagrees with the checkpoint: "
                              f"{json.dumps(failed)}; nothing was written to {out}.")
        atomic.write_json(tmp / "export_check.json", report)
    return report


# `import od; od.export(...)` calls export() above (see od/__init__.py).
from od import _make_callable  # noqa: E402

_make_callable(__name__)
