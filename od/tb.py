"""TensorBoard images of an evaluation during training, next to its AP scalars.

At each periodic evaluation ``od train`` calls :func:`write_eval_summaries`, which adds to the
run's ``eval/`` TensorBoard log (tab *Images*):

- ``eval/predictions``: a grid of the first few validation images with ground truth (green) and
  detections with score >= ``min_score`` (red), so a user sees what the model finds at that step;
- ``eval/pr_curves``: the per-class precision-recall curves (od.plots.plot_pr_curves), computed
  from the same detections by pycocotools.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

NUM_IMAGES = 4


def write_eval_summaries(writer, step: int, groundtruth, detections, label_map, data: str,
                         min_score: float = 0.5, num_images: int = NUM_IMAGES) -> None:
    """Write the prediction grid and the PR-curve plot at ``step`` (module doc).

    Args:
      writer: a ``tf.summary`` writer (the run's ``eval/`` log).
      step: training step.
      groundtruth: list of GroundTruth, image ids 1..N in the order of the TFRecord examples of
        ``data`` (as :func:`od.evaluate.run_on_records` returns them).
      detections: {image_id: Detections} of the same images.
      label_map: the run's LabelMap.
      data: the validation shard glob the images come from.
      min_score: detections below this score are not drawn.
      num_images: pictures in the grid.
    """
    import tensorflow as tf

    from od import metrics, plots
    from od.data import tfrecord
    from od.evaluate import decode_image
    from od.report import draw
    from od.visualize import image_grid

    examples = tfrecord.read(data)[:min(num_images, len(groundtruth))]
    pics = [draw(decode_image(ex.encoded), gt, detections[gt.image_id], label_map, min_score,
                 side=256) for ex, gt in zip(examples, groundtruth)]
    with writer.as_default():
        if pics:
            grid = np.asarray(image_grid(pics, columns=min(len(pics), 4)))
            tf.summary.image("eval/predictions", grid[None], step=step,
                             description=f"green: ground truth; red: detections with score >= "
                                         f"{min_score:g}")
        curves = metrics.pr_curves(groundtruth, detections, label_map)
        with tempfile.TemporaryDirectory() as tmp:
            png = plots.plot_pr_curves(curves, Path(tmp) / "pr.png").read_bytes()
        tf.summary.image("eval/pr_curves", tf.io.decode_png(png, channels=3)[None], step=step)
    writer.flush()
