"""``od data inspect``: a JSON summary and PNG plots of a dataset, to look at before training.

Input: a converted TFRecord folder (``od data convert`` output, or OD API ``*.record`` files), or
any annotation source with its ``format`` (as ``od data convert`` takes it).

Output folder (default: ``DATA/inspect/`` inside a folder that ``od data convert`` wrote; else
``<name>_inspect/`` beside the folder, file or glob's folder, so a user's own annotation folder or
OD API records are never written into)::

    summary.json          images/boxes per split and class, negatives, image sizes, box size and
                          aspect-ratio percentiles (pixels), class balance
    boxes_per_class.png   bar chart of boxes (and images) per class
    box_sizes.png         histograms of box width and height in pixels, and sqrt(area fraction)
    aspect_ratios.png     histogram of box width/height (log scale)
    samples.png           a grid of sample images with their boxes and labels drawn
    anchors.png           with a pipeline config: box sizes at the model input against the
                          anchor sizes, and anchor coverage per class (od.anchors), as written
                          and as fitted; summary.json gets ``anchors``

Plots are matplotlib Figures drawn by the Agg canvas (no pyplot, no global backend: safe in
notebooks), written atomically by :func:`od.plots.save_figure`; the sample grid is drawn by
:mod:`od.visualize`, like detections.
"""
from __future__ import annotations

import glob
import io
import os
import random
from collections import Counter
from pathlib import Path

import numpy as np

from od import atomic
from od.data.balance import class_balance
from od.data.records import ImageAnnotation
from od.errors import ImageError, OdError

PLOTS = ("boxes_per_class.png", "box_sizes.png", "aspect_ratios.png", "samples.png")


def _read(data: Path, format: str | None, images) -> list[ImageAnnotation]:
    from od.data.convert import read_annotations
    from od.data.tfrecord import record_files
    if format is None:
        try:
            record_files(data)
        except OdError:
            raise OdError(f"{data}: no TFRecord files found; for an annotation source give its "
                          "format (--format voc|coco|csv|automl).") from None
        format = "tfrecord"
    return read_annotations(data, format, images).records


def _percentiles(values) -> dict:
    if len(values) == 0:
        return {}
    q = np.percentile(np.asarray(values, dtype=np.float64), [0, 5, 25, 50, 75, 95, 100])
    return dict(zip(("min", "p5", "p25", "median", "p75", "p95", "max"),
                    (round(float(v), 3) for v in q)))


def summarize(records: list[ImageAnnotation]) -> dict:
    """The summary dict for ``records`` (boxes normalised; sizes reported in pixels)."""
    widths, heights, aspects, rel = [], [], [], []
    for r in records:
        for b in r.boxes:
            w, h = (b.xmax - b.xmin) * r.width, (b.ymax - b.ymin) * r.height
            widths.append(w)
            heights.append(h)
            if w > 0 and h > 0:
                aspects.append(w / h)
                rel.append(float(np.sqrt(max(b.xmax - b.xmin, 0) * max(b.ymax - b.ymin, 0))))
    splits = Counter(r.split or "unassigned" for r in records)
    sizes = Counter(f"{r.width}x{r.height}" for r in records)
    return {"images": len(records), "boxes": sum(len(r.boxes) for r in records),
            "images_per_split": dict(splits), "class_balance": class_balance(records),
            "image_sizes": dict(sizes.most_common(10)), "distinct_image_sizes": len(sizes),
            "box_width_px": _percentiles(widths), "box_height_px": _percentiles(heights),
            "box_aspect_w_over_h": _percentiles(aspects),
            "box_sqrt_area_fraction": _percentiles(rel)}


