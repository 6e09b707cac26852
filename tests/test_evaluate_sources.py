"""od evaluate's inputs and outputs that need no trained model: every annotation source read
directly (same ground truth as its TFRecords), class matching by name, the clear errors, and
report.html (opened in headless Chromium when it is installed), the comparison table and the
TensorBoard summaries, all on generated images with hand-made detections."""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from od import label_map as label_map_lib
from od import metrics, plots, report, synthetic
from od.data.convert import InvalidDataError, convert
from od.detections import Detections
from od.errors import AnnotationError, ExportError, LabelMapError
from od.eval_inputs import load_model, read_data
from tests.conftest import SHARED, needs_shared

FORMATS = ("tfrecord", "coco", "csv", "automl", "voc")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """12 generated 80x64 images (VOC in raw/) converted to every format, split 0.5/0.25/0.25."""
    root = tmp_path_factory.mktemp("sources")
    synthetic.generate(root / "raw", 12, size=(80, 64), seed=3)
    for to in FORMATS:
        convert(root / "raw" / "annotations", root / to, format="voc",
                images=root / "raw" / "images", split=(0.5, 0.25, 0.25), workers=1, to=to)
    return root, label_map_lib.read(root / "tfrecord" / "label_map.pbtxt")


def _key(ds):
    return [(os.path.basename(g.name), g.width, g.height, g.class_ids.tolist()) for g in
            ds.groundtruth]


def test_every_source_gives_the_test_split_of_its_tfrecords(sources):
    root, lm = sources
    ref = read_data(root / "tfrecord", lm)
    assert ref.split == "test" and ref.format == "tfrecord" and len(ref.records) == 3
    for fmt in FORMATS[1:]:
        ds = read_data(root / fmt, lm)
        assert (ds.format, ds.split) == (fmt, "test")
        assert _key(ds) == _key(ref)
        for a, b in zip(ds.groundtruth, ref.groundtruth):
            np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-5)
        g = ds.groundtruth[0]
        assert ds.image(0).shape == ref.image(0).shape == (g.height, g.width, 3)
    assert len(read_data(root / "csv", lm, split="val").records) == 3
    assert len(read_data(str(root / "tfrecord" / "train-*.tfrecord"), lm).records) == 6


def test_a_source_without_splits_is_scored_whole(sources):
    root, lm = sources
    raw = read_data(root / "raw" / "annotations", lm, images=root / "raw" / "images")
    assert raw.split is None and len(raw.records) == 12
    with pytest.raises(AnnotationError, match="defines no train/val/test split"):
        read_data(root / "raw" / "annotations", lm, images=root / "raw" / "images", split="test")


def test_classes_match_by_name_and_unknown_ones_are_reported(sources):
    root, lm = sources
    other = label_map_lib.LabelMap.from_names(["triangle", "circle"])  # other ids, one missing
    ds = read_data(root / "csv", other)
    full = read_data(root / "csv", lm)
    n_square = sum(b.label == "square" for r in full.records for b in r.boxes)
    assert n_square and ds.unknown_classes == {"square": n_square}
    assert ds.summary()["unknown_class_boxes"] == n_square
    for g, f in zip(ds.groundtruth, full.groundtruth):
        names = sorted(other.title_of(i) for i in g.class_ids)
        assert names == sorted(lm.title_of(i) for i in f.class_ids if lm.title_of(i) != "square")


def test_bad_inputs_are_clear_errors(sources, tmp_path):
    root, lm = sources
    with pytest.raises(LabelMapError, match="none of the data's classes"):
        read_data(root / "voc", label_map_lib.LabelMap.from_names(["cat", "dog"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(AnnotationError, match="no TFRecords or annotations recognised"):
        read_data(tmp_path / "empty", lm)
    (tmp_path / "empty.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n")
    with pytest.raises(AnnotationError, match="header but no rows"):
        read_data(tmp_path / "empty.csv", lm)
    (tmp_path / "test.tfrecord").write_bytes(b"")
    with pytest.raises(AnnotationError, match="hold no examples|holds no images"):
        read_data(tmp_path / "test.tfrecord", lm)
    bad = tmp_path / "bad.csv"
    shutil.copy(root / "raw" / "images" / "shapes-0000.jpg", tmp_path / "shapes-0000.jpg")
    from PIL import Image
    w, h = Image.open(tmp_path / "shapes-0000.jpg").size
    bad.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                   f"shapes-0000.jpg,{w + 1},{h},circle,1,1,5,5\n")
    with pytest.raises(InvalidDataError, match=f"annotation says {w + 1}x{h} but"):
        read_data(bad, lm)
    bad.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                   f"shapes-0000.jpg,{w},{h},circle,10,10,{w + 15},{h - 5}\n")
    with pytest.raises(InvalidDataError, match=f"lies outside the {w}x{h} image"):
        read_data(bad, lm)
    assert read_data(bad, lm, box_policy="clip").groundtruth[0].boxes[0, 3] == 1.0
    with pytest.raises(AnnotationError, match="no images in split 'test'"):
        read_data(str(root / "tfrecord" / "train-*.tfrecord"), lm, split="test")
    # a TFLite file without its label map: refused before the file is even opened
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.tflite").write_bytes(b"not a model")
    with pytest.raises(LabelMapError, match="no label_map.pbtxt beside it.*--label-map"):
        load_model(tmp_path / "m" / "model.tflite")
    with pytest.raises(ExportError, match="unknown model format"):
        load_model(tmp_path / "m", "onnx")
    with pytest.raises(ExportError, match="neither a run folder"):
        load_model(tmp_path / "m")


def _fake_detections(ds):
    """Ground truth as detections (score 0.9) on every image but the first, which gets one
    false positive instead of its boxes."""
    dets = {}
    for k, g in enumerate(ds.groundtruth):
        if k == 0:
            dets[g.image_id] = Detections.make([[0.1, 0.1, 0.3, 0.3]], [0.8], [1], g.width,
                                               g.height)
        else:
            dets[g.image_id] = Detections.make(g.boxes, np.full(len(g.boxes), 0.9), g.class_ids,
                                               g.width, g.height)
    return dets


@pytest.fixture(scope="module")
def html_report(sources, tmp_path_factory):
    root, lm = sources
    ds = read_data(root / "tfrecord", lm, split="train")
    dets = _fake_detections(ds)
    rep = metrics.evaluation_report(ds.groundtruth, dets, lm)
    out = tmp_path_factory.mktemp("eval")
    rep["plots"] = {k: str(v) for k, v in plots.write_report(rep, out).items()}
    rep["model"] = {"path": "fake-model", "kind": "file", "format": "tflite"}
    rep["data"] = ds.source
    path = report.write_html(rep, out, ds, dets, lm)
    return rep, path, ds, dets


def test_report_html_is_one_self_contained_page(html_report):
    rep, path, ds, dets = html_report
    page = path.read_text(encoding="utf-8")
    assert 0.0 < rep["coco"]["AP50"] < 1.0
    for text in ("Average precision per class", "Confusion matrix", "background",
                 "Worst images", "circle", "square", "triangle", "class=\"chosen\""):
        assert text in page
    assert page.count("data:image/png;base64,") == 3  # PR curves, confusion matrix, thresholds
    assert "data:image/jpeg;base64," in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
    lm = label_map_lib.LabelMap.from_names(["circle", "square", "triangle"])
    worst = report.worst_images(ds.groundtruth, dets, lm, 0.5, 0.5)
    assert worst[0]["index"] == 0 and worst[0]["fp"] == 1 and len(worst) == 1


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get "
                    "install chromium; .ci/run does it)")
