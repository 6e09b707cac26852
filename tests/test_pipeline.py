"""The whole job on tiny generated data: convert → train (a few steps) → resume → evaluate →
export (checked against the checkpoint) → detect. Slow-ish (about 2 minutes on 2 cores)."""
import json

import numpy as np
import pytest

from od import detect, evaluate, export, layout, train
from od import label_map as label_map_lib
from od import model as model_lib
from od.data.convert import convert
from od.errors import CheckpointError, ConfigError, LabelMapError
from tests.conftest import CONFIGS, SHARED, TINY, needs_shared


@pytest.fixture(scope="module")
def trained(tiny_run):
    return tiny_run


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
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel.FromString(
        (root / "export" / "saved_model" / "saved_model.pb").read_bytes())
    names = [f.signature.name for f in saved.meta_graphs[0].graph_def.library.function]
    for fn in ("inference_from_image_tensors", "inference_from_image_bytes"):  # traced once
        assert sum(n.startswith(f"__inference_{fn}_") for n in names) == 1, names

    det = detect.Detector(root / "export")
    for shape in [(50, 70, 3), (120, 90, 3)]:  # any size
        out = det(np.full(shape, 128, np.uint8))
        assert out.boxes.shape[1] == 4 and out.width == shape[1] and out.height == shape[0]
        assert ((out.boxes >= 0) & (out.boxes <= 1)).all()

    results = detect.detect_folder(root / "export", root / "raw" / "images", root / "det",
                                   min_score=0.0, voc=True, crops=True, progress=False)
    assert len(results["images"]) == 24 and results["skipped"] == []
    assert len(list((root / "det").glob("shapes-*.jpg"))) == 24
    saved = json.loads((root / "det" / "detections.json").read_text())
    assert saved == results
    assert (root / "det" / "detections.csv").read_text().startswith(
        "filename,width,height,class,xmin,ymin,xmax,ymax,score")
    assert len(list((root / "det" / "voc").glob("*.xml"))) == 24


# ---- fine-tuning from a whole-detector checkpoint ---------------------------------------------
FROZEN = ["train.steps=2", "train.learning_rate=0", "train.warmup_learning_rate=0",
          "train.l2_weight_decay=0", "train.checkpoint_every=2"]  # weights stay as initialised
FIVE = """item { id: 1 name: 'hexagon' }
item { id: 2 name: 'circle' }
item { id: 3 name: 'square' }
item { id: 4 name: 'triangle' }
"""


@pytest.fixture(scope="module")
def five_class_data(trained):
    """The same images converted with a label map of 4 classes (5 with background)."""
    root, _ = trained
    (root / "five.pbtxt").write_text(FIVE)
    convert(root / "raw" / "annotations", root / "data5", format="voc",
            images=root / "raw" / "images", label_map=root / "five.pbtxt",
            split=(0.5, 0.25, 0.25))
    return root / "data5"


def _weights(prefix):
    import tensorflow as tf

    return {n: tf.train.load_variable(prefix, n) for n, _ in tf.train.list_variables(prefix)
            if n.endswith("/.ATTRIBUTES/VARIABLE_VALUE") and "OPTIMIZER_SLOT" not in n
            and n.split("/")[0] in ("backbone", "decoder", "head")
            and ("kernel" in n or "bias" in n or "gamma" in n or "beta" in n)}


@pytest.mark.slow
def test_fine_tune_from_detector_restores_backbone_fpn_and_remakes_head(
        trained, five_class_data, tmp_path):
    root, _ = trained
    source = layout.latest_checkpoint(root / "run")
    assert model_lib.inspect_checkpoint(source).num_classes == 4
    train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "b", progress=False,
                    overrides=[f"data.train={five_class_data}", *TINY, *FROZEN,
                               f"train.fine_tune_checkpoint={root / 'run'}",
                               "train.fine_tune_checkpoint_type=detector"])
    info = model_lib.inspect_checkpoint(layout.latest_checkpoint(tmp_path / "b"))
    assert info.num_classes == 5 and info.modules == {"backbone", "decoder", "head"}
    before, after = _weights(source), _weights(info.prefix)
    shared = [n for n in before if n.startswith(("backbone/", "decoder/"))]
    assert len(shared) > 50
    for n in shared:  # backbone and FPN come from the detector checkpoint
        np.testing.assert_array_equal(before[n], after[n], err_msg=n)
    cls = "head/_classifier/bias/.ATTRIBUTES/VARIABLE_VALUE"
    assert before[cls].shape != after[cls].shape  # a new class head for 5 classes
    box = "head/_box_convs/0/kernel/.ATTRIBUTES/VARIABLE_VALUE"
    assert not np.array_equal(before[box], after[box])  # the head is made anew
    cfg, lm = model_lib.load_run(tmp_path / "b")
    assert cfg.model.num_classes == 5 and lm.names[0] == "hexagon"


@pytest.mark.slow
def test_fine_tune_full_restores_the_head_of_the_same_label_map(trained, tmp_path):
    root, _ = trained
    source = layout.latest_checkpoint(root / "run")
    train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "c", progress=False,
                    overrides=[f"data.train={root / 'data'}", *TINY, *FROZEN,
                               f"train.fine_tune_checkpoint={source}",
                               "train.fine_tune_checkpoint_type=full"])
    before = _weights(source)
    after = _weights(layout.latest_checkpoint(tmp_path / "c"))
    heads = [n for n in before if n.startswith("head/")]
    assert heads
    for n in heads:
        np.testing.assert_array_equal(before[n], after[n], err_msg=n)


