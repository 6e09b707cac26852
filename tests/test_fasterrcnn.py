"""Faster R-CNN (Model Garden's maskrcnn task without masks, od/fasterrcnn.py) through the whole
job on tiny generated data: train a few steps → export (SavedModel + frozen graph, checked against
the checkpoint; TFLite refused) → detect. Slow (minutes on 2 loaded cores)."""
import numpy as np
import pytest

from od import config, detect, export, layout, model as model_lib, train
from od.errors import ExportError
from tests.conftest import CONFIGS

FRCNN_TINY = ["model.input_size=64", "model.fpn_filters=16", "model.head_filters=16",
              "train.batch_size=4", "train.steps=2", "train.steps_per_loop=2",
              "train.checkpoint_every=2", "train.warmup_steps=1"]


def test_configs_build_the_maskrcnn_task_without_masks():
    for name in ("fasterrcnn_mobilenetv2_fpn_256.yaml", "fasterrcnn_resnet50_fpn_coco.yaml"):
        cfg = config.load(CONFIGS / name, overrides=["model.num_classes=4"])
        exp = config.to_experiment(cfg)
        assert type(exp.task).__name__ == "MaskRCNNTask"
        assert exp.task.model.include_mask is False and exp.task.model.mask_head is None
        assert exp.task.model.num_classes == 4 and exp.task.use_coco_metrics is False


@pytest.mark.slow
def test_faster_rcnn_trains_exports_and_detects(tmp_path_factory):
    from od import synthetic
    from od.data.convert import convert

    root = tmp_path_factory.mktemp("frcnn")
    synthetic.generate(root / "raw", 12, size=(80, 64), seed=3)
    convert(root / "raw" / "annotations", root / "data", format="voc",
            images=root / "raw" / "images", split=(0.5, 0.25, 0.25))
    result = train.fine_tune(CONFIGS / "fasterrcnn_mobilenetv2_fpn_256.yaml", root / "run",
                             overrides=[f"data.train={root / 'data'}", *FRCNN_TINY],
                             progress=False)
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
