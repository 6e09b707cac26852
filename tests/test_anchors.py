"""Anchor coverage and the anchor fit (od.anchors); tiled detection: tests/test_tiling.py."""
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import CONFIGS, TINY

from od import anchors, config, experiment
from od.data.records import ImageAnnotation, ObjectBox


def _squares(side_px: float, image: int = 256, n_images: int = 6, per_row: int = 4,
             label: str = "dot") -> list[ImageAnnotation]:
    """Images ``image`` px square with a grid of ``side_px`` squares at irregular offsets."""
    rng = np.random.default_rng(0)
    recs = []
    for k in range(n_images):
        boxes = []
        for i in range(per_row):
            for j in range(per_row):
                y = (i + 0.5) / per_row + rng.uniform(-0.05, 0.05)
                x = (j + 0.5) / per_row + rng.uniform(-0.05, 0.05)
                s = side_px / image / 2
                boxes.append(ObjectBox(y - s, x - s, y + s, x + s, label))
        recs.append(ImageAnnotation(Path(f"img{k}.jpg"), image, image, tuple(boxes)))
    return recs


def _cfg(*overrides):
    return config.load(CONFIGS / "retinanet_mobilenetv2_fpn_256.yaml", overrides=list(overrides))


def test_small_boxes_have_low_coverage_with_defaults_and_high_after_fit():
    boxes = anchors.BoxSet.from_records(_squares(17))
    cfg = _cfg("model.input_size=256")
    before = anchors.coverage(boxes, anchors.Anchors.of(cfg.model), anchors.match_threshold(cfg))
    assert before.recall < 0.2 and before.per_class["dot"] == before.recall
    assert "anchor coverage" in before.line()
    fit = anchors.fit(_cfg("model.input_size=auto"), boxes)
    assert fit.reached and fit.after.recall >= anchors.TARGET
    assert fit.after.anchors.input_size > 256 or fit.after.anchors.anchor_size < 4.0
    assert "anchor fit:" in fit.message()


def test_large_boxes_keep_the_config_as_written():
    boxes = anchors.BoxSet.from_records(_squares(100, per_row=2))
    fit = anchors.fit(_cfg(), boxes)  # input_size auto: the smallest auto size, 256
    assert fit.reached and fit.after.anchors == anchors.Anchors.of(
        _cfg("model.input_size=256").model)


def test_anchor_fit_off_keeps_the_anchors_and_suggests_overrides():
    boxes = anchors.BoxSet.from_records(_squares(17))
    cfg = _cfg("model.input_size=256", "model.anchor_fit=off")
    fit = anchors.fit(cfg, boxes)
    assert not fit.reached and fit.after.anchors == anchors.Anchors.of(cfg.model)
    assert not fit.changed()
    hint = anchors.suggestion(cfg, boxes, fit.after.threshold)
    assert "model.input_size=" in hint and "model.anchor_size=" in hint


def test_dataset_without_boxes_is_a_clear_error():
    recs = [ImageAnnotation(Path("empty.jpg"), 64, 64, ())]
    # no "set model.anchor_fit=off" option: od train reads the boxes whatever anchor_fit says
    with pytest.raises(anchors.AnchorFitError, match="has no boxes.*whatever model.anchor_fit"):
        anchors.BoxSet.from_records(recs, "DATA")


def test_unreachable_recall_names_the_smallest_boxes_and_the_options():
    boxes = anchors.BoxSet.from_records(_squares(3, image=512))
    cfg = _cfg("model.input_size=auto", "train.max_input_size=256")
    with pytest.raises(anchors.AnchorFitError,
                       match=r"max_input_size = 256.*smallest: 'dot' in img\d\.jpg.*"
                             r"raise train.max_input_size"):
        anchors.fit(cfg, boxes)


def test_input_size_auto_round_trips_in_yaml(tmp_path):
    cfg = _cfg()
    assert cfg.model.input_size == 0 and cfg.model.anchor_fit == "auto"
    config.save(cfg, tmp_path / "p.yaml")
    assert yaml.safe_load((tmp_path / "p.yaml").read_text())["model"]["input_size"] == "auto"
    assert config.load(tmp_path / "p.yaml") == cfg
    with pytest.raises(config.ConfigError, match="anchor_fit = 'maybe'; choose one of auto, off"):
        _cfg("model.anchor_fit=maybe")


def test_train_saves_the_fitted_anchors_in_pipeline_yaml(tiny_run, tmp_path, capsys):
    """Anchors far too large for the data are refitted; pipeline.yaml holds the fit; resume
    keeps them."""
    from od import train

    root, _ = tiny_run
    over = [f"data.train={root / 'data'}", *TINY, "model.anchor_size=24"]
    train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "run", overrides=over,
                    progress=False)
    out = capsys.readouterr().out
    assert "anchor fit: anchor_size 24.0 →" in out
    saved = config.load(tmp_path / "run" / "pipeline.yaml")
    assert saved.model.anchor_size != 24.0 and saved.model.input_size == 64
    boxes = anchors.BoxSet.from_tfrecords(str(root / "data" / "train-*.tfrecord"))
    cov = anchors.coverage(boxes, anchors.Anchors.of(saved.model))
    assert f"{cov.recall:.3f}" in out
    r = train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "run",
                        overrides=over, progress=False)  # resume: same anchors, no refusal
    assert r.step == 4
    assert config.load(tmp_path / "run" / "pipeline.yaml").model == saved.model


