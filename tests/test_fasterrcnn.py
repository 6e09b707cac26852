"""Faster R-CNN (Model Garden's maskrcnn task without masks, od/fasterrcnn.py) through the whole
job on tiny generated data: train a few steps (from the ImageNet MobileNetV2 backbone when
../shared is present) → `od evaluate` → export (SavedModel + frozen graph, checked against the
checkpoint; TFLite refused) → detect. Slow (minutes on 2 loaded cores)."""
import numpy as np
import pytest

from od import config, detect, experiment, export, layout, model as model_lib, train
from od.errors import ExportError
from tests.conftest import CONFIGS, SHARED

FRCNN_TINY = ["model.input_size=64", "model.fpn_filters=16", "model.head_filters=16",
              "train.batch_size=4", "train.steps=2", "train.steps_per_loop=2",
              "train.checkpoint_every=2", "train.warmup_steps=1"]
MNV2 = SHARED / "weights" / "mobilenet_v2_1.0_imagenet"  # the config's ImageNet backbone


def test_configs_build_the_maskrcnn_task_without_masks():
    for name in ("fasterrcnn_mobilenetv2_fpn_256.yaml", "fasterrcnn_resnet50_fpn_coco.yaml"):
        cfg = config.load(CONFIGS / name, overrides=["model.num_classes=4"])
        exp = experiment.to_experiment(cfg)
        assert type(exp.task).__name__ == "MaskRCNNTask"
        assert exp.task.model.include_mask is False and exp.task.model.mask_head is None
        assert exp.task.model.num_classes == 4 and exp.task.use_coco_metrics is False


@pytest.fixture(scope="module")
def frcnn_run(tmp_path_factory):
    """12 generated 80x64 images (``root/raw``) converted 0.5/0.25/0.25 (``root/data``) and the
    tiny Faster R-CNN trained on them for 2 steps (``root/run``). Returns (root, TrainResult)."""
    from od import synthetic
    from od.data.convert import convert

    root = tmp_path_factory.mktemp("frcnn")
    synthetic.generate(root / "raw", 12, size=(80, 64), seed=3)
    convert(root / "raw" / "annotations", root / "data", format="voc",
            images=root / "raw" / "images", split=(0.5, 0.25, 0.25))
    result = train.fine_tune(CONFIGS / "fasterrcnn_mobilenetv2_fpn_256.yaml", root / "run",
                             overrides=[f"data.train={root / 'data'}", *FRCNN_TINY,
                                        f"train.fine_tune_checkpoint="
                                        f"{MNV2 if MNV2.is_dir() else 'none'}"],
                             progress=False)
    return root, result


@pytest.mark.slow
def test_faster_rcnn_trains_exports_and_detects(frcnn_run):
    root, result = frcnn_run
    assert result.step == 2 and np.isfinite(result.losses["total_loss"])
    info = model_lib.inspect_checkpoint(layout.latest_checkpoint(root / "run"))
    assert info.num_classes == 4 and {"backbone", "decoder", "head"} <= info.modules

    with pytest.raises(ExportError, match="tf.CombinedNonMaxSuppression"):
        export.export(root / "run", root / "tfl", formats=("saved_model", "tflite"))
    assert not (root / "tfl").exists()
    report = export.export(root / "run", root / "export",
                           formats=("saved_model", "frozen_graph"))
    assert {c["format"] for c in report["checks"]} == {
        "saved_model", "saved_model:serving_bytes", "frozen_graph"}
    assert all(c["ok"] for c in report["checks"])

    found = detect.detect_folder(root / "export", root / "raw" / "images", root / "det",
                                 min_score=0.0, progress=False)
    assert len(found["images"]) == 12 and not found["skipped"]
    assert (root / "det" / "detections.json").is_file()
    boxes = [d["box"] for r in found["images"] for d in r["detections"]]
    assert boxes and all(0.0 <= v <= 1.0 for b in boxes for v in b)  # normalised, as RetinaNet


@pytest.mark.slow
def test_od_evaluate_on_a_faster_rcnn_run(frcnn_run, capsys):
    """`od evaluate` on a Faster R-CNN run folder (checkpoint + pipeline.yaml, the maskrcnn task)
    writes metrics.json and report.html with finite COCO AP (near 0 after 2 steps)."""
    import json
    import math

    from od.cli import main

    root, _ = frcnn_run
    out = root / "frcnn_eval"
    assert main(["evaluate", "--model-dir", str(root / "run"),
                 "--data", str(root / "data" / "test-*.tfrecord"), "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    coco = metrics["coco"]
    for key in ("AP", "AP50", "AP75"):
        assert math.isfinite(coco[key]) and 0.0 <= coco[key] <= 1.0, (key, coco[key])
    assert sorted(coco["per_class"]) == ["circle", "square", "triangle"]
    assert (out / "report.html").is_file() and (out / "report.html").stat().st_size > 0
    assert "AP" in capsys.readouterr().out
