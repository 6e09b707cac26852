"""Pipeline configs: commented YAML files in ``configs/`` → frozen dataclasses → Model Garden.

A pipeline config has five sections (``model``, ``data``, ``train``, ``eval``, ``runtime``); every
field is listed in the dataclasses below with its unit. Configs are layered, the OD API / Model
Garden way, each layer checked against the schema::

    configs/<model>.yaml  →  extra YAML files (--config)  →  key=value overrides

Overrides use dotted keys (``train.batch_size=8``) and are typed by the field (int, float, bool,
str, lists as ``[0.5,1,2]`` or ``0.5,1,2``). An unknown key is a ConfigError naming the nearest valid
key. ``od.experiment.resolve()`` fills what comes from the dataset (label map →
``num_classes``), and ``od.experiment.to_experiment()`` builds the Model Garden
``ExperimentConfig``. The resolved config is saved in the run folder as ``pipeline.yaml`` and loads as-is to repeat the run.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import yaml

from od import atomic
from od.config_check import check  # noqa: F401  (od.config.check: the public name)
from od.config_yaml import read_yaml as _read_yaml  # (also used by od.odapi)
from od.errors import ConfigError


@dataclass(frozen=True)
class ModelConfig:
    """The detector: a Model Garden RetinaNet with a chosen backbone."""

    name: str = "retinanet_mobilenetv2_fpn"  # free-form label of the architecture
    backbone: str = "mobilenet"      # Model Garden backbone type: mobilenet, resnet, spinenet, spinenet_mobile
    backbone_id: str = "MobileNetV2"  # the backbone's model_id (MobileNetV2, 50, 49 ...)
    decoder: str = "fpn"             # fpn or identity (SpineNet has its own multi-scale output)
    input_size: int = 256            # pixels, square; a multiple of 2**max_level; auto (0): od.anchors
    min_level: int = 3               # finest feature level (stride 2**min_level pixels)
    max_level: int = 7               # coarsest feature level
    fpn_filters: int = 128           # channels of the FPN decoder
    head_filters: int = 128          # channels of the box/class head convs
    head_convs: int = 4              # convs in each head tower
    separable_conv: bool = False     # depthwise-separable convs in FPN and head
    activation: str = "relu"         # relu, relu6, swish, hard_swish
    num_scales: int = 3              # anchor scales per level
    aspect_ratios: tuple = (0.5, 1.0, 2.0)  # anchor width/height ratios
    anchor_size: float = 4.0         # anchor side in units of the level's stride
    anchor_fit: str = "auto"         # auto: anchors fitted to the boxes at train start; off: as written
    num_classes: int = 0             # 0 = from the label map (max id + 1, background = 0)
    max_detections: int = 100        # boxes per image after NMS
    nms_iou_threshold: float = 0.5   # IoU above which NMS suppresses a box
    score_threshold: float = 0.05    # boxes below this score are dropped before NMS
    nms_version: str = "batched"     # Model Garden NMS: batched (per-class, fast on CPU/GPU), v1, v2, v3
    architecture: str = "retinanet"  # retinanet, or faster_rcnn (Model Garden maskrcnn task, no masks)


@dataclass(frozen=True)
class DataConfig:
    """Inputs: TFRecord shards written by ``od data convert`` (OD API tf.Example keys)."""

    train: str = ""                  # a converted data folder, or a glob of TFRecord shards
    val: str = ""                    # same, for periodic evaluation; '' = the folder's val split
    label_map: str = ""              # label_map.pbtxt; '' = the one in the data folder
    shuffle_buffer: int = 200        # examples
    hflip: bool = True               # random horizontal flip
    scale_min: float = 0.8           # random scale jitter, fraction of input_size
    scale_max: float = 1.2
    aug_type: str = "none"           # Model Garden's augmentation: none, autoaug (AutoAugment v0), randaug (RandAugment)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation: SGD with momentum, linear warm-up then cosine decay."""

    batch_size: int = 8              # images per step, over all replicas
    steps: int = 300                 # total optimiser steps
    learning_rate: float = 0.01      # peak learning rate after warm-up
    warmup_steps: int = 100          # steps of linear warm-up (capped at half of steps)
    warmup_learning_rate: float = 0.001  # learning rate at step 0
    momentum: float = 0.9
    clipnorm: float = 10.0           # global gradient-norm clip; 0 = off
    ema_decay: float = 0.0           # keep an exponential moving average of the weights (Model Garden's, warm-up included) and evaluate, export and detect with it; 0 = off
    l2_weight_decay: float = 4e-5
    fine_tune_checkpoint: str = ""   # checkpoint dir, prefix, tarball, file:// URL or zoo name; none = from scratch on purpose ('' = random init, with a note)
    fine_tune_checkpoint_type: str = "backbone"  # backbone, detector or full (see FINE_TUNE_PARTS)
    freeze_backbone: bool = False
    freeze_at: int = 0               # backbone layers up to output stride 2**freeze_at kept as the checkpoint has them (weights and BatchNorm statistics; Detectron2's FREEZE_AT): 0 none, 1 the stem, 2 up to stride 4; only when a checkpoint gives the backbone
    steps_per_loop: int = 10         # steps between progress/TensorBoard updates
    checkpoint_every: int = 100      # steps; a multiple of steps_per_loop
    max_checkpoints: int = 3         # checkpoints kept in the run folder
    eval_every: int = 0              # steps between evaluations on data.val; 0 = never
    seed: int = 0
    max_input_size: int = 640        # pixels; the largest size model.input_size auto may choose
    early_stop_patience: int = 0     # evaluations without an improvement of eval.best_metric before stopping; 0 = never
    early_stop_min_delta: float = 0.0  # smallest gain of eval.best_metric that counts as an improvement
    optimizer: str = "sgd"           # sgd (with momentum), adam, adamw or rmsprop
    weight_decay: float = 0.0001     # adamw's decoupled weight decay rate
    epochs: float = 0.0              # passes over the training images; > 0 replaces steps (steps = ceil(epochs * images / batch_size))
    lr_schedule: str = "cosine"      # cosine (to 0 at steps), exponential, stepwise or constant
    lr_decay_steps: int = 0          # exponential: steps per decay by lr_decay_rate
    lr_decay_rate: float = 0.1       # exponential: factor per lr_decay_steps
    lr_staircase: bool = False       # exponential: decay in steps, not continuously
    lr_boundaries: tuple = ()        # stepwise: steps where the rate changes (increasing)
    lr_values: tuple = ()            # stepwise: rates, one more than lr_boundaries
    focal_loss_alpha: float = 0.25   # class loss: focal-loss weight of positives
    focal_loss_gamma: float = 1.5    # class loss: focal-loss focusing exponent


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation and detection settings."""

    min_score: float = 0.5           # score threshold for confusion matrix and drawings
    iou_threshold: float = 0.5       # IoU for the threshold table and confusion matrix
    max_images: int = 0              # evaluate at most this many images; 0 = all
    best_metric: str = "AP50"        # COCO summary key that picks RUN/best/ (AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl)


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how to run: a ``tf.distribute`` strategy and precision."""

    strategy: str = "auto"           # auto, one_device, mirrored, multi_worker (= multi_worker_mirrored, needs TF_CONFIG), tpu
    num_gpus: int = -1               # GPUs to use with mirrored; -1 = all visible
    tpu: str = ""                    # TPU address for strategy tpu
    mixed_precision: str = "float32"  # float32, mixed_float16 (GPU) or mixed_bfloat16 (TPU/CPU)