def _plots(records: list[ImageAnnotation], out: Path, samples: int, seed: int) -> list[Path]:
    from matplotlib.figure import Figure

    from od.plots import save_figure

    written = []
    bal = class_balance(records)["classes"]
    names = sorted(bal, key=lambda c: -bal[c]["boxes"])
    fig = Figure(figsize=(8, 1 + 0.35 * max(len(names), 1)))
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.barh(y - 0.2, [bal[c]["boxes"] for c in names], 0.4, label="boxes")
    ax.barh(y + 0.2, [bal[c]["images"] for c in names], 0.4, label="images")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_title("boxes and images per class")
    ax.legend()
    written.append(save_figure(fig, out / "boxes_per_class.png"))

    boxes = [(b, r) for r in records for b in r.boxes]
    w = [(b.xmax - b.xmin) * r.width for b, r in boxes]
    h = [(b.ymax - b.ymin) * r.height for b, r in boxes]
    fig = Figure(figsize=(13, 3.5))
    axes = fig.subplots(1, 3)
    for ax, vals, title in ((axes[0], w, "box width (px)"), (axes[1], h, "box height (px)"),
                            (axes[2], [np.sqrt(max(b.xmax - b.xmin, 0) * max(b.ymax - b.ymin, 0))
                                       for b, _ in boxes], "sqrt(box area / image area)")):
        ax.hist(vals, bins=30, range=_span(vals))
        ax.set_title(title)
    written.append(save_figure(fig, out / "box_sizes.png"))

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    aspects = [a / b for a, b in zip(w, h) if a > 0 and b > 0]
    ax.hist(np.log2(aspects) if aspects else [], bins=30, range=_span(np.log2(aspects)))
    ax.set_xlabel("log2(width / height)")
    ax.set_title("box aspect ratios")
    written.append(save_figure(fig, out / "aspect_ratios.png"))

    picks = random.Random(seed).sample(records, min(samples, len(records)))
    if picks:
        written.append(atomic.write_bytes(out / "samples.png", _png(_sample_grid(picks))))
    return written


def anchor_report(records: list[ImageAnnotation], config, out: Path) -> dict:
    """Anchor coverage of ``config`` (a PipelineConfig, a YAML path or a list of them) on the
    training records (all records when none has a split), as written and as fitted, and
    ``out/anchors.png``. Returns the ``anchors`` summary entry (``{"error": message}`` and no
    plot when the training records hold no box)."""
    from od import anchors
    from od import config as config_lib

    cfg = config
    if not isinstance(config, config_lib.PipelineConfig):
        paths = [config] if isinstance(config, (str, os.PathLike)) else list(config)
        cfg = config_lib.load(paths[0] if paths else None, paths[1:])
    train = [r for r in records if r.split in (None, "train")] or records
    try:
        boxes = anchors.BoxSet.from_records(train, "training records")
    except anchors.AnchorFitError as e:  # no boxes: the rest of the inspection still helps
        return {"error": str(e)}
    report: dict = {}
    try:
        fit = anchors.fit(cfg, boxes)
        report["fit"] = fit.message()
    except anchors.AnchorFitError as e:
        th = anchors.match_threshold(cfg)
        a = anchors.Anchors.of(cfg.model)
        a = a if a.input_size else anchors.replace(a, input_size=anchors.AUTO_MIN_INPUT)
        cov = anchors.coverage(boxes, a, th)
        fit = anchors.Fit(cov, cov, False)
        report["fit"] = f"error: {e}"
    report.update(as_written=fit.before.to_json(), fitted=fit.after.to_json(),
                  reached=fit.reached, line=fit.after.line())
    if not fit.reached:
        report["suggestion"] = anchors.suggestion(
            anchors.apply(cfg, fit.after.anchors), boxes, fit.after.threshold)
    notes: list = []  # model.max_detections against the most crowded image, as od train does
    report["max_detections"] = anchors.fit_max_detections(
        cfg, boxes, log=notes.append).model.max_detections
    if notes:
        report["max_detections_note"] = notes[0]
    report["plot"] = str(_anchor_plot(boxes, fit, out / "anchors.png"))
    return report


