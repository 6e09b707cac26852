"""Degenerate-but-valid data audit: the whole pipeline on datasets a real user might have (one
image, identical images, boxes all one size or the whole image, 1x1 px boxes, 300 classes,
odd class names, negatives only in a split, 40x30 next to 4000x3000, 5000x3 strips, 250 boxes
in one photo). Each test pins one defect the audit found, on the library function that failed,
with tiny inputs; only the evaluation-note test uses the session's tiny trained run."""
import csv
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from od import config as config_lib
from od.detections import Detections
from od.errors import AnnotationError, ConfigError
from tests.conftest import CONFIGS

CONFIG = CONFIGS / "retinanet_mobilenetv2_fpn_256.yaml"


def _csv_source(root, images: dict, negatives=()) -> tuple:
    """``root/labels.csv`` + ``root/images``: {name: (w, h, [(x0, y0, x1, y1, class)])}."""
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (w, h, boxes) in {**images, **{n: (96, 80, []) for n in negatives}}.items():
        Image.new("RGB", (w, h), (90, 120, 150)).save(folder / name)
        rows += [[name, w, h, c, x0, y0, x1, y1] for x0, y0, x1, y1, c in boxes] or [
            [name, w, h, "", "", "", "", ""]]
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["filename", "width", "height", "class", "xmin", "ymin", "xmax",
                                  "ymax"], *rows])
    return root / "labels.csv", folder


