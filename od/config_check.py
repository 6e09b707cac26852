"""Which pipeline-config values are possible: choices, ranges, and combinations of keys.

:func:`check` is what :func:`od.config.load` and :func:`od.config.apply_overrides` run after
every layer; a value that cannot work is a ConfigError naming the key, the value and what to use,
before anything is built (an empty ``model.aspect_ratios`` or a NaN learning rate would otherwise
fail deep in TensorFlow, or train to nothing). Every float must be finite.
"""
from __future__ import annotations

import math

from od.errors import ConfigError

#: key → the values it may take.
CHOICES = {
    "model.backbone": ("mobilenet", "resnet", "spinenet", "spinenet_mobile"),
    "model.decoder": ("fpn", "identity"),
    "model.nms_version": ("batched", "v1", "v2", "v3"),
    "model.anchor_fit": ("auto", "off"),
    "model.architecture": ("retinanet", "faster_rcnn"),
    "train.fine_tune_checkpoint_type": ("backbone", "detector", "full"),
    "runtime.strategy": ("auto", "one_device", "mirrored", "multi_worker", "multi_worker_mirrored",
                         "tpu"),
    "train.optimizer": ("sgd", "adam", "adamw", "rmsprop"),
    "train.lr_schedule": ("cosine", "exponential", "stepwise", "constant"),
    "data.aug_type": ("none", "autoaug", "randaug"),
    "eval.best_metric": ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs",
                         "ARm", "ARl"),
    "runtime.mixed_precision": ("float32", "mixed_float16", "mixed_bfloat16"),
}

#: key → (low, high, low included, high included) for numbers (each element of a tuple); None =
#: unbounded. Units are those of the dataclass fields in od.config.
RANGES = {
    "model.min_level": (1, None, True, True),
    "model.fpn_filters": (1, None, True, True),
    "model.head_filters": (1, None, True, True),
    "model.head_convs": (0, None, True, True),
    "model.num_scales": (1, None, True, True),
    "model.aspect_ratios": (0, None, False, True),
    "model.anchor_size": (0, None, False, True),
    "model.num_classes": (0, None, True, True),
    "model.max_detections": (1, None, True, True),
    "model.nms_iou_threshold": (0, 1, False, True),
    "model.score_threshold": (0, 1, True, False),
    "data.shuffle_buffer": (0, None, True, True),
    "train.learning_rate": (0, None, True, True),  # 0: weights kept (a check of a restore)
    "train.warmup_steps": (0, None, True, True),
    "train.warmup_learning_rate": (0, None, True, True),
    "train.momentum": (0, 1, True, False),
    "train.clipnorm": (0, None, True, True),
    "train.l2_weight_decay": (0, None, True, True),
    "train.max_checkpoints": (1, None, True, True),
    "train.eval_every": (0, None, True, True),
    "train.freeze_at": (0, 5, True, True),  # output stride 2**freeze_at: 1 to 32 px
    "train.seed": (0, 2 ** 32 - 1, True, True),  # NumPy's seed range (0 = no seed)
    "train.lr_decay_steps": (0, None, True, True),
    "train.lr_decay_rate": (0, None, False, True),
    "train.lr_boundaries": (1, None, True, True),
    "train.lr_values": (0, None, True, True),
    "train.focal_loss_alpha": (0, 1, True, True),
    "train.focal_loss_gamma": (0, None, True, True),
    "eval.min_score": (0, 1, True, True),
    "eval.iou_threshold": (0, 1, False, True),
    "eval.max_images": (0, None, True, True),
    "runtime.num_gpus": (-1, None, True, True),
}


def _describe(low, high, low_in, high_in) -> str:
    def text(v):
        return str(v) if isinstance(v, int) else f"{v:g}"
    if high is None:
        return f"{'>=' if low_in else '>'} {text(low)}"
    return f"in {'[' if low_in else '('}{text(low)}, {text(high)}{']' if high_in else ')'}"


def _values(cfg):
    """(key, value, default) for every field of every section."""
    for s in ("model", "data", "train", "eval", "runtime"):
        sec = getattr(cfg, s)
        default = type(sec)()
        for name in sec.__dataclass_fields__:
            yield f"{s}.{name}", getattr(sec, name), getattr(default, name)


