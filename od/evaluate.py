"""``od evaluate``: COCO metrics of a trained run on TFRecord shards, with pycocotools.

Each image is decoded as in training (``tf.io.decode_image``, 3 channels), run through the model
at its input size by Model Garden's serving module (aspect ratio kept), and its boxes are mapped
back to the original image, so AP is computed in original image pixels. Model Garden's own COCO
evaluator is not used (it breaks on NumPy 2). Outputs in ``RUN/eval/`` (or ``out``):

- ``metrics.json``: AP, AP50, AP75, APs/m/l, AR, per-class AP, the precision/recall/F1 table per
  score threshold, the best threshold, and the confusion matrix (od.metrics);
- PNG plots: PR curves, confusion matrix, precision/recall/F1 vs threshold (od.plots).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from od.detections import Detections, GroundTruth
from od.errors import OdError


def decode_image(encoded: bytes) -> np.ndarray:
    """Decode ``image/encoded`` bytes as training does (``tf.io.decode_image``, 3 channels):
    uint8 RGB [H, W, 3]."""
    import tensorflow as tf
    return tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()


def run_on_records(predictor, pattern: str, max_images: int = 0, progress: bool = False
                   ) -> tuple[list[GroundTruth], dict[int, Detections]]:
    """Run ``predictor`` on every image of the TFRecord shards matching ``pattern``.

    Returns:
      (ground truth per image, {image_id: Detections}); image ids are 1..N in file order.
    Raises:
      OdError: no shard matches ``pattern``.
    """
    from tqdm import tqdm

    from od.data import tfrecord

    examples = tfrecord.read(pattern)
    if not examples:
        raise OdError(f"no TFRecord examples match {pattern!r}; check the path (e.g. "
                      "'DATA/test*.tfrecord').")
    if max_images:
        examples = examples[:max_images]
    gts, dets = [], {}
    for k, ex in enumerate(tqdm(examples, desc="evaluate", unit="img", disable=not progress)):
        image = decode_image(ex.encoded)
        h, w = image.shape[:2]
        r = ex.record
        gts.append(GroundTruth.make(k + 1, r.width or w, r.height or h,
                                    [b.yxyx for b in r.boxes], ex.class_ids,
                                    [b.is_crowd for b in r.boxes], name=str(r.image_path)))
        dets[k + 1] = predictor(image)
    return gts, dets


def coco_on_records(predictor, pattern: str, label_map, max_images: int = 0) -> dict:
    """COCO metrics (od.metrics.coco_metrics) of ``predictor`` on the shards in ``pattern``."""
    from od import metrics

    gts, dets = run_on_records(predictor, pattern, max_images)
    return metrics.coco_metrics(gts, dets, label_map)


def evaluate(model_dir: str | os.PathLike, data: str, out: str | os.PathLike | None = None, *,
             max_images: int = 0, progress: bool = True, checkpoint: str | None = None,
             overwrite: bool = False) -> dict:
    """Evaluate a checkpoint of a run (default: ``RUN/best/`` if it exists, else the newest;
    ``checkpoint``: best, latest or a path) on TFRecord shards.

    Args:
      model_dir: run folder of ``od train``.
      data: glob of shards (``'DATA/test*.tfrecord'``) or a data folder (its test split).
      out: output folder; default ``RUN/eval``.
      max_images: evaluate only the first N images (0 = all).
    Returns:
      The report dict written to ``metrics.json`` (keys ``coco``, ``thresholds``,
      ``best_threshold``, ``confusion_matrix``, ``plots``, ``checkpoint``, ``data``).
    Raises:
      ConfigError / CheckpointError: not a trained run folder; LabelMapError: its label map
        does not fit its checkpoint; OdError: no data.
    """
    from od import atomic, metrics, outputs, plots
    from od.config import shard_pattern
    from od.model import Predictor

    pattern = shard_pattern(str(data), "test")
    out_dir = Path(out) if out else Path(model_dir) / "eval"  # the default is od's own folder
    outputs.prepare_out(out_dir, inputs=[model_dir, pattern], command="evaluate",
                        overwrite=overwrite or not out, inside_ok=[model_dir])
    predictor = Predictor.from_run(model_dir, checkpoint)
    cfg, lm = predictor.cfg, predictor.label_map
    gts, dets = run_on_records(predictor, pattern, max_images, progress)
    report = metrics.evaluation_report(gts, dets, lm, iou=cfg.eval.iou_threshold,
                                       min_score=cfg.eval.min_score)
    out = outputs.start_output(out_dir, "evaluate")
    report["plots"] = {k: str(v) for k, v in plots.write_report(report, out).items()}
    report["checkpoint"] = predictor.checkpoint
    report["data"] = pattern
    atomic.write_json(out / "metrics.json", report)
    outputs.write_marker(out, "evaluate", [Path(v).name for v in report["plots"].values()])
    return report


# `import od; od.evaluate(...)` calls evaluate() above (see od/__init__.py).
from od import _make_callable  # noqa: E402

_make_callable(__name__)
