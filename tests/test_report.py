"""od/report.py: the operating point and the comparison table (the HTML page with real models:
tests/test_evaluate_sources.py)."""
import csv

from od import report

COCO = dict.fromkeys(report.COMPARE_KEYS, 0.5)


def _report(path, fmt, per_class):
    return {"model": {"path": path, "format": fmt}, "data": "DATA/test*.tfrecord",
            "coco": {**COCO, "per_class": {c: {"AP": ap} for c, ap in per_class.items()}}}


def test_operating_point_is_best_f1_else_the_confusion_matrix_threshold():
    assert report.operating_point({"best_threshold": {"threshold": 0.42},
                                   "confusion_matrix": {"min_score": 0.5}}) == 0.42
    assert report.operating_point({"best_threshold": None,
                                   "confusion_matrix": {"min_score": 0.5}}) == 0.5


def test_comparison_rows_and_files(tmp_path):
    reports = {"a": _report("runs/a", "checkpoint", {"cat": 0.7}),
               "b": _report("exp/b", "tflite", {"dog": 0.2, "cat": 0.6})}
    header, rows = report.comparison_rows(reports)
    assert header[:3] == ["model", "path", "format"] and header[-2:] == ["AP cat", "AP dog"]
    assert rows[0][-2:] == [0.7, None] and rows[1][:3] == ["b", "exp/b", "tflite"]
    out = report.write_comparison(reports, tmp_path / "cmp")
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == [
        "comparison.csv", "comparison.json", "comparison.md", "comparison.png"]
    assert out["data"] == "DATA/test*.tfrecord" and out["models"][1]["AP dog"] == 0.2
    lines = list(csv.reader((tmp_path / "cmp" / "comparison.csv").open()))
    assert lines[0] == header and lines[1][-1] == ""  # a class the model lacks: empty cell
