"""Plots of an evaluation report (:func:`od.metrics.evaluation_report`) as PNG files.

Figures are ``matplotlib.figure.Figure`` objects drawn by the Agg canvas directly, so no pyplot
state or global backend is touched (safe in notebooks and threads). Every file is written
atomically (:func:`od.atomic.atomic_path`): it appears under its name only when complete.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from od import atomic, fonts

MAX_LEGEND_CLASSES = 15
MAX_ANNOTATED_CELLS = 30


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Write a ``matplotlib.figure.Figure`` as PNG to ``path`` atomically, through the Agg canvas
    (no pyplot, no global backend). The one figure writer of `od` (evaluation and dataset plots).
    Returns ``path`` as a Path. Text in a script DejaVu Sans lacks (CJK class names) falls back
    to a system font that has it (:func:`od.fonts.families_for`); where the machine has none it
    is drawn as boxes, without matplotlib's warning per glyph on the console (the names stay
    exact in the JSON and CSV outputs)."""
    from matplotlib.text import Text

    FigureCanvasAgg(fig)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        fig.draw_without_rendering()  # tick labels (class names) exist only once drawn
        texts = [t for t in fig.findobj(Text) if t.get_text()]
        families = fonts.families_for(t.get_text() for t in texts)
        if len(families) > 1:  # matplotlib falls back glyph by glyph along a text's families
            for t in texts:
                t.set_fontfamily(families)
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    return Path(path)


def _nan(values) -> np.ndarray:
    """JSON lists with None (undefined) → float array with NaN, for plotting."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def plot_pr_curves(curves: dict, path: str | os.PathLike) -> Path:
    """Precision vs recall per class at IoU 0.5 (left) and averaged over IoU 0.5:0.95 (right).

    Args:
      curves: the dict of :func:`od.metrics.pr_curves` (``recall``, ``mean``, ``per_class``).
      path: the PNG to write (parents created).
    Returns:
      ``path`` as a Path. With more than 15 classes, only the mean curve has a legend entry.
    """
    recall = np.asarray(curves["recall"], dtype=np.float64)
    classes = {n: c for n, c in curves["per_class"].items() if c["precision_50"] is not None}
    legend_all = len(classes) <= MAX_LEGEND_CLASSES
    fig = Figure(figsize=(12, 5.5))
    for ax, key, ap_key, title in zip(fig.subplots(1, 2), ("precision_50", "precision_50_95"),
                                      ("AP50", "AP"), ("IoU 0.50", "mean over IoU 0.50:0.95")):
        for name, c in classes.items():
            label = f"{name} (AP {c[ap_key]:.3f})" if legend_all else None
            ax.plot(recall, c[key], linewidth=1.2 if legend_all else 0.6,
                    alpha=1.0 if legend_all else 0.4, label=label)
        if curves["mean"][key] is not None:
            ax.plot(recall, curves["mean"][key], color="black", linewidth=2.2, label="mean")
        if not classes:
            ax.text(0.5, 0.5, "no ground truth", ha="center", va="center")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"Precision-recall, {title}")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion_matrix(cm: dict, path: str | os.PathLike) -> Path:
    """The confusion matrix of :func:`od.metrics.confusion_matrix` as a heat map.

    Colours are row-normalised (the share of each true class); cells show the counts (when the
    matrix has at most 30 rows). Returns ``path`` as a Path.
    """
    m = np.asarray(cm["matrix"], dtype=np.int64)
    labels = cm["labels"]
    n = len(labels)
    rows = m.sum(axis=1, keepdims=True)
    share = np.divide(m, rows, out=np.zeros(m.shape), where=rows > 0)
    side = float(np.clip(0.45 * n + 2.5, 5, 30))
    fig = Figure(figsize=(side + 1.5, side))
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), labels, rotation=60, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=f"Confusion matrix (IoU >= {cm['iou']:g}, score >= {cm['min_score']:g})")
    if n <= MAX_ANNOTATED_CELLS:
        for (i, j), v in np.ndenumerate(m):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize="small",
                        color="white" if share[i, j] > 0.5 else "black")
    fig.tight_layout()
    return save_figure(fig, path)


def plot_threshold_table(table: dict, path: str | os.PathLike) -> Path:
    """Overall precision, recall and F1 vs score threshold (from :func:`od.metrics.threshold_table`),
    with the best-F1 threshold marked. Undefined values (None) leave gaps. Returns ``path``.
    """
    t = np.asarray(table["thresholds"], dtype=np.float64)
    row = table["overall"]
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    for key, style in (("precision", "-o"), ("recall", "-s"), ("f1", "-^")):
        ax.plot(t, _nan(row[key]), style, markersize=3, label=key)
    f1 = _nan(row["f1"])
    if np.isfinite(f1).any():
        i = int(np.nanargmax(f1))
        ax.axvline(t[i], color="grey", linestyle="--", linewidth=1,
                   label=f"best F1 {f1[i]:.3f} at {t[i]:g}")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold", ylabel="value",
           title=f"Precision / recall / F1 vs score threshold (IoU {table['iou']:g})")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(report: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write ``report`` (from :func:`od.metrics.evaluation_report`) into ``out_dir``.

    Returns ``{"metrics": out_dir/metrics.json, "pr_curves": out_dir/pr_curves.png,
    "confusion_matrix": out_dir/confusion_matrix.png, "thresholds": out_dir/thresholds.png}``.
    Each file is written atomically; ``out_dir`` is created if missing.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {"metrics": atomic.write_json(out / "metrics.json", report),
            "pr_curves": plot_pr_curves(report["pr_curves"], out / "pr_curves.png"),
            "confusion_matrix": plot_confusion_matrix(report["confusion_matrix"],
                                                      out / "confusion_matrix.png"),
            "thresholds": plot_threshold_table(report["threshold_table"],
                                               out / "thresholds.png")}