# ---- COCO AP of a crowded photo (more than 100 boxes of one class) -----------------------------
def test_ap_is_a_number_when_a_crowded_image_raises_max_dets():
    """COCOeval.summarize() reads AP at maxDets=100 whatever params.maxDets says: with the limit
    raised for 250 boxes in one photo, AP was None (null in metrics.json, '-' in --compare, and
    `od train` with train.eval_every died with a TypeError) while AP50/AP75 were numbers."""
    from od import metrics
    from od.detections import GroundTruth
    from od.label_map import LabelMap

    k = np.arange(250)
    y, x = (k // 25) * 0.1, (k % 25) / 25
    boxes = np.stack([y, x, y + 0.08, x + 0.03], 1).astype(np.float32)
    gts = [GroundTruth.make(1, 2500, 1000, boxes, [1] * 250)]
    dets = {1: Detections.make(boxes, np.linspace(1, 0.5, 250), [1] * 250)}
    r = metrics.coco_metrics(gts, dets, LabelMap.from_names(["can"]))
    assert r["max_dets"] == 250
    assert r["AP"] == pytest.approx(1.0) and r["AP50"] == pytest.approx(1.0)
    few = metrics.coco_metrics([GroundTruth.make(1, 2500, 1000, boxes[:50], [1] * 50)],
                               {1: Detections.make(boxes[:50], np.ones(50), [1] * 50)},
                               LabelMap.from_names(["can"]))
    assert few["max_dets"] == 100 and few["AP"] == pytest.approx(1.0)  # as summarize() says


# ---- periodic evaluation on validation images without boxes ------------------------------------
def _shards(tmp_path, val_negatives: bool):
    from od.data.convert import convert

    box = (96, 80, [(10, 10, 60, 50, "cat")])
    train_src, images = _csv_source(tmp_path / "train_src", {f"t{k}.jpg": box for k in range(3)})
    val_src, val_images = _csv_source(
        tmp_path / "val_src", {} if val_negatives else {"v0.jpg": box},
        negatives=["n0.jpg", "n1.jpg"])
    for name in ("n0.jpg", "n1.jpg", *(["v0.jpg"] if not val_negatives else [])):
        (images / name).write_bytes((val_images / name).read_bytes())
    convert([f"train={train_src}", f"val={val_src}"], tmp_path / "data", format="csv",
            images=images, workers=1)
    return tmp_path / "data"


def test_train_refuses_eval_every_on_a_val_split_of_negatives_only(tmp_path):
    """Was `od: internal error: TypeError: unsupported format string passed to NoneType`
    at the first evaluation, after the training time was spent."""
    from od import experiment, label_map, train_checks

    data = _shards(tmp_path, val_negatives=True)
    cfg = config_lib.load(CONFIG, overrides=[f"data.train={data}", "train.eval_every=10"])
    cfg, lm = experiment.resolve(cfg)
    with pytest.raises(ConfigError, match=r"2 image\(s\) hold no box .*train.eval_every=0"):
        train_checks.check_shards(cfg, lm)
    cfg_off = config_lib.set_key(cfg, "train.eval_every", 0)
    assert train_checks.check_shards(cfg_off, lm).images == 3  # no evaluation: nothing to refuse
    ok, lm_ok = experiment.resolve(config_lib.load(CONFIG, overrides=[
        f"data.train={_shards(tmp_path / 'b', val_negatives=False)}", "train.eval_every=10"]))
    assert train_checks.check_shards(ok, label_map.read(ok.data.label_map)).images == 3


def test_periodic_eval_prints_na_when_no_box_was_scored(monkeypatch, tmp_path):
    """eval.max_images may pick only negatives: the eval line and the early-stop reason
    formatted None with :.3f (TypeError)."""
    import od.evaluate
    import od.model
    from od.train_actions import PeriodicEval

    cfg = config_lib.load(CONFIG, overrides=["train.eval_every=10", "train.early_stop_patience=1",
                                             "data.val=x"])
    none = {k: None for k in ("AP", "AP50", "AP75", "AR100")}
    monkeypatch.setattr(od.model, "Predictor", lambda *a, **k: object())
    monkeypatch.setattr(od.evaluate, "coco_on_records", lambda *a, **k: dict(none))
    lines = []
    trainer = SimpleNamespace(global_step=SimpleNamespace(numpy=lambda: 10), optimizer=object(),
                              model=None)
    ev = PeriodicEval(trainer, cfg, None, tmp_path, 0, write=False, log=lines.append)
    ev({"total_loss": 1.0})
    assert lines == ["[eval @ step 10] AP n/a  AP50 n/a  AP75 n/a"]
    assert "undefined" in ev.stop_reason


# ---- training images so thin that the input pipeline makes them 0 px ---------------------------
def test_train_refuses_a_strip_whose_short_side_would_resize_to_zero(tmp_path):
    """A 5000x3 scan trained at 128 px: Model Garden's resize made it 102x0 px and TensorFlow
    failed mid-training (`od: internal error: InvalidArgumentError ... output dimensions must be
    positive`). A 2000x50 strip still trains."""
    from od import experiment, train_checks
    from od.data.convert import convert

    src, images = _csv_source(tmp_path, {"scan.jpg": (5000, 3, [(100, 0, 400, 3, "line")]),
                                         "strip.jpg": (2000, 50, [(100, 5, 300, 45, "line")]),
                                         "a.jpg": (96, 80, [(10, 10, 60, 50, "line")])})
    convert(src, tmp_path / "data", format="csv", images=images, split=(1, 0, 0), workers=1)
    cfg, lm = experiment.resolve(config_lib.load(CONFIG, overrides=[
        f"data.train={tmp_path / 'data'}", "model.input_size=128"]))
    strips = train_checks.check_shards(cfg, lm).strips
    assert sorted((h, w) for h, w, _ in strips) == [(3, 5000), (50, 2000)]
    with pytest.raises(AnnotationError, match=r"scan.jpg .*5000x3 px.*1 such image.*Pad"):
        train_checks.check_strips(cfg, strips)
    train_checks.check_strips(cfg, [s for s in strips if s[1] == 2000])


# ---- boxes the model puts wholly in its own input padding --------------------------------------
def test_boxes_clipped_flat_to_the_image_edge_are_dropped():
    """A 4:3 photo is padded below to the square input; a box there came back as
    [1.0, x0, 1.0, x1] (zero height) in detections.json, the drawings and the evaluation."""
    from od import detections

    flat = Detections.make([[0.1, 0.1, 0.5, 0.5], [1.0, 0.2, 1.0, 0.6], [0.2, 1.0, 0.4, 1.0]],
                           [0.9, 0.8, 0.7], [1, 2, 3], 64, 48)
    det = detections.detect_padded(lambda im: flat, np.zeros((48, 64, 3), np.uint8))
    assert det.class_ids.tolist() == [1] and (det.width, det.height) == (64, 48)
    clean = Detections.make([[0.1, 0.1, 0.5, 0.5]], [0.9], [1], 64, 48)
    assert detections.unpad(clean, 64, 48) is clean


def test_the_tflite_runner_drops_them_too():
    """EXPORT/detect_tflite.py (no TensorFlow) maps boxes as od.detections does."""
    from od.lite import detect_tflite

    runner = detect_tflite.Detector.__new__(detect_tflite.Detector)
    runner.input_size = 64
    runner.raw = lambda x: {  # one box in the image's top half, one in the padding below it
        "detection_boxes": np.array([[[0.1, 0.1, 0.3, 0.5], [0.6, 0.1, 0.8, 0.5]]], np.float32),
        "detection_classes": np.array([[1.0, 2.0]], np.float32),
        "detection_scores": np.array([[0.9, 0.8]], np.float32),
        "num_detections": np.array([2.0], np.float32)}
    boxes, scores, classes = runner(np.zeros((32, 64, 3), np.uint8))
    assert classes.tolist() == [1] and boxes.shape == (1, 4)


# ---- od data convert / inspect on tiny and repetitive datasets ---------------------------------
def test_convert_says_when_a_split_gets_no_image(tmp_path):
    """Two images with --split 0.8,0.1,0.1: both went to train and nothing said so; `od train
    train.eval_every=N` then said only 'convert the data with a val split'."""
    from od.data.convert import convert
    from od.data.split import empty_split_notes

    box = (96, 80, [(10, 10, 60, 50, "cat")])
    src, images = _csv_source(tmp_path, {"a.jpg": box, "b.jpg": box})
    s = convert(src, tmp_path / "data", format="csv", images=images, workers=1)
    assert s.images == {"train": 2}
    assert any("split val and test got no image: 2 image(s)" in n for n in s.notes), s.notes
    assert empty_split_notes((1, 0, 0), {"train": 2}) == []
    assert empty_split_notes((0.8, 0.1, 0.1), {"train": 2}, assigned=False) == []


def test_train_names_the_missing_splits_of_the_data_folder(tmp_path):
    from od import experiment
    from od.data.convert import convert

    box = (96, 80, [(10, 10, 60, 50, "cat")])
    src, images = _csv_source(tmp_path, {"a.jpg": box, "b.jpg": box})
    convert(src, tmp_path / "data", format="csv", images=images, split=(0, 1, 0), workers=1)
    with pytest.raises(ConfigError, match=r"holds only val-00000-of-00001.tfrecord.*--split"):
        experiment.resolve(config_lib.load(CONFIG, overrides=[f"data.train={tmp_path / 'data'}"]))


def test_identical_images_across_splits_are_counted(tmp_path):
    """8 copies of one photo split 6/1/1: the report said '7 duplicate image(s) (0 removed)',
    not that the val and test copies score pictures the model trained on."""
    from od.data import duplicates
    from od.data.convert import convert

    assert duplicates.report(list("abcd"), [[0, 1, 2], [3]], "bytes",
                             splits=["train", "test", "train", "val"])["across_splits"] == 1
    src, images = _csv_source(tmp_path, {f"x{k}.jpg": (96, 80, [(10, 10, 60, 50, "dog")])
                                         for k in range(8)})
    s = convert(src, tmp_path / "data", format="csv", images=images, workers=1)
    assert s.images == {"train": 6, "val": 1, "test": 1}
    assert s.duplicates["duplicate_images"] == 7 and s.duplicates["across_splits"] == 2


def test_inspect_with_a_config_on_negatives_only_still_writes_its_summary(tmp_path):
    """`od data inspect --config` on images without boxes failed as a whole ('the training
    data has no boxes ... od data inspect shows the counts')."""
    from od.data.convert import convert
    from od.data.inspect import inspect

    src, images = _csv_source(tmp_path, {}, negatives=["n0.jpg", "n1.jpg"])
    lm = tmp_path / "label_map.pbtxt"
    lm.write_text('item {\n  name: "cat"\n  id: 1\n}\n')
    convert(src, tmp_path / "data", format="csv", images=images, label_map=lm, workers=1)
    s = inspect(tmp_path / "data", config=CONFIG)
    assert s["images"] == 2 and "no boxes" in s["anchors"]["error"]
    assert (tmp_path / "data" / "inspect" / "summary.json").is_file()
    assert not (tmp_path / "data" / "inspect" / "anchors.png").exists()


# ---- od evaluate on a split of negatives only (uses the session's tiny run) --------------------
def test_evaluate_explains_null_ap_on_images_without_boxes(tiny_run, tmp_path, capsys):
    """AP, AP50, AP75 printed as null with no word why."""
    from od.data.convert import convert
    from od.evaluate import evaluate

    root, _ = tiny_run
    src, images = _csv_source(tmp_path, {}, negatives=["n0.jpg", "n1.jpg"])
    lm = root / "data" / "label_map.pbtxt"
    convert([f"test={src}"], tmp_path / "neg", format="csv", images=images, label_map=lm,
            workers=1)
    r = evaluate(root / "run", str(tmp_path / "neg"), tmp_path / "ev", html=False)
    assert r["coco"]["AP"] is None and r["coco"]["num_images"] == 2
    assert "hold no box of the model's classes, so AP and AR are undefined" in (
        capsys.readouterr().out)
