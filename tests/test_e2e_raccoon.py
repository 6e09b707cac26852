"""End to end on the real raccoon data (../shared): the README's command sequence through the
`od` CLI, with a handful of training steps. Checks every output exists and is well-formed."""
import json
import subprocess
import sys

import pytest

from tests.conftest import CONFIGS, ROOT, SHARED, needs_shared

RACCOON = SHARED / "data" / "raccoon"


def od(*args):
    proc = subprocess.run([sys.executable, "-m", "od.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@needs_shared
@pytest.mark.slow
def test_raccoon_convert_train_evaluate_export_detect(tmp_path):
    data, run, exp, det = (tmp_path / n for n in ("data", "run", "export", "det"))
    od("data", "convert", "--format", "csv",
       "--annotations", f"train={RACCOON}/data/train_labels.csv",
       "--annotations", f"test={RACCOON}/data/test_labels.csv",
       "--images", RACCOON / "images", "--out", data)
    summary = json.loads((data / "summary.json").read_text())
    assert summary["images"] == {"train": 160, "test": 40}
    assert summary["boxes_per_class"]["raccoon"] == {"train": 173, "test": 44}
    assert (data / "label_map.pbtxt").read_text().count("item") == 1

    od("train", "--config", CONFIGS / "retinanet_mobilenetv2_fpn_256.yaml", "--model-dir", run,
       f"data.train={data}", "train.steps=4", "train.batch_size=2", "train.steps_per_loop=2",
       "train.checkpoint_every=2", "--no-progress")
    assert (run / "ckpt-4.index").is_file() and (run / "pipeline.yaml").is_file()

    od("evaluate", "--model", run, "--data", f"{data}/test*.tfrecord", "--max-images", 6)
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["coco"]["num_images"] == 6
    assert {"AP", "AP50", "AP75"} <= set(metrics["coco"])
    assert "raccoon" in metrics["coco"]["per_class"]

    od("export", "--model-dir", run, "--out", exp)
    assert (exp / "saved_model" / "saved_model.pb").is_file()
    assert all(c["ok"] for c in json.loads((exp / "export_check.json").read_text())["checks"])

    images = tmp_path / "images"
    images.mkdir()
    for name in ("raccoon-150.jpg", "raccoon-1.jpg"):  # a grayscale and a colour JPEG
        (images / name).write_bytes((RACCOON / "images" / name).read_bytes())
    od("detect", "--model", exp, "--images", images, "--out", det, "--min-score", "0.0")
    results = json.loads((det / "detections.json").read_text())["images"]
    assert [r["image"] for r in results] == ["raccoon-1.jpg", "raccoon-150.jpg"]
    assert (det / "raccoon-150.jpg").is_file()
    for r in results:
        for d in r["detections"]:
            assert d["class"] == "raccoon" and 0 <= d["score"] <= 1 and len(d["box"]) == 4