def _check_values(cfg, where: str) -> None:
    for key, value, default in _values(cfg):
        if key in CHOICES and value not in CHOICES[key]:
            raise ConfigError(f"{where}: {key} = {value!r}; choose one of "
                              f"{', '.join(CHOICES[key])}.")
        items = value if isinstance(value, tuple) else (value,)
        shown, dflt = ((list(v) if isinstance(v, tuple) else v) for v in (value, default))
        numbers = [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if any(not math.isfinite(v) for v in numbers):
            raise ConfigError(f"{where}: {key} = {shown!r} is not a finite number; use e.g. the "
                              f"default {dflt!r}.")
        if key in RANGES:
            low, high, low_in, high_in = RANGES[key]
            bad = [v for v in numbers if v < low or (v == low and not low_in)
                   or (high is not None and (v > high or (v == high and not high_in)))]
            if bad:
                raise ConfigError(f"{where}: {key} = {shown!r} must be "
                                  f"{_describe(low, high, low_in, high_in)}"
                                  f"{' (each value)' if isinstance(value, tuple) else ''}; "
                                  f"the default is {dflt!r}.")
    if not cfg.model.aspect_ratios:
        raise ConfigError(f"{where}: model.aspect_ratios is empty; give at least one anchor "
                          "width/height ratio, e.g. model.aspect_ratios=0.5,1,2.")


def check(cfg, where: str):
    """Return ``cfg`` (an :class:`od.config.PipelineConfig`) if its values are possible.

    Raises:
      ConfigError: naming the key, the value and a fix: a value outside :data:`CHOICES` or
        :data:`RANGES`, a NaN or infinite float, or keys that cannot work together.
    """
    _check_values(cfg, where)
    m, t = cfg.model, cfg.train
    if m.input_size < 0 or t.max_input_size < 2 ** m.max_level:
        raise ConfigError(f"{where}: need model.input_size >= 0 (0 = auto) and "
                          f"train.max_input_size >= 2**model.max_level = {2 ** m.max_level}.")
    if m.input_size % (2 ** m.max_level):
        raise ConfigError(f"{where}: model.input_size = {m.input_size} px is not a multiple of "
                          f"2**model.max_level = {2 ** m.max_level}; use e.g. "
                          f"{max(1, round(m.input_size / 2 ** m.max_level)) * 2 ** m.max_level} or "
                          "lower max_level.")
    if not 1 <= m.min_level <= m.max_level:
        raise ConfigError(f"{where}: need 1 <= model.min_level <= model.max_level.")
    for name in ("batch_size", "steps", "steps_per_loop"):
        if getattr(t, name) < 1:
            raise ConfigError(f"{where}: train.{name} = {getattr(t, name)} must be >= 1.")
    if t.checkpoint_every % t.steps_per_loop or t.checkpoint_every < 1:
        raise ConfigError(f"{where}: train.checkpoint_every = {t.checkpoint_every} must be a "
                          f"positive multiple of train.steps_per_loop = {t.steps_per_loop}.")
    if t.eval_every % t.steps_per_loop:
        raise ConfigError(f"{where}: train.eval_every = {t.eval_every} must be a multiple of "
                          f"train.steps_per_loop = {t.steps_per_loop}.")
    if not 0 < cfg.data.scale_min <= cfg.data.scale_max:
        raise ConfigError(f"{where}: need 0 < data.scale_min <= data.scale_max.")
    return check_training(cfg, where)


def check_training(cfg, where: str):
    """The training-loop keys (early stop, epochs, optimizer, schedule) are possible together."""
    t = cfg.train
    if t.early_stop_patience < 0 or t.early_stop_min_delta < 0:
        raise ConfigError(f"{where}: train.early_stop_patience and train.early_stop_min_delta "
                          "must be >= 0.")
    if t.early_stop_patience and not t.eval_every:
        raise ConfigError(f"{where}: train.early_stop_patience = {t.early_stop_patience} needs "
                          "periodic evaluations: set train.eval_every (steps, a multiple of "
                          "train.steps_per_loop), or train.early_stop_patience=0.")
    if t.epochs < 0:
        raise ConfigError(f"{where}: train.epochs = {t.epochs} must be >= 0 (0 = use "
                          "train.steps).")
    if not 0 <= t.ema_decay < 1:
        raise ConfigError(f"{where}: train.ema_decay = {t.ema_decay} must be in [0, 1) (e.g. "
                          "0.99; 0 = no moving average).")
    if t.weight_decay < 0:
        raise ConfigError(f"{where}: train.weight_decay = {t.weight_decay} must be >= 0.")
    if t.lr_schedule == "stepwise" and len(t.lr_values) != len(t.lr_boundaries) + 1:
        raise ConfigError(f"{where}: train.lr_schedule = stepwise needs one more train.lr_values "
                          f"({len(t.lr_values)}) than train.lr_boundaries ({len(t.lr_boundaries)}).")
    if any(float(b) != int(b) for b in t.lr_boundaries):  # steps: never rounded silently
        raise ConfigError(f"{where}: train.lr_boundaries = {list(t.lr_boundaries)} are steps; "
                          "give whole numbers, e.g. 300,450.")
    if list(t.lr_boundaries) != sorted(set(t.lr_boundaries)):
        raise ConfigError(f"{where}: train.lr_boundaries = {list(t.lr_boundaries)} must be "
                          "strictly increasing steps, e.g. 300,450.")
    if t.lr_schedule == "exponential" and t.lr_decay_steps < 1:
        raise ConfigError(f"{where}: train.lr_schedule = exponential needs train.lr_decay_steps "
                          ">= 1.")
    return cfg