@dataclass(frozen=True)
class PipelineConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


SECTIONS = {f.name: f.type for f in fields(PipelineConfig)}

#: The checkpoint parts each ``train.fine_tune_checkpoint_type`` restores: ``backbone`` an ImageNet
#: (or any) backbone; ``detector`` backbone + FPN of a detector, with the box and class head made
#: anew for the label map's classes; ``full`` the whole detector, head included, which needs a
#: checkpoint trained on the same label map (e.g. more training on new images of the same classes).
FINE_TUNE_PARTS = {"backbone": ("backbone",), "detector": ("backbone", "decoder"),
                   "full": ("backbone", "decoder", "head")}

def configs_dir() -> Path:
    """``configs/`` of a source checkout, else the copy installed as package ``od.configs``."""
    here = Path(__file__).resolve()
    for base in (here.parents[1] / "configs", here.parent / "configs"):
        if base.is_dir():
            return base
    raise ConfigError("cannot find the configs/ folder; reinstall od.")


def apply_zoo_model(cfg: "PipelineConfig", name: str, where: str = "model=") -> "PipelineConfig":
    """Take the architecture of zoo entry ``name`` and its checkpoint as fine_tune_checkpoint.

    Raises:
      ZooError: unknown zoo name (with the nearest names).
    """
    from od import zoo

    entry = zoo.get(name)
    preset = _merge(PipelineConfig(), {"model": _read_yaml(configs_dir() / entry.config)["model"]},
                    where)
    for key, value in entry.config_override:
        preset = set_key(preset, f"model.{key}", value, where)
    model = preset.model
    kind = "detector" if entry.init == "detector" else "backbone"
    return replace(cfg, model=model, train=replace(cfg.train, fine_tune_checkpoint=entry.name,
                                                   fine_tune_checkpoint_type=kind))


