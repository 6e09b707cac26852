"""Human-readable evaluation results: ``report.html`` and the model comparison.

``write_html`` turns an evaluation (:func:`od.evaluate.evaluate`) into one self-contained HTML
file: summary metrics, the per-class AP table, PR curves, the confusion matrix (with its background
row and column), the threshold table with the chosen operating point (best F1, else the model's
``eval.min_score``), and a gallery of the worst images (most false positives + misses at that
point) with ground truth and predictions drawn in two colours. Images are PNG/JPEG inlined as
base64 ``data:`` URIs; the style is inline CSS; there is no script and nothing is fetched, so the
page opens from disk, offline, and can be mailed as one file.

``write_comparison`` writes one table (CSV, Markdown, JSON) and one plot of AP, AP50, AP75 and
per-class AP for several evaluations of the same images.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from od import atomic
from od.detections import Detections

GT_COLOR = (0, 170, 0)        # ground truth: green
PRED_COLOR = (230, 40, 40)    # predictions: red
GALLERY_IMAGES = 8
GALLERY_SIDE = 320            # pixels: longest side of a gallery picture
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
COMPARE_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR100")

_CSS = """
body{font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;color:#222;
max-width:1200px}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:4px;
margin-top:32px}
table{border-collapse:collapse;margin:8px 0}th,td{border:1px solid #ccc;padding:3px 8px;
text-align:right}th{background:#f0f0f0}td.l,th.l{text-align:left}
tr.chosen td{background:#fff3b0;font-weight:bold}
.note{background:#fff4e5;border-left:4px solid #f0a020;padding:6px 10px}
img.plot{max-width:100%;border:1px solid #eee}img.cm{max-width:640px}
.gallery{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;border:1px solid #ddd;padding:6px;background:#fafafa}
figcaption{font-size:.85em;max-width:320px;word-break:break-all}
.gt{color:rgb(0,170,0);font-weight:bold}.pred{color:rgb(230,40,40);font-weight:bold}
"""


def _fmt(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _e(text) -> str:
    return html.escape(str(text))


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _png(path: str | os.PathLike, alt: str, cls: str = "plot") -> str:
    p = Path(path)
    if not p.is_file():
        return ""
    return f'<img class="{cls}" alt="{_e(alt)}" src="{_data_uri(p.read_bytes(), "image/png")}">'


def _table(header, rows, row_classes=None) -> str:
    head = "".join(f'<th class="l">{_e(h)}</th>' if i == 0 else f"<th>{_e(h)}</th>"
                   for i, h in enumerate(header))
    body = []
    for k, row in enumerate(rows):
        cls = f' class="{row_classes[k]}"' if row_classes and row_classes[k] else ""
        cells = "".join(f'<td class="l">{_e(c)}</td>' if i == 0 else f"<td>{_e(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def operating_point(report: dict) -> float:
    """The score threshold the report recommends: best F1, else the confusion matrix's."""
    best = report.get("best_threshold")
    return float(best["threshold"]) if best else float(report["confusion_matrix"]["min_score"])


def draw(image: np.ndarray, gt, det, label_map, min_score: float,
         side: int = GALLERY_SIDE) -> Image.Image:
    """``image`` scaled to ``side`` px (longest side) with ground truth boxes (green, class name)
    and detections with score >= ``min_score`` (red, class and score). Boxes yxyx normalised."""
    img = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    scale = side / max(img.size)
    img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))
    d = ImageDraw.Draw(img)
    w, h = img.size

    def boxes(bs, labels, color):
        for (y0, x0, y1, x1), text in zip(bs, labels):
            xy = [x0 * w, y0 * h, max(x1 * w, x0 * w + 1), max(y1 * h, y0 * h + 1)]
            d.rectangle(xy, outline=color, width=2)
            tx, ty = xy[0] + 2, max(0, xy[1] - 11)
            d.rectangle(d.textbbox((tx, ty), text), fill=color)
            d.text((tx, ty), text, fill=(255, 255, 255))

    def title(c):
        return label_map.title_of(int(c)) if label_map else str(int(c))

    boxes(gt.boxes, [title(c) for c in gt.class_ids], GT_COLOR)
    keep = det.scores >= min_score
    boxes(det.boxes[keep], [f"{title(c)} {s:.2f}" for c, s in
                            zip(det.class_ids[keep], det.scores[keep])], PRED_COLOR)
    return img


def worst_images(groundtruth, detections, label_map, iou: float, min_score: float,
                 count: int = GALLERY_IMAGES) -> list[dict]:
    """The ``count`` images with most false positives + misses (FN) at ``min_score`` and IoU
    ``iou`` (matching of :func:`od.metrics.threshold_table`), worst first; images without
    errors are left out. Returns ``[{"index", "image_id", "name", "fp", "fn", "tp"}]``."""
    from od import metrics

    rows = []
    for k, gt in enumerate(groundtruth):
        det = detections.get(gt.image_id)
        dets = {gt.image_id: det} if det is not None else {}
        t = metrics.threshold_table([gt], dets, label_map, iou, [min_score])["overall"]
        if t["fp"][0] + t["fn"][0]:
            rows.append({"index": k, "image_id": gt.image_id, "name": gt.name,
                         "fp": t["fp"][0], "fn": t["fn"][0], "tp": t["tp"][0]})
    rows.sort(key=lambda r: (-(r["fp"] + r["fn"]), r["index"]))
    return rows[:count]


def _gallery(data, detections, label_map, iou: float, min_score: float) -> str:
    worst = worst_images(data.groundtruth, detections, label_map, iou, min_score)
    if not worst:
        return "<p>No false positives or misses at this operating point.</p>"
    figs = []
    for r in worst:
        gt = data.groundtruth[r["index"]]
        det = detections.get(gt.image_id, Detections.empty())  # absent: none found
        pic = draw(data.image(r["index"]), gt, det, label_map, min_score)
        buf = io.BytesIO()
        pic.save(buf, format="JPEG", quality=85)
        figs.append(f'<figure><img alt="{_e(Path(r["name"]).name)}" '
                    f'src="{_data_uri(buf.getvalue(), "image/jpeg")}"><figcaption>'
                    f'{_e(Path(r["name"]).name)}: {r["fp"]} false positive(s), {r["fn"]} '
                    f'miss(es), {r["tp"]} correct</figcaption></figure>')
    return f'<div class="gallery">{"".join(figs)}</div>'


def _threshold_rows(report: dict, chosen: float):
    t = report["threshold_table"]
    o = t["overall"]
    rows, classes = [], []
    near = int(np.argmin([abs(x - chosen) for x in t["thresholds"]]))
    for i, th in enumerate(t["thresholds"]):
        rows.append([f"{th:.2f}", _fmt(o["precision"][i]), _fmt(o["recall"][i]), _fmt(o["f1"][i]),
                     o["tp"][i], o["fp"][i], o["fn"][i]])
        classes.append("chosen" if i == near else "")
    return rows, classes


def write_html(report: dict, out_dir: str | os.PathLike, data, detections, label_map) -> Path:
    """Write ``out_dir/report.html`` (module doc) for an evaluation.

    Args:
      report: the dict of :func:`od.evaluate.evaluate` (with ``plots`` written in ``out_dir``).
      data: the od.eval_inputs.EvalData that was scored (for the gallery's pictures).
      detections: {image_id: Detections} that were scored.
      label_map: the model's LabelMap.
    Returns the path written (atomically).
    """
    out = Path(out_dir)
    coco, cm = report["coco"], report["confusion_matrix"]
    chosen = operating_point(report)
    iou = report["threshold_table"]["iou"]
    summary = data.summary()
    model = report.get("model", {})
    parts = [f"<h1>Evaluation report</h1><p>Model <b>{_e(model.get('path', ''))}</b> "
             f"({_e(model.get('format', ''))}) on <b>{_e(summary['source'])}</b>"
             f"{' split ' + _e(summary['split']) if summary['split'] else ''}: "
             f"{summary['images']} images, {summary['boxes']} ground-truth boxes, "
             f"{coco['num_detections']} detections.</p>"]
    if summary["unknown_classes"]:
        listed = ", ".join(f"{_e(n)} ({c})" for n, c in summary["unknown_classes"].items())
        parts.append(f'<p class="note">{summary["unknown_class_boxes"]} box(es) of classes the '
                     f"model does not know were not scored: {listed}.</p>")
    parts.append("<h2>Summary</h2>" + _table(["metric", *SUMMARY_KEYS],
                                              [["COCO", *(_fmt(coco[k]) for k in SUMMARY_KEYS)]]))
    best = report.get("best_threshold")
    parts.append(f"<p>Operating point: score &ge; <b>{chosen:.2f}</b>"
                 + (f" (best F1 {best['f1']:.3f}: precision {_fmt(best['precision'])}, recall "
                    f"{_fmt(best['recall'])})" if best else " (no F1 defined; eval.min_score)")
                 + "</p>")
    table = report["threshold_table"]["per_class"]
    rows = []
    for name, c in coco["per_class"].items():
        tc = table.get(name, {})
        i = int(np.argmin([abs(x - chosen) for x in report["threshold_table"]["thresholds"]]))
        rows.append([name, _fmt(c["AP"]), _fmt(c["AP50"]), c["num_gt"],
                     _fmt((tc.get("precision") or [None] * (i + 1))[i]),
                     _fmt((tc.get("recall") or [None] * (i + 1))[i])])
    parts.append('<h2 id="ap-table">Average precision per class</h2>'
                 + _table(["class", "AP", "AP50", "GT boxes", f"precision @ {chosen:.2f}",
                           f"recall @ {chosen:.2f}"], rows))
    plots = report.get("plots", {})
    parts.append("<h2>Precision-recall curves</h2>" + _png(plots.get("pr_curves", ""),
                                                            "precision-recall curves"))
    labels = cm["labels"]
    parts.append(f"<h2>Confusion matrix</h2><p>Rows: true class, columns: predicted class; "
                 f"IoU &ge; {cm['iou']:g}, score &ge; {cm['min_score']:g}. The background row "
                 "counts false positives, the background column misses.</p>"
                 + _table(["true \\ predicted", *labels],
                          [[labels[i], *row] for i, row in enumerate(cm["matrix"])])
                 + _png(plots.get("confusion_matrix", ""), "confusion matrix", "plot cm"))
    rows, classes = _threshold_rows(report, chosen)
    parts.append(f"<h2>Precision, recall and F1 per score threshold</h2><p>IoU &ge; {iou:g}; the "
                 "highlighted row is the operating point.</p>"
                 + _table(["score ≥", "precision", "recall", "F1", "TP", "FP", "FN"], rows,
                          classes)
                 + _png(plots.get("thresholds", ""), "precision, recall and F1 vs threshold"))
    parts.append(f'<h2>Worst images</h2><p>Most false positives and misses at score &ge; '
                 f'{chosen:.2f}: <span class="gt">green</span> ground truth, '
                 f'<span class="pred">red</span> predictions.</p>'
                 + _gallery(data, detections, label_map, iou, chosen))
    page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>od evaluation report</title>"
            f"<style>{_CSS}</style></head><body>{''.join(parts)}</body></html>\n")
    return atomic.write_text(out / "report.html", page)


def comparison_rows(reports: dict) -> tuple[list[str], list[list]]:
    """(header, rows) of the comparison table: one row per model, COCO metrics then per-class AP
    (classes in first-seen order; empty where a model lacks the class)."""
    classes = []
    for r in reports.values():
        classes.extend(c for c in r["coco"]["per_class"] if c not in classes)
    header = ["model", "path", "format", *COMPARE_KEYS, *(f"AP {c}" for c in classes)]
    rows = []
    for name, r in reports.items():
        coco, pc = r["coco"], r["coco"]["per_class"]
        rows.append([name, r["model"]["path"], r["model"]["format"],
                     *(coco[k] for k in COMPARE_KEYS),
                     *((pc[c]["AP"] if c in pc else None) for c in classes)])
    return header, rows


def _plot_comparison(header, rows, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = ["AP", "AP50", "AP75"] + [h for h in header if h.startswith("AP ")]
    cols = [header.index(k) for k in keys]
    fig = Figure(figsize=(max(7, 1.1 * len(keys) * max(1, len(rows)) * 0.5 + 3), 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    width = 0.8 / max(len(rows), 1)
    x = np.arange(len(keys))
    for k, row in enumerate(rows):
        vals = [np.nan if row[c] is None else row[c] for c in cols]
        ax.bar(x + (k - (len(rows) - 1) / 2) * width, vals, width, label=row[0])
    ax.set_xticks(x, keys, rotation=30, ha="right")
    ax.set(ylim=(0, 1), ylabel="average precision", title="Model comparison (same images)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path


def write_comparison(reports: dict, out_dir: str | os.PathLike) -> dict:
    """Write ``comparison.csv``, ``comparison.md``, ``comparison.json`` and ``comparison.png``
    into ``out_dir`` for ``reports`` ({model name: evaluate() report}, same images).

    Returns ``{"models": [row dicts keyed by the header], "files": {kind: path}}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header, rows = comparison_rows(reports)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows([["" if v is None else v for v in row] for row in rows])
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    result = {"models": [dict(zip(header, row)) for row in rows],
              "data": next(iter(reports.values()))["data"] if reports else ""}
    files = {"csv": atomic.write_text(out / "comparison.csv", buf.getvalue()),
             "markdown": atomic.write_text(out / "comparison.md", "\n".join(md) + "\n"),
             "plot": _plot_comparison(header, rows, out / "comparison.png")}
    files["json"] = out / "comparison.json"
    result["files"] = {k: str(v) for k, v in files.items()}
    atomic.write_json(files["json"], result)
    return result