def _sample_grid(picks: list[ImageAnnotation]):
    """The sample images with their labelled boxes (od.visualize.draw_boxes), in a grid."""
    from PIL import Image, ImageDraw

    from od.data.images import decode_rgb
    from od.label_map import LabelMap
    from od.visualize import draw_boxes, image_grid

    lm = LabelMap.from_names(sorted({b.label for r in picks for b in r.boxes}) or ["none"])
    cells = []
    for r in picks:
        try:
            img = decode_rgb(r.image_path, r.image_data)
        except ImageError:
            img = Image.new("RGB", (300, 300), (230, 230, 230))
            ImageDraw.Draw(img).text((10, 140), f"{r.image_path.name[:30]}\n(unreadable)",
                                     fill=(200, 0, 0))
            cells.append(img)
            continue
        img.thumbnail((400, 400))
        cells.append(draw_boxes(img, [b.yxyx for b in r.boxes],
                                [lm.id_of(b.label) for b in r.boxes], None, lm))
    return image_grid(cells, max(1, int(np.ceil(np.sqrt(len(cells))))), cell_size=300)


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _span(values) -> tuple[float, float] | None:
    """A histogram range for ``values``: None (NumPy's own) unless they (nearly) all are one
    value, e.g. 35.0 and 35.000000001 px, where 30 bins cannot split the range (NumPy raises)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    return None if hi - lo > 1e-6 * max(1.0, abs(hi)) else (lo - 0.5, hi + 0.5)


def _anchor_plot(boxes, fit, path: Path) -> Path:
    from matplotlib.figure import Figure

    from od.plots import save_figure

    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 2)
    for ax, cov, name in ((axes[0], fit.before, "as written"), (axes[1], fit.after, "fitted")):
        hw = boxes.hw_pixels(cov.anchors.input_size)
        side = np.sqrt(np.maximum(hw[:, 0] * hw[:, 1], 1e-6))
        lo, hi = max(side.min(), 1.0), max(side.max(), 2.0)
        lo, hi = (lo, hi) if hi > lo * 1.01 else (lo / 1.5, hi * 1.5)  # boxes all of one size
        bins = np.geomspace(lo, hi, 40)
        ok = cov.best >= cov.threshold
        ax.hist([side[ok], side[~ok]], bins=bins, stacked=True, color=["tab:green", "tab:red"],
                label=["matched (IoU >= %g)" % cov.threshold, "no anchor"])
        for s in cov.anchors.sizes():
            ax.axvline(s, color="k", linewidth=0.6, alpha=0.5)
        ax.set_xscale("log")
        ax.set_xlabel(f"box side sqrt(w*h), px at input {cov.anchors.input_size}; "
                      "lines: anchor sizes")
        ax.set_title(f"{name}: coverage {cov.recall:.3f}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def default_out(data: Path) -> Path:
    """``od data inspect``'s output folder when ``--out`` is not given.

    ``DATA/inspect`` for a folder od wrote (``od data convert``'s marker); ``<name>_inspect``
    beside any other folder, beside a file (its stem), or beside a glob's folder."""
    from od import outputs
    if glob.has_magic(str(data)):
        data = next(p for p in data.parents if not glob.has_magic(str(p)))
    if data.is_dir():
        if outputs.output_of(data) == "convert":
            return data / "inspect"
        data = Path(os.path.abspath(data))
        return data.with_name(data.name + "_inspect") if data.name else data / "inspect"
    return data.with_name(data.stem + "_inspect")


def inspect(data: str | os.PathLike, out: str | os.PathLike | None = None, *,
            format: str | None = None, images=None, samples: int = 16, seed: int = 0,
            overwrite: bool = False, config=None) -> dict:
    """Summarise a dataset and draw its plots.

    Args:
      data: a TFRecord folder/file/glob (``format`` None), or an annotation source.
      out: output folder (see module doc for the default).
      format: None for TFRecords, else a reader name (``voc``, ``coco``, ``csv``, ``automl``).
      images: images folder for an annotation source.
      samples: images in the sample grid; seed: which ones.
      config: a pipeline config (PipelineConfig, YAML path or list of layered paths): adds the
        anchor coverage report ``anchors`` and ``anchors.png`` (``anchor_report``).
    Returns:
      the summary dict (also ``out/summary.json``), with ``plots``: the PNG paths written.
    Raises:
      OdError: no TFRecords where expected, the readers' errors.
    """
    from od import outputs

    data = Path(data)
    default = out is None
    if default:
        out = default_out(data)
    outputs.prepare_out(out, inputs=[data, images], command="inspect",
                        overwrite=overwrite, inside_ok=[out.parent] if default else [])
    records = _read(data, format, images)
    out = outputs.start_output(out, "inspect")
    summary = summarize(records)
    summary["plots"] = [str(p) for p in _plots(records, out, samples, seed)]
    if config is not None:
        summary["anchors"] = anchor_report(records, config, out)
        summary["plots"] += [summary["anchors"]["plot"]] if "plot" in summary["anchors"] else []
    atomic.write_json(out / "summary.json", summary)
    outputs.write_marker(out, "inspect", [*PLOTS, "summary.json"])
    return summary