def test_inspect_with_config_reports_coverage(tiny_run, tmp_path):
    from od.data.inspect import inspect

    root, _ = tiny_run
    s = inspect(root / "data", tmp_path / "insp", samples=2,
                config=[CONFIGS / "quickstart_shapes_128.yaml"])
    a = s["anchors"]
    assert 0 <= a["as_written"]["recall"] <= 1 and a["fitted"]["per_class"]
    assert a["max_detections"] == 50 and "max_detections_note" not in a  # the config's; few boxes
    assert (tmp_path / "insp" / "anchors.png").is_file()


def test_train_start_with_anchor_fit_off_warns_with_overrides(tmp_path):
    """prepare_training (what `od train` calls first): `off` keeps the anchors as written, prints
    the coverage line and a warning with overrides that reach the target."""
    from od import synthetic
    from od.data.convert import convert

    synthetic.generate(tmp_path / "raw", 8, size=(80, 64), seed=1)
    convert(tmp_path / "raw" / "annotations", tmp_path / "data", format="voc",
            images=tmp_path / "raw" / "images", split=(1.0, 0.0, 0.0))
    cfg = config.load(CONFIGS / "quickstart_shapes_128.yaml", overrides=[
        f"data.train={tmp_path / 'data'}", "model.input_size=64", "model.anchor_fit=off",
        "model.anchor_size=24"])
    cfg, _ = experiment.resolve(cfg)
    lines: list = []
    out = anchors.prepare_training(cfg, tmp_path / "run", log=lines.append)
    assert out.model == cfg.model
    assert lines[0].startswith("anchor coverage") and len(lines) == 2
    assert lines[1].startswith("WARNING: anchor coverage") and "model.anchor_size=" in lines[1]


def test_shard_check_records_give_the_same_boxes_without_image_bytes(tmp_path):
    """`od train` reads the training shards once: check_shards' records (no image bytes, labels
    the label map's names) give the BoxSet a second read of the shards would, and
    prepare_training takes them."""
    from od import synthetic, train_checks
    from od.data.convert import convert

    synthetic.generate(tmp_path / "raw", 8, size=(80, 64), seed=2)
    convert(tmp_path / "raw" / "annotations", tmp_path / "data", format="voc",
            images=tmp_path / "raw" / "images", split=(0.75, 0.25, 0.0))
    cfg = config.load(CONFIGS / "quickstart_shapes_128.yaml", overrides=[
        f"data.train={tmp_path / 'data'}", "model.input_size=64"])
    cfg, lm = experiment.resolve(cfg)
    check = train_checks.check_shards(cfg, lm)
    assert len(check.records) == check.images == 6
    assert all(r.image_data is None for r in check.records)
    mine = anchors.BoxSet.from_records(check.records)
    read = anchors.BoxSet.from_tfrecords(cfg.data.train)
    np.testing.assert_array_equal(mine.boxes, read.boxes)
    np.testing.assert_array_equal(mine.image_hw, read.image_hw)
    assert mine.labels == read.labels and set(mine.labels) <= {it.name for it in lm.items}
    assert (mine.names, mine.most_in_image) == (read.names, read.most_in_image)
    a, b = ([] for _ in range(2))
    assert (anchors.prepare_training(cfg, tmp_path / "r1", log=a.append,
                                     records=check.records).model
            == anchors.prepare_training(cfg, tmp_path / "r2", log=b.append).model)
    assert a == b
    assert train_checks.check_shards(cfg).records == ()  # without a label map: framing only


def test_max_detections_made_room_for_the_most_crowded_image():
    """A training image with more objects than model.max_detections: auto raises it to twice the
    count rounded up to 100 and says so; off keeps it and warns with that override; a dataset
    within the limit keeps it silently."""
    from od import anchor_fit
    crowded = _squares(6, image=512, n_images=2, per_row=12)  # 144 boxes per image
    boxes = anchors.BoxSet.from_records(crowded)
    assert boxes.most_in_image == 144 and boxes.most_image.endswith("img0.jpg")
    assert boxes.sample(10).most_in_image == 144
    lines: list = []
    out = anchor_fit.fit_max_detections(_cfg(), boxes, log=lines.append)
    assert out.model.max_detections == 300
    assert lines == [lines[0]] and "100 -> 300" in lines[0] and "img0.jpg has 144 boxes" in lines[0]
    lines.clear()
    off = anchor_fit.fit_max_detections(_cfg("model.anchor_fit=off"), boxes, log=lines.append)
    assert off.model.max_detections == 100
    assert lines[0].startswith("WARNING") and "model.max_detections=300" in lines[0]
    lines.clear()
    few = anchors.BoxSet.from_records(_squares(40))
    assert anchor_fit.fit_max_detections(_cfg(), few, log=lines.append) == _cfg() and not lines
