"""Pipeline configs: layering, typed overrides, errors with suggestions, Model Garden build."""
import pytest
import yaml

from od import config, experiment
from od.errors import ConfigError
from tests.conftest import CONFIGS


def test_defaults_and_typed_overrides():
    cfg = config.load(overrides=["train.batch_size=4", "train.learning_rate=0.02",
                                 "data.hflip=false", "model.aspect_ratios=[0.5,1,2]"])
    assert cfg.train.batch_size == 4 and isinstance(cfg.train.batch_size, int)
    assert cfg.train.learning_rate == 0.02
    assert cfg.data.hflip is False
    assert cfg.model.aspect_ratios == (0.5, 1.0, 2.0)


def test_unknown_key_names_the_nearest():
    with pytest.raises(ConfigError, match="Did you mean 'train.batch_size'"):
        config.load(overrides=["train.batchsize=8"])
    with pytest.raises(ConfigError, match="unknown config key 'trian.steps'.*'train.steps'"):
        config.load(overrides=["trian.steps=8"])


def test_wrong_type_and_impossible_values():
    with pytest.raises(ConfigError, match="not a valid int"):
        config.load(overrides=["train.steps=ten"])
    with pytest.raises(ConfigError, match="multiple of 2\\*\\*model.max_level"):
        config.load(overrides=["model.input_size=320"])
    with pytest.raises(ConfigError, match="choose one of"):
        config.load(overrides=["runtime.strategy=magic"])
    with pytest.raises(ConfigError, match="section.key=value"):
        config.load(overrides=["train.steps"])



@pytest.mark.parametrize("override, message", [
    ("train.learning_rate=nan", "train.learning_rate = nan is not a finite number"),
    ("model.anchor_size=inf", "model.anchor_size = inf is not a finite number"),
    ("model.aspect_ratios=[]", "model.aspect_ratios is empty"),
    ("model.aspect_ratios=0.5,-1", r"model.aspect_ratios = \[0.5, -1.0\] must be > 0 \(each"),
    ("model.num_scales=0", "model.num_scales = 0 must be >= 1; the default is 3"),
    ("model.nms_iou_threshold=0", r"must be in \(0, 1\]"),
    ("eval.min_score=2", r"eval.min_score = 2.0 must be in \[0, 1\]"),
    ("train.momentum=1", r"must be in \[0, 1\)"),
    ("train.lr_boundaries=300,200", "strictly increasing"),
])
def test_values_that_cannot_train_are_refused_before_building(override, message):
    # these used to pass the checks and fail deep in TensorFlow (an empty ConcatV2, a math
    # domain error) or, for NaN, train to nothing; each names the override and a valid value
    with pytest.raises(ConfigError, match=message) as e:
        config.load(overrides=[override])
    assert f"override {override!r}" in str(e.value)

