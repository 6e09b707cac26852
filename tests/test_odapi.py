"""Importing Object Detection API pipeline.config files (od.odapi, `od config import`,
`od train --config pipeline.config`)."""
import json

import pytest

from od import config, experiment, odapi, odapi_schema
from od.cli import main
from od.errors import ConfigError
from tests.conftest import CONFIGS, ROOT, SHARED, TINY, needs_shared

SAMPLES = SHARED / "data" / "odapi_configs"
SSD = SAMPLES / "ssd_mobilenet_v2_320x320_coco17_tpu-8.config"
FRCNN = SAMPLES / "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config"

# An SSD with FPN (= RetinaNet, maps without --nearest) with the other optimiser/schedule forms.
RETINANET = """
model { ssd {
  num_classes: 3
  image_resizer { keep_aspect_ratio_resizer { min_dimension: 512 max_dimension: 640
                                               pad_to_max_dimension: true } }
  feature_extractor { type: 'ssd_resnet50_v1_fpn_keras'
    fpn { min_level: 3 max_level: 7 additional_layer_depth: 64 }
    conv_hyperparams { activation: SWISH } }
  anchor_generator { multiscale_anchor_generator {
    min_level: 3 max_level: 7 anchor_scale: 4.0 aspect_ratios: [1.0, 2.0, 0.5]
    scales_per_octave: 2 } }
  box_predictor { weight_shared_convolutional_box_predictor {
    depth: 32 num_layers_before_predictor: 2 use_depthwise: true } }
  some_future_field { nested { value: 1 } }
} }
train_config {
  batch_size: 8 num_steps: 1000
  optimizer { %s }
  data_augmentation_options { random_scale_crop_and_pad_to_square { scale_min: 0.5 scale_max: 1.5 } }
  data_augmentation_options { random_adjust_brightness { max_delta: 0.2 } }
  gradient_clipping_by_norm: 5.0
}
train_input_reader { label_map_path: "lm.pbtxt"
  tf_record_input_reader { input_path: "train-*.tfrecord" } }
"""
MANUAL = ("momentum_optimizer { momentum_optimizer_value: 0.8 learning_rate { "
          "manual_step_learning_rate { initial_learning_rate: 0.01 "
          "schedule { step: 500 learning_rate: 0.001 } schedule { step: 800 learning_rate: "
          "0.0001 } } } }")
EXPONENTIAL = ("adam_optimizer { learning_rate { exponential_decay_learning_rate { "
               "initial_learning_rate: 0.002 decay_steps: 100 decay_factor: 0.9 "
               "burnin_learning_rate: 0.0005 burnin_steps: 50 } } }")


def _rows(imported):
    return {r.field: r for r in imported.rows}


def test_recognised_by_content_not_extension(tmp_path):
    p = tmp_path / "pipeline.txt"
    p.write_text(RETINANET % MANUAL)
    assert odapi.is_pipeline_config(p)
    assert not odapi.is_pipeline_config(CONFIGS / "quickstart_shapes_128.yaml")
    (tmp_path / "flow.yaml").write_text("model: {input_size: 128}\n")
    assert not odapi.is_pipeline_config(tmp_path / "flow.yaml")  # a YAML flow mapping


def test_ssd_fpn_maps_directly_with_manual_steps(tmp_path):
    p = tmp_path / "pipeline.config"
    p.write_text(RETINANET % MANUAL)
    imp = odapi.import_config(p)
    m, t, d = imp.cfg.model, imp.cfg.train, imp.cfg.data
    assert (m.backbone, m.backbone_id, m.decoder, m.input_size) == ("resnet", "50", "fpn", 640)
    assert (m.fpn_filters, m.head_filters, m.head_convs, m.separable_conv) == (64, 32, 2, True)
    assert (m.num_scales, m.anchor_size, m.aspect_ratios, m.activation) == (2, 4.0,
                                                                            (1.0, 2.0, 0.5), "swish")
    assert m.num_classes == 4 and t.batch_size == 8 and t.steps == 1000 and t.clipnorm == 5.0
    assert (t.optimizer, t.lr_schedule, t.momentum) == ("sgd", "stepwise", 0.8)
    assert t.lr_boundaries == (500.0, 800.0) and t.lr_values == (0.01, 0.001, 0.0001)
    assert t.warmup_steps == 0 and (d.scale_min, d.scale_max, d.hflip) == (0.5, 1.5, False)
    assert (d.train, d.label_map) == ("train-*.tfrecord", "lm.pbtxt")
    rows = _rows(imp)
    assert rows["model.ssd.some_future_field.nested.value"].status == "ignored"
    aug = rows["train_config.data_augmentation_options.random_adjust_brightness.max_delta"]
    assert aug.status == "ignored" and "flip and scale jitter" in aug.note
    assert rows["model.ssd.image_resizer.keep_aspect_ratio_resizer.max_dimension"].status == \
        "mapped"
    assert rows["(absent) random_horizontal_flip"].target == "data.hflip=False"
    lr = experiment.to_experiment(imp.cfg).trainer.optimizer_config.learning_rate
    assert lr.type == "stepwise" and lr.stepwise.boundaries == [500, 800]


