"""A pipeline config (od.config) and its dataset → Model Garden's ``ExperimentConfig``.

``resolve`` fills what comes from the dataset (shard globs, label map, ``num_classes``);
``to_experiment`` builds the ExperimentConfig from the resolved config.

The RetinaNet task is built here (two-stage Faster R-CNN in od.fasterrcnn, which starts from this
one); every field comes from the config's dataclasses, with the units given there. Model Garden's
own COCO evaluator is off (it breaks on NumPy 2); `od` evaluates with pycocotools (od.evaluate).
"""
from __future__ import annotations

import glob
import os
from dataclasses import replace

from od.config import FINE_TUNE_PARTS, ModelConfig, PipelineConfig, TrainConfig
from od.errors import ConfigError
from od.layout import label_map_path


def shard_pattern(source: str, split: str) -> str:
    """A data folder → ``folder/<split>-*.tfrecord``; a glob or file is returned unchanged."""
    if source and os.path.isdir(source):
        return os.path.join(source, f"{split}-*.tfrecord")
    return source


def data_folder(cfg: PipelineConfig) -> str:
    """The folder of ``data.train`` (itself when it is a folder, else the folder of its shard
    glob): where ``label_map.pbtxt`` and the other splits' shards are looked for; '' if unset."""
    if cfg.data.train and os.path.isdir(cfg.data.train):
        return cfg.data.train
    return os.path.dirname(cfg.data.train) if cfg.data.train else ""


def absolute(path: str) -> str:
    """A local path made absolute (a run's pipeline.yaml is read from any working folder); ''
    and URLs (``gs://...``) are returned unchanged."""
    return os.path.abspath(os.path.expanduser(path)) if path and "://" not in path else path


def resolve(cfg: PipelineConfig):
    """Fill what comes from the dataset and check it exists.

    Returns:
      (cfg, label_map): ``data.label_map`` and ``model.num_classes`` (label map max id + 1) set,
      ``data.train``/``data.val`` as shard globs; local paths absolute.
    Raises:
      ConfigError: no training data, no shards matching data.train (or a data.val given), no
        label map, a num_classes that disagrees with the label map, or a backbone_id or
        activation Model Garden cannot build.
    """
    from od import label_map as label_map_lib

    if not cfg.data.train:
        raise ConfigError("data.train is empty: set it to the folder written by `od data convert` "
                          "(e.g. data.train=DATA) or a glob of TFRecord shards.")
    folder = data_folder(cfg)
    train = shard_pattern(cfg.data.train, "train")
    if not glob.glob(train):
        others = sorted(os.path.basename(f) for f in glob.glob(os.path.join(folder, "*.tfrecord"))
                        ) if folder else []
        raise ConfigError(f"data.train: no TFRecord shards match {train!r}. " + (
            f"{folder} holds only {', '.join(others[:3])}: convert with a train share (e.g. "
            "--split 0.8,0.1,0.1, or --annotations train=PATH), or set data.train to the shards "
            "to train on." if others else
            "Run `od data convert` first, or fix the path."))
    val = shard_pattern(cfg.data.val or folder, "val") if (cfg.data.val or folder) else ""
    if val and not glob.glob(val):
        if cfg.data.val:  # given, not the data folder's optional val split: a wrong path
            raise ConfigError(f"data.val: no TFRecord shards match {val!r}. Fix the path, or "
                              "leave data.val empty (the data folder's val split, if any).")
        val = ""
    lm_path = cfg.data.label_map or str(label_map_path(folder))
    if not os.path.isfile(lm_path):
        raise ConfigError(f"no label map at {lm_path!r}; set data.label_map=PATH/label_map.pbtxt.")
    lm = label_map_lib.read(lm_path)
    needed = lm.max_id + 1
    if cfg.model.num_classes and cfg.model.num_classes != needed:
        raise ConfigError(f"model.num_classes = {cfg.model.num_classes} but the label map "
                          f"{lm_path} has ids up to {lm.max_id}, which needs {needed} (ids + "
                          "background). Remove model.num_classes; it comes from the label map.")
    check_architecture(cfg.model)
    cfg = replace(cfg, data=replace(cfg.data, train=absolute(train), val=absolute(val),
                                    label_map=absolute(lm_path)),
                  model=replace(cfg.model, num_classes=needed))
    return cfg, lm