def test_layers_apply_in_order(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("train:\n  batch_size: 2\n  steps: 5\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("train:\n  steps: 7\n")
    cfg = config.load(base, [extra], ["train.steps=9"])
    assert (cfg.train.batch_size, cfg.train.steps) == (2, 9)
    cfg = config.load(base, [extra])
    assert cfg.train.steps == 7
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 7\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown config key 'train.stepz'.*train.steps"):
        config.load(bad)


def test_saved_config_reloads_identically(tmp_path):
    cfg = config.load(CONFIGS / "retinanet_mobilenetv2_fpn_256.yaml", overrides=["train.steps=42"])
    config.save(cfg, tmp_path / "pipeline.yaml")
    assert config.load(tmp_path / "pipeline.yaml") == cfg
    assert yaml.safe_load((tmp_path / "pipeline.yaml").read_text())["train"]["steps"] == 42


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_builds_its_model(path, tmp_path):
    """Each config in configs/ builds its Model Garden model at a tiny input size."""
    import numpy as np

    from od.model import build_model

    cfg = config.load(path)
    small = 2 ** cfg.model.max_level
    cfg = config.load(path, overrides=[f"model.input_size={small}", "model.num_classes=3"])
    model = build_model(cfg)
    from od.model import detection_module
    module = detection_module(cfg, model, batch_size=1)
    out = module.serve(np.zeros((1, small, small + 8, 3), np.uint8))
    assert out["detection_boxes"].shape[-1] == 4


def test_resolve_takes_num_classes_from_label_map(tmp_path):
    from od import label_map

    (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"")
    label_map.write(label_map.LabelMap.from_names(["a", "b"]), tmp_path / "label_map.pbtxt")
    cfg, lm = experiment.resolve(config.load(overrides=[f"data.train={tmp_path}"]))
    assert cfg.model.num_classes == 3 and lm.names == ["a", "b"]
    assert cfg.data.train.endswith("train-*.tfrecord")
    with pytest.raises(ConfigError, match="model.num_classes = 5 but the label map"):
        experiment.resolve(config.load(overrides=[f"data.train={tmp_path}", "model.num_classes=5"]))
    with pytest.raises(ConfigError, match="no TFRecord shards match"):
        experiment.resolve(config.load(overrides=[f"data.train={tmp_path}/nothing-*.tfrecord"]))


def test_model_equals_zoo_name_takes_architecture_and_checkpoint():
    cfg = config.load(CONFIGS / "retinanet_mobilenetv2_fpn_256.yaml",
                      overrides=["model=retinanet_spinenet49_coco", "train.steps=10"])
    assert (cfg.model.backbone, cfg.model.backbone_id, cfg.model.decoder) == \
        ("spinenet", "49", "identity")
    assert cfg.model.input_size == 640
    assert cfg.train.fine_tune_checkpoint == "retinanet_spinenet49_coco"
    assert cfg.train.fine_tune_checkpoint_type == "detector" and cfg.train.steps == 10
    cfg = config.load(overrides=["model=resnet101_imagenet"])
    assert (cfg.model.backbone, cfg.model.backbone_id) == ("resnet", "101")
    assert cfg.train.fine_tune_checkpoint_type == "backbone"


def test_unknown_zoo_name_suggests():
    from od.errors import ZooError
    with pytest.raises(ZooError, match="retinanet_spinenet49_coco"):
        config.load(overrides=["model=retinanet_spinenet_49"])


def test_every_zoo_entry_builds_from_its_config():
    """Each entry's config (plus its overrides) has the entry's backbone and input size."""
    from od import zoo
    for e in zoo.ZOO:
        assert (CONFIGS / e.config).is_file(), e.name
        cfg = config.load(overrides=[f"model={e.name}"])
        kind, model_id = e.backbone.split(":")
        assert (cfg.model.backbone, cfg.model.backbone_id) == (kind, model_id), e.name
        if e.init == "detector":
            assert cfg.model.input_size == e.input_size, e.name
            assert cfg.train.fine_tune_checkpoint_type == "detector"


def test_fine_tune_checkpoint_from_a_file_url_tarball(tmp_path, monkeypatch):
    """A tarball given by file:// URL is extracted into the cache and its prefix is used."""
    import tarfile

    from od import checkpoints
    from tests.conftest import SHARED
    weights = SHARED / "weights" / "mobilenet_v2_1.0_imagenet"
    if not weights.is_dir():
        pytest.skip("../shared is not present")
    tar = tmp_path / "mnv2.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(weights, arcname="mnv2")
    monkeypatch.setenv("OD_CACHE_DIR", str(tmp_path / "cache"))
    prefix = checkpoints.resolve(tar.as_uri())
    assert prefix.endswith("mobilenet_v2_1.0_imagenet") and str(tmp_path / "cache") in prefix


def test_fine_tune_pipelineconfig_path_checks_and_takes_zoo_model():
    """fine_tune(PipelineConfig, overrides) applies overrides like load() (model=<zoo name>
    included) and checks the result (issue 10)."""
    from od import config
    base = config.load(CONFIGS / "retinanet_mobilenetv2_fpn_256.yaml")
    cfg = config.apply_overrides(base, ["model=retinanet_mobilenetv2_coco", "train.steps=7"])
    assert cfg.train.fine_tune_checkpoint == "retinanet_mobilenetv2_coco"
    assert cfg.train.fine_tune_checkpoint_type == "detector" and cfg.train.steps == 7
    with pytest.raises(ConfigError, match="train.steps=-5"):
        config.apply_overrides(base, ["train.steps=-5"])