def _section_class(name: str):
    return {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig,
            "runtime": RuntimeConfig}[name]


def valid_keys() -> list[str]:
    return [f"{s}.{f.name}" for s in SECTIONS for f in fields(_section_class(s))]


def _unknown(key: str, where: str) -> ConfigError:
    near = difflib.get_close_matches(key, valid_keys() + list(SECTIONS), n=1, cutoff=0.5)
    hint = f" Did you mean {near[0]!r}?" if near else ""
    return ConfigError(f"{where}: unknown config key {key!r}.{hint} Valid keys are listed in "
                       "configs/*.yaml (run `od config show`).")


def _coerce(key: str, value, default, where: str):
    """Convert ``value`` (from YAML or a string override) to the type of ``default``."""
    kind = type(default)
    if key == "model.input_size" and str(value).strip().lower() == "auto":
        return 0  # input_size auto: chosen from the boxes at train start (od.anchors)
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "yes", "1", "on"):
                return True
            if str(value).lower() in ("false", "no", "0", "off"):
                return False
            raise ValueError
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [v for v in value.strip("[]() ").split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            elem = type(default[0]) if default else float
            return tuple(_number(v, elem) if elem in (int, float) else elem(v) for v in value)
        if isinstance(default, (int, float)):
            return _number(value, type(default))
        if isinstance(value, (dict, list, tuple, set)):  # a YAML list/mapping for a text key
            raise ValueError
        return "" if value is None else str(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{where}: {key} = {value!r} is not a valid {kind.__name__} "
                          f"(default {default!r}).") from None


def _number(value, kind):
    """``value`` (a YAML number or an override's text) as ``kind`` (int or float). A bool, a
    fraction for an int (``8.5``: never rounded) or an int out of float range is a ValueError /
    OverflowError; NaN and infinities pass as floats (od.config_check refuses them by key)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError
    if isinstance(value, str):
        try:
            return kind(int(value.strip()))
        except ValueError:
            number = float(value)
    else:
        number = value
    if kind is float:
        return float(number)
    if isinstance(number, float) and not number.is_integer():
        raise ValueError  # also NaN and infinities
    return int(number)


def _passes(cfg: PipelineConfig) -> bool:
    try:
        check(cfg, "")
    except ConfigError:
        return False
    return True


def _merge(cfg: PipelineConfig, mapping: dict, where: str) -> PipelineConfig:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{where}: a pipeline config is a mapping of sections (model:, data:, "
                          "train:, eval:, runtime:).")
    for section, values in mapping.items():
        if section not in SECTIONS:
            raise _unknown(str(section), where)
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: section {section!r} must be a mapping of keys.")
        for key, value in values.items():
            cfg = set_key(cfg, f"{section}.{key}", value, where)
    return cfg


def set_key(cfg: PipelineConfig, dotted: str, value, where: str = "override") -> PipelineConfig:
    """Return ``cfg`` with ``section.key`` set to ``value`` coerced to the field's type.

    Raises:
      ConfigError: unknown key (with the nearest valid key) or a value of the wrong type.
    """
    section, _, key = dotted.partition(".")
    if section not in SECTIONS or not key:
        raise _unknown(dotted, where)
    sec = getattr(cfg, section)
    names = {f.name: f for f in fields(sec)}
    if key not in names:
        raise _unknown(dotted, where)
    new = _coerce(dotted, value, getattr(_section_class(section)(), key), where)
    return replace(cfg, **{section: replace(sec, **{key: new})})


def parse_override(text: str) -> tuple[str, str]:
    """``'train.batch_size=8'`` → ``('train.batch_size', '8')``. Raises ConfigError if no '='."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form section.key=value "
                          "(e.g. train.batch_size=8).")
    return key.strip(), value.strip()


