"""The whole job on tiny generated data: convert → train (a few steps) → resume → evaluate →
export (checked against the checkpoint) → detect. Slow-ish (about 2 minutes on 2 cores)."""
import json

import numpy as np
import pytest

from od import detect, evaluate, export, synthetic, train
from od.data.convert import convert
from od.errors import CheckpointError, ConfigError
from tests.conftest import CONFIGS

TINY = ["model.input_size=64", "model.fpn_filters=16", "model.head_filters=16",
        "model.head_convs=1", "train.batch_size=4", "train.steps=4", "train.steps_per_loop=2",
        "train.checkpoint_every=2", "train.warmup_steps=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    synthetic.generate(root / "raw", 24, size=(80, 64), seed=3)
    convert(root / "raw" / "annotations", root / "data", format="voc",
            images=root / "raw" / "images", split=(0.5, 0.25, 0.25))
    result = train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", root / "run",
                             overrides=[f"data.train={root / 'data'}", *TINY], progress=False)
    return root, result


@pytest.mark.slow
def test_train_writes_run_folder(trained):
    root, result = trained
    run = root / "run"
    assert result.step == 4
    assert (run / "pipeline.yaml").is_file() and (run / "label_map.pbtxt").is_file()
    assert (run / "ckpt-4.index").is_file() and (run / "checkpoint").is_file()
    assert list((run / "train").glob("events.out.tfevents.*")), "TensorBoard logs"
    assert np.isfinite(result.losses["total_loss"])


@pytest.mark.slow
def test_resume_continues_from_last_checkpoint(trained):
    root, _ = trained
    more = train.fine_tune(root / "run" / "pipeline.yaml", root / "run",
                           overrides=["train.steps=6"], progress=False)
    assert more.step == 6 and (root / "run" / "ckpt-6.index").is_file()
    with pytest.raises(ConfigError, match="different model"):
        train.fine_tune(root / "run" / "pipeline.yaml", root / "run",
                        overrides=["model.head_filters=32"], progress=False)


@pytest.mark.slow
def test_missing_fine_tune_checkpoint_is_a_clear_error(trained, tmp_path):
    root, _ = trained
    with pytest.raises(CheckpointError, match="neither a checkpoint folder nor a checkpoint"):
        train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "r",
                        overrides=[f"data.train={root / 'data'}", *TINY,
                                   f"train.fine_tune_checkpoint={tmp_path / 'nope'}"],
                        progress=False)


@pytest.mark.slow
def test_evaluate_export_detect(trained):
    root, _ = trained
    report = evaluate.evaluate(root / "run", str(root / "data" / "test-*.tfrecord"),
                               progress=False)
    metrics = json.loads((root / "run" / "eval" / "metrics.json").read_text())
    assert set(["AP", "AP50", "AP75", "per_class"]) <= set(metrics["coco"])
    assert 0.0 <= report["coco"]["AP50"] <= 1.0
    assert sorted(metrics["coco"]["per_class"]) == ["circle", "square", "triangle"]
    for png in report["plots"].values():
        assert (root / "run" / "eval").exists() and png

    check = export.export(root / "run", root / "export", formats=("saved_model", "frozen_graph"))
    assert all(c["ok"] for c in check["checks"])
    assert {c["format"] for c in check["checks"]} == {
        "saved_model", "saved_model:serving_bytes", "frozen_graph"}
    assert (root / "export" / "label_map.pbtxt").is_file()

    det = detect.Detector(root / "export")
    for shape in [(50, 70, 3), (120, 90, 3)]:  # any size
        out = det(np.full(shape, 128, np.uint8))
        assert out.boxes.shape[1] == 4 and out.width == shape[1] and out.height == shape[0]
        assert ((out.boxes >= 0) & (out.boxes <= 1)).all()

    results = detect.detect_folder(root / "export", root / "raw" / "images", root / "det",
                                   min_score=0.0, voc=True, crops=True, progress=False)
    assert len(results) == 24
    assert len(list((root / "det").glob("shapes-*.jpg"))) == 24
    saved = json.loads((root / "det" / "detections.json").read_text())
    assert saved == results
    assert (root / "det" / "detections.csv").read_text().startswith(
        "filename,width,height,class,xmin,ymin,xmax,ymax,score")
    assert len(list((root / "det" / "voc").glob("*.xml"))) == 24
