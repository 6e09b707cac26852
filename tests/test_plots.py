"""od/plots.py: evaluation plots written as PNG through the Agg canvas, atomically."""
import json

from matplotlib.figure import Figure
from PIL import Image

from od import metrics, plots
from od.detections import Detections, GroundTruth
from od.label_map import LabelMap

CATS = LabelMap.from_names(["cat", "dog"])


def _report(n_classes=2):
    lm = LabelMap.from_names([f"c{i}" for i in range(n_classes)])
    a, b = [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]
    gts = [GroundTruth.make(1, 200, 100, [a, b], [1, 2]), GroundTruth.make(2, 50, 50, [], [])]
    dets = {1: Detections.make([a, b, [0, 0.5, 0.5, 1]], [0.9, 0.6, 0.8], [1, 1, 2])}
    return metrics.evaluation_report(gts, dets, lm)


def _png_ok(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 0 and im.height > 0


def test_write_report_writes_json_and_three_pngs(tmp_path):
    report = _report()
    paths = plots.write_report(report, tmp_path / "eval")
    assert set(paths) == {"metrics", "pr_curves", "confusion_matrix", "thresholds"}
    assert json.loads(paths["metrics"].read_text()) == report
    for key in ("pr_curves", "confusion_matrix", "thresholds"):
        _png_ok(paths[key])
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == \
        ["confusion_matrix.png", "metrics.json", "pr_curves.png", "thresholds.png"]


def test_plots_with_many_classes_and_with_nothing_to_show(tmp_path):
    many = _report(n_classes=40)  # legends and cell labels thin out; classes without GT skipped
    _png_ok(plots.plot_pr_curves(many["pr_curves"], tmp_path / "pr.png"))
    _png_ok(plots.plot_confusion_matrix(many["confusion_matrix"], tmp_path / "cm.png"))
    empty = metrics.evaluation_report([GroundTruth.make(1, 10, 10, [], [])], {}, CATS)
    _png_ok(plots.plot_pr_curves(empty["pr_curves"], tmp_path / "pr0.png"))
    _png_ok(plots.plot_threshold_table(empty["threshold_table"], tmp_path / "t0.png"))
    _png_ok(plots.plot_confusion_matrix(empty["confusion_matrix"], tmp_path / "cm0.png"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_save_figure_writes_a_png_and_leaves_no_temporaries(tmp_path):
    fig = Figure(figsize=(2, 1))
    fig.add_subplot().plot([0, 1], [1, 0])
    path = plots.save_figure(fig, tmp_path / "sub" / "f.png", dpi=50)
    _png_ok(path)
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["f.png"]


def test_a_class_name_the_font_lacks_draws_without_a_warning_per_glyph(tmp_path):
    """A CJK class name with DejaVu Sans: matplotlib warned once per glyph on the console."""
    import warnings

    from matplotlib.figure import Figure

    from od.plots import save_figure
    fig = Figure()
    ax = fig.subplots()
    ax.barh([0], [1])
    ax.set_yticks([0], ["熊猫"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_figure(fig, tmp_path / "cjk.png")
    assert not [w for w in caught if "Glyph" in str(w.message)]
    assert (tmp_path / "cjk.png").read_bytes()[:4] == b"\x89PNG"
