"""``od evaluate``: COCO metrics of a detector on labelled images, with pycocotools.

The detector is a run folder (newest checkpoint), an export folder (SavedModel, frozen graph,
TFLite float32/fp16/int8) or a ``.tflite``/``.pb`` file; the images are TFRecord shards or any
annotation source ``od data convert`` reads, read directly (od.eval_inputs). Each image is decoded
as in training, run through the detector (which resizes it to the model's input size, aspect ratio
kept, and maps boxes back to the image), so AP is computed in original image pixels. Model
Garden's own COCO evaluator is not used (it breaks on NumPy 2). Outputs in ``OUT`` (default
``RUN/eval``, ``EXPORT/eval`` or ``EXPORT/eval_<format>``, ``<file>_eval`` beside a file):

- ``metrics.json``: AP, AP50, AP75, APs/m/l, AR, per-class AP, the precision/recall/F1 table per
  score threshold, the best threshold, the confusion matrix (od.metrics), what was scored
  (``model``, ``data``, ``data_summary`` with ``unknown_classes``);
- PNG plots: PR curves, confusion matrix, precision/recall/F1 vs threshold (od.plots);
- ``report.html``: all of it in one self-contained page (od.report).

``compare`` scores several models on the same images into one table and one plot.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from od.detections import Detections, GroundTruth
from od.errors import OdError


def decode_image(encoded: bytes, name: str = "image/encoded") -> np.ndarray:
    """Decode ``image/encoded`` bytes as training does (``tf.io.decode_image``, 3 channels):
    uint8 RGB [H, W, 3]. Raises ImageError naming ``name`` (e.g. ``FILE.tfrecord#7``) for bytes
    TensorFlow cannot decode (corrupt, truncated, not an image)."""
    import tensorflow as tf

    from od.errors import ImageError
    try:
        return tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
        detail = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", str(e)).strip().splitlines()[-1][:200]
        raise ImageError(f"{name}: the stored image cannot be decoded ({detail}); convert the "
                         "dataset again, or remove the image.") from None


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
        image = decode_image(ex.encoded, ex.record.source or str(ex.record.image_path))
        h, w = image.shape[:2]
        r = ex.record
        gts.append(GroundTruth.make(k + 1, r.width or w, r.height or h,
                                    [b.yxyx for b in r.boxes], ex.class_ids,
                                    [b.is_crowd for b in r.boxes], name=str(r.image_path)))
        dets[k + 1] = predictor(image)
    return gts, dets


def coco_on_records(predictor, pattern: str, label_map, max_images: int = 0,
                    summaries=None) -> dict:
    """COCO metrics (od.metrics.coco_metrics) of ``predictor`` on the shards in ``pattern``.
    ``summaries``: optional callable ``(groundtruth, detections)`` also given the scored images
    (training passes od.tb.write_eval_summaries through it)."""
    from od import metrics

    gts, dets = run_on_records(predictor, pattern, max_images)
    if summaries is not None:
        summaries(gts, dets)
    return metrics.coco_metrics(gts, dets, label_map)


def predict(model, data, progress: bool = False) -> dict[int, Detections]:
    """Run ``model`` (uint8 RGB [H, W, 3] → Detections) on every image of ``data``
    (od.eval_inputs.EvalData); returns {image_id: Detections}, ids 1..N in data order."""
    from tqdm import tqdm

    dets = {}
    for k in tqdm(range(len(data.records)), desc="evaluate", unit="img", disable=not progress):
        dets[k + 1] = model(data.image(k))  # od's models pad a 3x5000 strip themselves
    return dets


def evaluate(model_dir: str | os.PathLike, data: str, out: str | os.PathLike | None = None, *,
             format: str | None = None, split: str | None = None,
             data_format: str | None = None, images=None, label_map=None,
             min_score: float | None = None, iou_threshold: float | None = None,
             box_policy: str = "error", max_images: int = 0, progress: bool = True,
             html: bool = True, checkpoint: str | None = None, overwrite: bool = False,
             tile: int = 0, tile_overlap: float = 0.2) -> dict:
    """Evaluate a detector on labelled images (module doc).

    Args:
      model_dir: run folder, export folder, or ``.tflite`` / frozen ``.pb`` file.
      data: TFRecord file/folder/glob or annotation source (VOC, COCO, CSV, AutoML).
      out: output folder (see module doc for the default).
      format: model format of an export folder (od.eval_inputs.MODEL_FORMATS); None: SavedModel
        (checkpoint for a run).
      split, data_format, images, box_policy: see od.eval_inputs.read_data.
      label_map: label_map.pbtxt of a detector that has none beside it.
      min_score: score threshold of the confusion matrix, in [0, 1]; default the model's
        ``eval.min_score``.
      iou_threshold: IoU in (0, 1] at which a detection matches a box in the threshold table
        and the confusion matrix; default the model's ``eval.iou_threshold`` (COCO AP always
        uses IoU 0.50:0.95).
      max_images: evaluate only the first N images (0 = all).
      html: also write ``report.html`` (od.report).
      tile, tile_overlap: > 0: detect as ``od detect --tile`` does (``od.tiling.detect_tiled``:
        the whole image and overlapping ``tile`` px windows, merged), to measure what tiling
        gains on labelled photos far larger than the model input.
    Returns:
      The report dict written to ``metrics.json`` (keys ``coco``, ``pr_curves``,
      ``threshold_table``, ``best_threshold``, ``confusion_matrix``, ``plots``, ``checkpoint``,
      ``data``, ``data_summary``, ``model``, and ``report_html`` with ``html``).
    Raises:
      ConfigError / CheckpointError: a broken run folder; ExportError: not a model or a missing
        format; LabelMapError: a detector without labels, its label map shares no class with the
        data, or does not fit its checkpoint; AnnotationError / InvalidDataError: no or invalid
        data; OdError: ``min_score``, ``iou_threshold`` or ``max_images`` out of range;
        OutputError: ``out`` is, holds or lies in an input, or is a user's folder. All before
        any image is run through the model (ImageError: an image that fails to decode there).
    """
    from od import atomic, metrics, outputs, plots, tiling
    from od.eval_inputs import check_options, load_model, read_data

    check_options(min_score, max_images, iou_threshold)
    tiling.check_options(tile, tile_overlap)  # refused before anything loads
    if out:  # a user's --out is checked before anything loads; the default is od's own folder
        outputs.prepare_out(out, inputs=[model_dir, data, images, label_map],
                            command="evaluate", overwrite=overwrite)
    model = load_model(model_dir, format, label_map, checkpoint)
    out_dir = Path(out) if out else model.default_out
    if not out:
        outputs.prepare_out(out_dir, inputs=[model_dir, data, images, label_map],
                            command="evaluate", overwrite=True, inside_ok=[model_dir])
    if progress:
        print(f"evaluating {model.path} ({model.format})", flush=True)
    ds = read_data(data, model.label_map, format=data_format, split=split, images=images,
                   box_policy=box_policy, max_images=max_images)
    if progress and split is None and ds.split not in (None, "test"):
        print(f"note: scoring split {ds.split!r}, the only split of {data}; give --split to "
              "pick another", flush=True)
    if ds.unknown_classes and progress:
        print(f"note: {sum(ds.unknown_classes.values())} box(es) of "
              f"{len(ds.unknown_classes)} class(es) the model does not know are not scored: "
              f"{', '.join(ds.unknown_classes)}", flush=True)
    data_summary = ds.summary()
    if progress and not data_summary["boxes"]:
        where = f"{data}" + (f" (split {ds.split})" if ds.split else "")
        print(f"note: the {len(ds.records)} image(s) of {where} hold no box of the model's "
              "classes, so AP and AR are undefined (null); only false positives are counted. "
              "For AP, score images with boxes (--split or --data).", flush=True)
    run = model.predict
    if tile:
        run = lambda im: tiling.detect_tiled(model.predict, im, tile, tile_overlap)  # noqa: E731
        if progress:
            print(f"tiles: {tile} px, overlap {tile_overlap} (plus the whole image)", flush=True)
    dets = predict(run, ds, progress)
    min_score = model.min_score if min_score is None else float(min_score)
    iou = model.iou if iou_threshold is None else float(iou_threshold)
    report = metrics.evaluation_report(ds.groundtruth, dets, model.label_map, iou=iou,
                                       min_score=min_score)
    unscored = report["coco"]["num_detections_unknown_class"]
    if unscored and progress:
        print(f"note: {unscored} detection(s) have class ids that are not in the label map "
              f"{model.label_map.source}; they are not scored (is it the model's label map?)",
              flush=True)
    out = outputs.start_output(out_dir, "evaluate")
    report["plots"] = {k: str(v) for k, v in plots.write_report(report, out).items()}
    report["checkpoint"] = model.checkpoint
    report["data"] = ds.source
    report["data_summary"] = data_summary
    report["model"] = {"path": model.path, "kind": model.kind, "format": model.format}
    if tile:
        report["tiles"] = {"tile": int(tile), "overlap": float(tile_overlap)}
    if html:
        from od import report as report_lib
        report["report_html"] = str(report_lib.write_html(report, out, ds, dets,
                                                          model.label_map))
    atomic.write_json(out / "metrics.json", report)
    outputs.write_marker(out, "evaluate", ["metrics.json", "report.html",
                                           *(Path(v).name for v in report["plots"].values())])
    return report


def _names(models) -> list[str]:
    names = []
    for m in models:
        p = Path(m)
        base = p.stem if p.is_file() else p.name or "model"
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}_{k}"
        names.append(name)
    return names


def compare(models, data: str, out: str | os.PathLike, *, formats=None, **kwargs) -> dict:
    """Evaluate each of ``models`` on the same ``data`` and write one comparison (od.report):
    ``OUT/comparison.csv``, ``comparison.md``, ``comparison.json``, ``comparison.png``; each
    model's full evaluation goes to ``OUT/<name>/``.

    Args:
      models: run/export folders or files (two or more).
      formats: None, or one model format per model (None entries: the default).
      kwargs: passed to :func:`evaluate` (split, data_format, images, max_images...).
    Returns:
      ``{"models": [{"name", "model", "format", "AP", "AP50", ..., "per_class"}], "files"}``.
    Raises:
      OdError: fewer than two models, or ``formats`` of another length; evaluate's errors.
      OutputError: ``out`` is, holds or lies in one of the models or the data, or is a folder
        that is not an earlier comparison (without ``overwrite=True``); before any model loads.
    """
    from od import outputs
    from od import report as report_lib
    from od.eval_inputs import check_options

    models = [str(m) for m in models]
    if len(models) < 2:
        raise OdError(f"--compare needs two or more models, got {len(models)}.")
    formats = list(formats) if formats else [None] * len(models)
    if len(formats) != len(models):
        raise OdError(f"{len(formats)} formats for {len(models)} models; give one --format per "
                      "model, or one for all.")
    check_options(kwargs.get("min_score"), kwargs.get("max_images", 0),
                  kwargs.get("iou_threshold"))
    out = Path(out)
    earlier = (outputs.read_marker(out) is None  # a comparison written before markers existed
               and all((out / f).is_file() for f in COMPARISON_FILES))
    outputs.prepare_out(out, inputs=[*models, data, kwargs.get("images"),
                                     kwargs.get("label_map")],
                        command=COMPARE, overwrite=kwargs.get("overwrite", False) or earlier)
    names = _names(models)
    reports = {}
    for name, m, fmt in zip(names, models, formats):
        reports[name] = evaluate(m, data, out / name, format=fmt, **kwargs)
    outputs.start_output(out, COMPARE)
    result = report_lib.write_comparison(reports, out)
    outputs.write_marker(out, COMPARE, [*COMPARISON_FILES, *names, "evaluate.log"])
    return result


COMPARE = "evaluate --compare"  # the command named in the marker and messages of a comparison
COMPARISON_FILES = ("comparison.csv", "comparison.md", "comparison.json", "comparison.png")


# `import od; od.evaluate(...)` calls evaluate() above (see od/__init__.py).
from od import _make_callable  # noqa: E402

_make_callable(__name__)