def check_architecture(m: ModelConfig) -> None:
    """Raise ConfigError when Model Garden cannot build ``model.backbone_id`` for
    ``model.backbone`` or ``model.activation`` (its own lists of ids; checked before anything
    is built or written, as Model Garden would fail deep inside with a bare ValueError)."""
    import difflib

    from official.modeling import tf_utils
    from official.vision.modeling.backbones import mobilenet, resnet, spinenet, spinenet_mobile

    ids = {"mobilenet": mobilenet.SUPPORTED_SPECS_MAP, "resnet": resnet.RESNET_SPECS,
           "spinenet": spinenet.SCALING_MAP, "spinenet_mobile": spinenet_mobile.SCALING_MAP}
    valid = [str(k) for k in ids.get(m.backbone, ())]
    if valid and str(m.backbone_id) not in valid:
        near = difflib.get_close_matches(str(m.backbone_id), valid, n=1)
        raise ConfigError(f"model.backbone_id = {m.backbone_id!r} is not a {m.backbone} of "
                          f"Model Garden{f' (did you mean {near[0]!r}?)' if near else ''}; "
                          f"choose one of {', '.join(valid)}.")
    try:
        tf_utils.get_activation(m.activation)
    except (ValueError, TypeError):
        raise ConfigError(f"model.activation = {m.activation!r} is not an activation Model "
                          "Garden knows; use e.g. relu, relu6, swish or hard_swish.") from None


def backbone_config(m: ModelConfig):
    """Model Garden's ``backbones.Backbone`` config for ``model.backbone``/``backbone_id``.
    Raises ConfigError for an id Model Garden does not have (:func:`check_architecture`)."""
    from official.vision.configs import backbones

    check_architecture(m)

    if m.backbone == "mobilenet":
        return backbones.Backbone(type="mobilenet", mobilenet=backbones.MobileNet(
            model_id=m.backbone_id, filter_size_scale=1.0))
    if m.backbone == "resnet":
        return backbones.Backbone(type="resnet", resnet=backbones.ResNet(
            model_id=int(m.backbone_id)))
    if m.backbone == "spinenet":
        return backbones.Backbone(type="spinenet", spinenet=backbones.SpineNet(
            model_id=str(m.backbone_id), min_level=m.min_level, max_level=m.max_level))
    return backbones.Backbone(type="spinenet_mobile", spinenet_mobile=backbones.SpineNetMobile(
        model_id=str(m.backbone_id), min_level=m.min_level, max_level=m.max_level))


def lr_schedule_choice(optimizer: dict, t: TrainConfig) -> dict:
    """Swap the cosine default of ``optimizer`` (a Model Garden OptimizationConfig dict) for
    ``train.lr_schedule`` (warm-up is kept)."""
    lr = t.learning_rate
    schedule = {
        "cosine": None,
        "constant": {"learning_rate": lr},
        "exponential": {"initial_learning_rate": lr, "decay_steps": t.lr_decay_steps,
                        "decay_rate": t.lr_decay_rate, "staircase": t.lr_staircase},
        "stepwise": {"boundaries": [int(b) for b in t.lr_boundaries],
                     "values": [float(v) for v in t.lr_values]},
    }[t.lr_schedule]
    if schedule is not None:
        optimizer["learning_rate"] = {"type": t.lr_schedule, t.lr_schedule: schedule}
    return optimizer


