"""od evaluate on every form of one model: the run's checkpoint, its SavedModel, frozen graph and
float TFLite file score the same images with the same AP50 (within 0.005); the command line on an
export folder, a lone .tflite file and a raw VOC folder; --compare.

The model is the TINY model of tests/conftest.py trained for 4 steps on one class, keeping every
box (``model.score_threshold=0``), with its last head layers set by ``construct_head``: after 4
steps every score is about 0.0101 and differs from the next in the 6th digit, below the float
noise between TF and TFLite kernels, so the order of the boxes was each runtime's own (one CI run
measured AP50 0.98 against 0.75 for TFLite on the pseudo-labels below). ``BOX_SHARE`` puts each
anchor's box, a fifth to a quarter of the anchor's side, at its centre: every box lies inside the
S×S input and the only overlaps above 0.18 IoU are the two scales of one location (0.76), far
from the NMS threshold of 0.5. (tests/test_tflite.py has boxes that cross the input's edge.)

The AP50 on the real boxes is near 0, so the comparison that must not be vacuous scores
pseudo-labels: the run's own 3 best boxes per image, written as a CSV (AP50 well above 0 for the
run, and the exports must reproduce it)."""
import csv
import json
import shutil

import pytest

from od import cli, evaluate, export, synthetic, train
from od.data.convert import convert
from od.detections import _with_area
from od.eval_inputs import load_model, read_data
from od.layout import run_checkpoint

from tests.conftest import CONFIGS, TINY, construct_head

pytestmark = pytest.mark.slow

#: Each anchor's box side as a share of the anchor's (scale 1, scale sqrt 2): 6 and 6.9 px at stride
#: 8, so the two scales of a location overlap at IoU (6 / 6.9)^2 = 0.76 and nothing else above 0.18.
BOX_SHARE = (0.25, 6.9 / (24 * 2 ** 0.5))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_models")
    synthetic.generate(root / "raw", 24, size=(80, 64), seed=3)
    for xml in (root / "raw" / "annotations").glob("*.xml"):
        text = xml.read_text()
        for name in synthetic.CLASSES:
            text = text.replace(f"<name>{name}</name>", "<name>shape</name>")
        xml.write_text(text)
    convert(root / "raw" / "annotations", root / "data", format="voc",
            images=root / "raw" / "images", split=(0.5, 0.25, 0.25), workers=1)
    train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", root / "run", progress=False,
                    overrides=[f"data.train={root / 'data'}", *TINY, "model.score_threshold=0.0",
                               "train.eval_every=4", "train.seed=1",
                               # the anchors as written (BOX_SHARE is computed for them)
                               "model.anchor_fit=off"])
    construct_head(root / "run", BOX_SHARE)
    assert run_checkpoint(root / "run") == str(root / "run" / "best" / "ckpt-5")
    export.export(root / "run", root / "export", formats=("saved_model", "frozen_graph", "tflite"))
    return root


FORMS = (("run", "run", None), ("saved_model", "export", None),
         ("frozen_graph", "export", "frozen_graph"), ("tflite", "export", "tflite"))


def _ap50(root, data, tag, **kw) -> dict:
    ap50 = {}
    for name, folder, fmt in FORMS:
        r = evaluate.evaluate(root / folder, str(data), root / f"eval_{tag}_{name}", format=fmt,
                              progress=False, html=False, **kw)
        assert r["coco"]["num_detections"] > 0
        ap50[name] = r["coco"]["AP50"]
    return ap50


def test_run_savedmodel_frozen_graph_and_tflite_give_the_same_ap50(models):
    root = models
    real = _ap50(root, root / "data", "real")  # the test split of the converted data
    assert all(abs(v - real["run"]) <= 0.005 for v in real.values()), real
    run = load_model(root / "run")
    ds = read_data(root / "raw" / "annotations", run.label_map, images=root / "raw" / "images",
                   max_images=8)
    with open(root / "pseudo.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"])
        for k, rec in enumerate(ds.records):
            det = run.predict(ds.image(k))
            # the 3 best boxes with an area (a box clipped flat to the image's edge is no label)
            for y0, x0, y1, x1 in det.boxes[_with_area(det.boxes)][:3]:
                w.writerow([rec.image_path.name, rec.width, rec.height, "shape",
                            x0 * rec.width, y0 * rec.height, x1 * rec.width, y1 * rec.height])
    pseudo = _ap50(root, root / "pseudo.csv", "pseudo", images=root / "raw" / "images")
    assert pseudo["run"] >= 0.2, pseudo  # not a vacuous 0 == 0
    assert all(abs(v - pseudo["run"]) <= 0.005 for v in pseudo.values()), pseudo


def test_cli_scores_an_export_folder_on_a_raw_voc_folder(models, capsys):
    root = models
    rc = cli.main(["evaluate", "--model", str(root / "export"), "--format", "tflite",
                   "--data", str(root / "raw" / "annotations"),
                   "--images", str(root / "raw" / "images"), "--max-images", "8"])
    out = capsys.readouterr().out
    assert rc == 0
    html = root / "export" / "eval_tflite" / "report.html"
    assert f"report: {html}" in out and html.is_file()
    m = json.loads((root / "export" / "eval_tflite" / "metrics.json").read_text())
    assert m["model"]["format"] == "tflite" and m["data_summary"]["format"] == "voc"
    assert m["data_summary"]["split"] is None and m["coco"]["num_images"] == 8


def test_a_lone_tflite_file_needs_its_labels(models, tmp_path, capsys):
    root = models
    shutil.copy(root / "export" / "model.tflite", tmp_path / "model.tflite")
    args = ["evaluate", "--model", str(tmp_path / "model.tflite"), "--data", str(root / "data"),
            "--out", str(tmp_path / "ev")]
    assert cli.main(args) == 2
    assert "no label_map.pbtxt beside it" in capsys.readouterr().err
    assert not (tmp_path / "ev").exists()
    assert cli.main(args + ["--label-map", str(root / "export" / "label_map.pbtxt")]) == 0
    assert (tmp_path / "ev" / "report.html").is_file()


def test_compare_writes_one_table_and_one_plot(models, capsys):
    root = models
    out = root / "cmp"
    rc = cli.main(["evaluate", "--compare", str(root / "run"), str(root / "export"),
                   "--data", str(root / "data"), "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    res = json.loads((out / "comparison.json").read_text())
    assert [m["model"] for m in res["models"]] == ["run", "export"]
    assert abs(res["models"][0]["AP50"] - res["models"][1]["AP50"]) <= 0.005
    assert "AP shape" in res["models"][0]
    assert (out / "comparison.png").is_file() and (out / "comparison.md").is_file()
    assert (out / "run" / "report.html").is_file() and (out / "export" / "report.html").is_file()


def test_training_logs_eval_images_and_pr_curve_to_tensorboard(models):
    import tensorflow as tf

    root = models
    tags = set()
    for event_file in (root / "run" / "eval").glob("events.out.tfevents.*"):
        for ev in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update((v.tag, ev.step) for v in ev.summary.value)
    assert {("eval/predictions", 4), ("eval/pr_curves", 4), ("AP50", 4)} <= tags, tags