def test_report_renders_in_headless_chromium(html_report, tmp_path):
    from PIL import Image

    _, path, _, _ = html_report
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1200,1400",
                            path.as_uri()], check=True, capture_output=True, timeout=120)
    dom = subprocess.run(flags + ["--dump-dom", path.as_uri()], check=True, capture_output=True,
                         timeout=120, text=True).stdout
    assert "Average precision per class" in dom and "triangle" in dom
    pixels = np.asarray(Image.open(shot).convert("L"), np.float64)
    assert pixels.shape == (1400, 1200) and pixels.std() > 20  # not a blank page


def test_comparison_table_and_plot(html_report, tmp_path):
    rep = html_report[0]
    other = json.loads(json.dumps(rep))
    other["coco"]["AP"] = 0.123
    other["model"]["path"] = "other"
    del other["coco"]["per_class"]["square"]
    res = report.write_comparison({"a": rep, "b": other}, tmp_path)
    assert [m["model"] for m in res["models"]] == ["a", "b"]
    assert res["models"][1]["AP"] == 0.123 and res["models"][1]["AP square"] is None
    lines = (tmp_path / "comparison.csv").read_text().splitlines()
    assert lines[0].startswith("model,path,format,AP,AP50") and len(lines) == 3
    assert "| b | other |" in (tmp_path / "comparison.md").read_text()
    assert (tmp_path / "comparison.png").stat().st_size > 1000
    assert json.loads((tmp_path / "comparison.json").read_text())["models"][0]["model"] == "a"


def test_tensorboard_gets_predictions_and_pr_curve(sources, html_report, tmp_path):
    import tensorflow as tf

    from od import tb

    root, lm = sources
    _, _, ds, dets = html_report
    writer = tf.summary.create_file_writer(str(tmp_path))
    tb.write_eval_summaries(writer, 7, ds.groundtruth, dets, lm,
                            str(root / "tfrecord" / "train-*.tfrecord"))
    tags = set()
    for event_file in tmp_path.glob("events.out.tfevents.*"):
        for ev in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update((v.tag, ev.step) for v in ev.summary.value)
    assert {("eval/predictions", 7), ("eval/pr_curves", 7)} <= tags


@needs_shared
def test_real_sources_read_directly():
    """The raccoon test split as the OD API's test.record and as the CSV give the same 40 images
    and boxes; chess (Roboflow COCO folder) scored by a 2-class model reports the other 10."""
    from od.label_map import LabelMap

    data = SHARED / "data"
    lm = LabelMap.from_names(["raccoon"])
    rec = read_data(data / "raccoon" / "data" / "test.record", lm)
    csv = read_data(data / "raccoon" / "data" / "test_labels.csv", lm,
                    images=data / "raccoon" / "images")
    assert (rec.format, rec.split, csv.format, csv.split) == ("tfrecord", "test", "csv", None)
    assert len(rec.records) == len(csv.records) == 40
    by_name = {os.path.basename(g.name): g for g in csv.groundtruth}
    for g in rec.groundtruth:
        np.testing.assert_allclose(g.boxes, by_name[os.path.basename(g.name)].boxes, atol=1e-3)
    chess = read_data(data / "chess_coco", LabelMap.from_names(["white-king", "black-queen"]))
    assert chess.split == "test" and len(chess.records) == 29
    assert len(chess.unknown_classes) == 10 and "white-pawn" in chess.unknown_classes