def test_freeze_variables_ignored_with_the_od_options(tmp_path):
    """The OD API's freeze_variables regexes name TF1 variables: listed as ignored, pointing at
    train.freeze_at / train.freeze_backbone, and nothing is frozen."""
    p = tmp_path / "pipeline.config"
    text = RETINANET % MANUAL
    at = text.index("train_config") + text[text.index("train_config"):].index("{") + 1
    p.write_text(text[:at] + '\n  freeze_variables: "FeatureExtractor/MobilenetV2/Conv/.*"'
                 '\n  update_trainable_variables: "BoxPredictor/.*"' + text[at:])
    imp = odapi.import_config(p)
    rows = _rows(imp)
    for key in ("train_config.freeze_variables", "train_config.update_trainable_variables"):
        assert rows[key].status == "ignored" and "train.freeze_at=K" in rows[key].note
    assert imp.cfg.train.freeze_at == 0 and not imp.cfg.train.freeze_backbone


def test_moving_average_maps_to_ema_decay(tmp_path):
    """``optimizer.use_moving_average`` → train.ema_decay (the OD API's 0.9999 when no decay is
    written), which Model Garden's optimizer config wraps in its ExponentialMovingAverage."""
    p = tmp_path / "pipeline.config"
    p.write_text(RETINANET % (MANUAL + " use_moving_average: true"))
    imp = odapi.import_config(p)
    assert imp.cfg.train.ema_decay == 0.9999
    assert _rows(imp)["train_config.optimizer.use_moving_average"].status == "mapped"
    p.write_text(RETINANET % (MANUAL + " use_moving_average: true moving_average_decay: 0.99"))
    imp = odapi.import_config(p)
    assert imp.cfg.train.ema_decay == 0.99
    ema = experiment.to_experiment(imp.cfg).trainer.optimizer_config.ema
    assert ema is not None and ema.average_decay == 0.99
    p.write_text(RETINANET % (MANUAL + " use_moving_average: false"))
    imp = odapi.import_config(p)
    assert imp.cfg.train.ema_decay == 0.0
    assert experiment.to_experiment(imp.cfg).trainer.optimizer_config.ema is None


def test_exponential_schedule_adam_and_burn_in(tmp_path):
    p = tmp_path / "pipeline.config"
    p.write_text(RETINANET % EXPONENTIAL)
    t = odapi.import_config(p).cfg.train
    assert (t.optimizer, t.lr_schedule, t.learning_rate) == ("adam", "exponential", 0.002)
    assert (t.lr_decay_steps, t.lr_decay_rate, t.lr_staircase) == (100, 0.9, True)
    assert (t.warmup_steps, t.warmup_learning_rate) == (50, 0.0005)
    from official.modeling import optimization
    opt = experiment.to_experiment(odapi.import_config(p).cfg).trainer.optimizer_config
    assert opt.optimizer.type == "adam" and opt.learning_rate.exponential.decay_rate == 0.9
    lr = optimization.OptimizerFactory(opt).build_learning_rate()
    assert abs(float(lr(50)) - 0.002) < 1e-6 and float(lr(250)) < 0.002


def test_unparsable_file_is_a_config_error(tmp_path):
    p = tmp_path / "pipeline.config"
    p.write_text("model { ssd { num_classes: 'three' } }")
    with pytest.raises(ConfigError, match=r"pipeline.config: not a valid OD API pipeline.config"):
        odapi.import_config(p)


@needs_shared
def test_ssd_without_fpn_needs_nearest():
    with pytest.raises(ConfigError, match=r"SSD without FPN.*Choices: pass --nearest.*RetinaNet"):
        odapi.import_config(SSD)


def test_centernet_needs_nearest(tmp_path):
    p = tmp_path / "pipeline.config"
    p.write_text("model { center_net { num_classes: 2 feature_extractor { type: 'hourglass_104' }"
                 " image_resizer { fixed_shape_resizer { height: 512 width: 512 } } } }")
    with pytest.raises(ConfigError, match=r"CenterNet.*Choices: pass --nearest.*RetinaNet resnet 50"):
        odapi.import_config(p)
    imp = odapi.import_config(p, nearest=True)
    assert (imp.cfg.model.architecture, imp.cfg.model.backbone) == ("retinanet", "resnet")
    assert _rows(imp)["model.center_net.feature_extractor.type"].status == "approximated"


@needs_shared
def test_placeholders_are_named_with_their_override():
    with pytest.raises(ConfigError, match=r"PATH_TO_BE_CONFIGURED is still in train_input_reader"
                       r"\.tf_record_input_reader\.input_path \(data\.train=\.\.\.\)"):
        odapi.import_config(SSD, nearest=True)