@pytest.mark.slow
def test_full_fine_tune_with_another_label_map_is_a_clear_error(trained, five_class_data,
                                                                tmp_path):
    root, _ = trained
    with pytest.raises(LabelMapError, match=r"ids up to 4 \(5 classes.*predicts 4.*"
                                            r"fine_tune_checkpoint_type=detector"):
        train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "d", progress=False,
                        overrides=[f"data.train={five_class_data}", *TINY,
                                   f"train.fine_tune_checkpoint={root / 'run'}",
                                   "train.fine_tune_checkpoint_type=full"])
    assert not (tmp_path / "d" / "checkpoint").exists()
    # same number of classes, other names: refused too (the run folder has its label map)
    renamed = label_map_lib.parse("item { id: 1 name: 'ring' } item { id: 2 name: 'square' } "
                                  "item { id: 3 name: 'triangle' }")
    info = model_lib.inspect_checkpoint(layout.latest_checkpoint(root / "run"))
    with pytest.raises(LabelMapError, match="id 1: 'circle' → 'ring'"):
        model_lib.check_head(info, renamed, tmp_path / "renamed.pbtxt", "fix")


@pytest.mark.slow
def test_run_whose_label_map_does_not_fit_the_checkpoint_is_refused(trained, tmp_path):
    import shutil

    root, _ = trained
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    (run / "label_map.pbtxt").write_text(FIVE)
    with pytest.raises(LabelMapError, match="trained with num_classes 4"):
        model_lib.load_run(run)
    text = (run / "pipeline.yaml").read_text().replace("num_classes: 4", "num_classes: 5")
    (run / "pipeline.yaml").write_text(text)
    with pytest.raises(LabelMapError, match="class head of checkpoint .*predicts 4"):
        evaluate.evaluate(run, str(root / "data" / "test-*.tfrecord"), progress=False)


@needs_shared
@pytest.mark.slow
def test_backbone_only_checkpoint_as_detector_is_a_clear_error(trained, tmp_path):
    root, _ = trained
    with pytest.raises(CheckpointError, match="backbone-only.*fine_tune_checkpoint_type=backbone"):
        train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "e", progress=False,
                        overrides=[f"data.train={root / 'data'}", *TINY,
                                   f"train.fine_tune_checkpoint="
                                   f"{SHARED / 'weights' / 'mobilenet_v2_1.0_imagenet'}",
                                   "train.fine_tune_checkpoint_type=detector"])


@pytest.mark.slow
def test_train_model_equals_zoo_detector_fine_tunes_from_its_checkpoint(trained, tmp_path,
                                                                        monkeypatch):
    """``model=retinanet_mobilenetv2_coco`` offline: the zoo archive is pre-filled in the cache
    (saved here the way Model Garden's trainer saves, COCO head of 91 classes); training restores
    its backbone and FPN and makes a head for the 3 shape classes."""
    import tarfile

    import tensorflow as tf

    from od import zoo, zoo_bench

    root, _ = trained
    entry = zoo.get("retinanet_mobilenetv2_coco")
    published = zoo_bench.build_detector(entry, 128)
    folder = tmp_path / "pub" / "mobilenetv2_ssd_i256_ckpt"
    prefix = tf.train.Checkpoint(model=published, **published.checkpoint_items).save(
        str(folder / "ckpt"))
    assert model_lib.inspect_checkpoint(prefix).num_classes == 91
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    with tarfile.open(cache / "downloads" / entry.url.rsplit("/", 1)[1], "w:gz") as t:
        t.add(folder, arcname=folder.name)
    monkeypatch.setenv("OD_CACHE_DIR", str(cache))
    train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "z", progress=False,
                    overrides=[f"data.train={root / 'data'}", f"model={entry.name}",
                               "model.input_size=128", "train.batch_size=2",
                               "train.steps_per_loop=2", *FROZEN])
    cfg, _ = model_lib.load_run(tmp_path / "z")
    assert cfg.train.fine_tune_checkpoint.startswith(str(cache))
    assert cfg.train.fine_tune_checkpoint_type == "detector"
    before = _weights(prefix)
    after = _weights(layout.latest_checkpoint(tmp_path / "z"))
    shared = [n for n in before if n.startswith(("backbone/", "decoder/"))]
    assert len(shared) > 100
    for n in shared:
        np.testing.assert_array_equal(before[n], after[n], err_msg=n)
    assert model_lib.inspect_checkpoint(layout.latest_checkpoint(tmp_path / "z")
                                        ).num_classes == 4


@pytest.mark.slow
def test_checkpoint_of_another_architecture_is_a_checkpoint_error(trained, tmp_path):
    """Model Garden restores fine_tune_checkpoint in the trainer's initialize(); a checkpoint of
    another FPN width fails there and is reported as a CheckpointError naming the checkpoint
    (typed where it is raised, not recognised by message text)."""
    root, _ = trained
    source = layout.latest_checkpoint(root / "run")
    wider = [o for o in TINY if not o.startswith("model.fpn_filters=")] + ["model.fpn_filters=24"]
    with pytest.raises(CheckpointError, match="do not fit this model"):
        train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "w", progress=False,
                        overrides=[f"data.train={root / 'data'}", *wider,
                                   f"train.fine_tune_checkpoint={source}",
                                   "train.fine_tune_checkpoint_type=detector"])