def load(path: str | os.PathLike | None = None, extra=(), overrides=()) -> PipelineConfig:
    """Load a pipeline config with its layers applied, in order.

    Args:
      path: base YAML (e.g. ``configs/retinanet_mobilenetv2_fpn_256.yaml``) or None for defaults;
        an Object Detection API ``pipeline.config`` (recognised by content) is imported with
        :func:`od.odapi.import_config` (its mapping table: ``od config import``).
      extra: more YAML files, each overriding the ones before.
      overrides: ``'section.key=value'`` strings, applied last; ``'model=<zoo name>'`` takes the
        zoo entry's architecture (its ``config``) and checkpoint.
    Raises:
      ConfigError: unreadable, non-UTF-8, empty or invalid YAML (a key given twice, tabs), unknown
        keys, wrong types (a fraction, bool or out-of-range number for an int; a list or mapping
        for a text key), impossible values.
    """
    from od import odapi

    if path and odapi.is_pipeline_config(path):  # an Object Detection API pipeline.config
        return odapi.import_config(path, extra=extra, overrides=overrides).cfg
    cfg = PipelineConfig()
    for p in ([path] if path else []) + list(extra):
        cfg = _merge(cfg, _read_yaml(Path(p)), str(p))
    return apply_overrides(cfg, overrides, str(path or "config"))


def apply_overrides(cfg: PipelineConfig, overrides=(), where: str = "config") -> PipelineConfig:
    """``cfg`` with ``'section.key=value'`` overrides applied in order, then checked.

    ``'model=<zoo name>'`` takes the zoo entry's architecture and checkpoint. An override that
    makes a valid config impossible is reported against that override; otherwise problems are
    reported against ``where``. Used by :func:`load` and by ``fine_tune(PipelineConfig, ...)``.
    Raises:
      ConfigError: unknown keys, wrong types, impossible values. ZooError: unknown zoo name.
    """
    valid = _passes(cfg)
    for text in overrides:
        key, value = parse_override(text)
        if key == "model":  # model=<zoo name>: architecture + checkpoint from the zoo
            cfg = apply_zoo_model(cfg, value, f"override {text!r}")
            continue
        cfg = set_key(cfg, key, value, f"override {text!r}")
        if valid and not _passes(cfg):  # this override made a valid config impossible
            check(cfg, f"override {text!r}")
    return check(cfg, where)


def to_dict(cfg: PipelineConfig) -> dict:
    d = dataclasses.asdict(cfg)
    for section in d.values():
        for k, v in section.items():
            if isinstance(v, tuple):
                section[k] = list(v)
    if d["model"]["input_size"] == 0:
        d["model"]["input_size"] = "auto"
    return d


SAVED_HEADER = "# Resolved pipeline config written by od"


def written_by_od(path: str | os.PathLike) -> bool:
    """True when ``path`` is a pipeline config that :func:`save` wrote (its first line)."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(SAVED_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


def save(cfg: PipelineConfig, path: str | os.PathLike) -> Path:
    """Write ``cfg`` as a complete YAML pipeline config (loadable by ``load``), atomically."""
    text = f"{SAVED_HEADER}; `od train --config THIS` repeats the run.\n"
    text += yaml.safe_dump(to_dict(cfg), sort_keys=False)
    return atomic.write_text(path, text)