@needs_shared
def test_samples_import_with_a_complete_table():
    for sample in (SSD, FRCNN):
        imp = odapi.import_config(sample, nearest=True, placeholders="keep")
        written = {p for p, _ in odapi_schema.field_paths(sample.read_text())}
        assert written == {r.field for r in imp.rows if not r.field.startswith("(absent)")}
        assert all(r.status in ("mapped", "approximated", "ignored") and (r.target or r.note)
                   for r in imp.rows)
    ssd = _rows(odapi.import_config(SSD, nearest=True, placeholders="keep"))
    assert ssd["model.ssd.loss.classification_loss.weighted_sigmoid_focal.alpha"].target == \
        "train.focal_loss_alpha=0.75"
    assert ssd["model.ssd.image_resizer.fixed_shape_resizer.height"].target == \
        "model.input_size=256"
    assert ssd["model.ssd.feature_extractor.type"].status == "approximated"
    assert ssd["model.ssd.box_coder.faster_rcnn_box_coder.y_scale"].status == "ignored"
    frcnn = odapi.import_config(FRCNN, placeholders="keep")  # Faster R-CNN: no --nearest
    c, rows = frcnn.cfg, _rows(frcnn)
    assert (c.model.architecture, c.model.backbone, c.model.backbone_id, c.model.input_size) == \
        ("faster_rcnn", "resnet", "50", 640)
    assert (c.model.min_level, c.model.max_level, c.model.num_scales) == (2, 6, 1)
    assert (c.train.learning_rate, c.train.warmup_steps, c.train.fine_tune_checkpoint_type) == \
        (0.04, 2000, "backbone")
    assert (c.model.max_detections, c.model.nms_iou_threshold) == (300, 0.6)
    assert rows["model.faster_rcnn.second_stage_post_processing.score_converter"].status == \
        "mapped"  # softmax, as Model Garden's Faster R-CNN
    assert rows["model.faster_rcnn.feature_extractor.type"].status == "approximated"  # + FPN


@needs_shared
def test_num_classes_is_checked_against_the_label_map(tmp_path):
    (tmp_path / "lm.pbtxt").write_text("item { id: 1 name: 'a' } item { id: 2 name: 'b' }")
    with pytest.raises(ConfigError, match=r"num_classes = 90 but the label map .* ids up to 2: "
                                          r"set num_classes: 2"):
        odapi.import_config(SSD, nearest=True, placeholders="keep",
                            overrides=[f"data.label_map={tmp_path / 'lm.pbtxt'}"])


@needs_shared
def test_config_import_cli(tmp_path, capsys):
    out = tmp_path / "od.yaml"
    assert main(["config", "import", str(FRCNN), "--nearest", "--out", str(out)]) == 0
    assert "ignored" in capsys.readouterr().out
    table = json.loads((tmp_path / "od.mapping.json").read_text())
    assert table["counts"]["mapped"] > 10 and (tmp_path / "od.mapping.txt").is_file()
    assert config.load(out).model.architecture == "faster_rcnn"
    assert main(["config", "import", str(FRCNN), "--nearest", "--out", str(out)]) == 2  # exists
    assert main(["config", "import", str(SSD)]) == 2  # no --nearest
    assert "--nearest" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from od import synthetic
    from od.data.convert import convert

    root = tmp_path_factory.mktemp("odapi")
    synthetic.generate(root / "raw", 12, size=(80, 64), seed=3)
    convert(root / "raw" / "annotations", root / "data", format="voc",
            images=root / "raw" / "images", split=(0.5, 0.25, 0.25))
    return root / "data"


@pytest.mark.slow
@needs_shared
@pytest.mark.parametrize("sample", [SSD, FRCNN], ids=["ssd", "faster_rcnn"])
def test_sample_trains_two_steps(sample, tiny_data, tmp_path):
    """The SSD sample (→ RetinaNet, --nearest) on od-converted data; the Faster R-CNN sample (→ od's
    Faster R-CNN) on the raccoon TFRecord written by the OD API's own tooling, read as it is,
    with the shipped raccoon label map."""
    run = tmp_path / "run"
    data = [f"data.train={tiny_data}", "data.val=", "data.label_map="] if sample == SSD else [
        f"data.train={SHARED / 'data' / 'raccoon' / 'data' / 'test.record'}", "data.val=",
        f"data.label_map={ROOT / 'label_maps' / 'raccoon_label_map.pbtxt'}"]
    overrides = [*data, "train.fine_tune_checkpoint=", "model.num_classes=0", *TINY,
                 "model.max_level=6", "train.steps=2"]
    assert main(["train", "--config", str(sample), "--nearest", "--model-dir", str(run),
                 "--no-progress", *overrides]) == 0
    assert json.loads((run / "train_result.json").read_text())["step"] == 2
    table = json.loads((run / "odapi_mapping.json").read_text())
    assert table["source"] == str(sample) and (run / "odapi_mapping.txt").is_file()
    saved = config.load(run / "pipeline.yaml")
    assert saved.model.num_classes == (4 if sample == SSD else 2)
    assert saved.model.name.startswith("odapi_")
    assert saved.model.architecture == ("retinanet" if sample == SSD else "faster_rcnn")