def to_experiment(cfg: PipelineConfig):
    """Build the Model Garden ``ExperimentConfig`` (RetinaNet task) for a resolved config.

    Model Garden's own COCO evaluator is switched off (it breaks on NumPy 2); `od` evaluates
    with pycocotools itself (od.evaluate).
    """
    from official.core import config_definitions as cfg_lib
    from official.modeling import optimization
    from official.vision.configs import common, decoders
    from official.vision.configs import retinanet as rn

    if cfg.model.architecture == "faster_rcnn":  # two-stage: od/fasterrcnn.py
        from od import fasterrcnn
        return fasterrcnn.to_experiment(cfg)
    m, d, t = cfg.model, cfg.data, cfg.train
    decoder = (decoders.Decoder(type="fpn", fpn=decoders.FPN(
        num_filters=m.fpn_filters, use_separable_conv=m.separable_conv))
        if m.decoder == "fpn" else decoders.Decoder(type="identity", identity=decoders.Identity()))
    parts = FINE_TUNE_PARTS[t.fine_tune_checkpoint_type]
    modules = "all" if "head" in parts else list(parts)  # Model Garden's init_checkpoint_modules
    model = rn.RetinaNet(
        num_classes=m.num_classes, input_size=[m.input_size, m.input_size, 3],
        min_level=m.min_level, max_level=m.max_level,
        anchor=rn.Anchor(num_scales=m.num_scales, aspect_ratios=list(m.aspect_ratios),
                         anchor_size=m.anchor_size),
        backbone=backbone_config(m), decoder=decoder,
        head=rn.RetinaNetHead(num_convs=m.head_convs, num_filters=m.head_filters,
                              use_separable_conv=m.separable_conv),
        detection_generator=rn.DetectionGenerator(
            max_num_detections=m.max_detections, nms_iou_threshold=m.nms_iou_threshold,
            pre_nms_score_threshold=m.score_threshold, nms_version=m.nms_version),
        norm_activation=common.NormActivation(activation=m.activation, use_sync_bn=False))
    dtype = {"float32": "float32", "mixed_float16": "float16",
             "mixed_bfloat16": "bfloat16"}[cfg.runtime.mixed_precision]
    parser = rn.Parser(aug_rand_hflip=d.hflip, aug_scale_min=d.scale_min,
                       aug_scale_max=d.scale_max,
                       aug_type=None if d.aug_type == "none" else common.Augmentation(
                           type=d.aug_type))
    opt = {"sgd": {"momentum": t.momentum}, "adam": {}, "rmsprop": {},
           "adamw": {"weight_decay_rate": t.weight_decay}}[t.optimizer]
    optimizer = {"optimizer": {"type": t.optimizer, t.optimizer: opt},
                 "learning_rate": {"type": "cosine", "cosine": {
                     "initial_learning_rate": t.learning_rate, "decay_steps": t.steps}},
                 "warmup": {"type": "linear", "linear": {
                     "warmup_steps": min(t.warmup_steps, t.steps // 2),
                     "warmup_learning_rate": t.warmup_learning_rate}}}
    if t.clipnorm > 0:
        optimizer["optimizer"][t.optimizer]["global_clipnorm"] = t.clipnorm
    optimizer = lr_schedule_choice(optimizer, t)
    if t.ema_decay:  # Model Garden's ExponentialMovingAverage (dynamic warm-up of the decay)
        optimizer["ema"] = {"average_decay": t.ema_decay, "trainable_weights_only": True,
                            "dynamic_decay": True}
    task = rn.RetinaNetTask(
        model=model,
        train_data=rn.DataConfig(input_path=d.train, is_training=True,
                                 global_batch_size=t.batch_size, dtype=dtype, parser=parser,
                                 shuffle_buffer_size=d.shuffle_buffer, seed=t.seed or None),
        validation_data=rn.DataConfig(input_path=d.val or d.train, is_training=False,
                                      global_batch_size=1, dtype=dtype),
        losses=rn.Losses(l2_weight_decay=t.l2_weight_decay, focal_loss_alpha=t.focal_loss_alpha,
                         focal_loss_gamma=t.focal_loss_gamma),
        init_checkpoint=None if t.fine_tune_checkpoint in ("", "none") else t.fine_tune_checkpoint,
        init_checkpoint_modules=modules,
        use_coco_metrics=False,
        freeze_backbone=t.freeze_backbone,
        export_config=rn.ExportConfig(output_normalized_coordinates=True))
    trainer = cfg_lib.TrainerConfig(
        train_steps=t.steps, steps_per_loop=t.steps_per_loop,
        summary_interval=t.steps_per_loop, checkpoint_interval=t.checkpoint_every,
        max_to_keep=t.max_checkpoints, validation_steps=1, validation_interval=t.steps,
        optimizer_config=optimization.OptimizationConfig(optimizer))
    runtime = cfg_lib.RuntimeConfig(mixed_precision_dtype=dtype)
    return cfg_lib.ExperimentConfig(task=task, trainer=trainer, runtime=runtime)

