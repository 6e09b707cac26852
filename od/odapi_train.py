"""The ``train_config`` and input-reader half of the OD API import (:mod:`od.odapi`).

Each function reads part of the parsed ``TrainEvalPipelineConfig`` and records od keys and
mapping-table rows on the mapper (``set``: a key from a field; ``note``: a row only;
``implied``: a key implied by a field's absence).
"""
from __future__ import annotations

from od.config import TrainConfig
from od.errors import ConfigError

_FT_TYPES = {"classification": "backbone", "detection": "detector", "full": "full"}


def _train(msg, mp) -> None:
    t, p = msg.train_config, "train_config"
    if t.HasField("batch_size"):
        mp.set(f"{p}.batch_size", "train.batch_size", t.batch_size)
    if t.num_steps:
        mp.set(f"{p}.num_steps", "train.steps", t.num_steps)
    else:  # 0 or absent: the OD API trains until stopped; od needs an end
        why = (f"the OD API trains without end; od stops at train.steps = {TrainConfig.steps} "
               "(set train.steps=N)")
        if t.HasField("num_steps"):
            mp.note(f"{p}.num_steps", "approximated", why)
        else:
            mp.implied("num_steps", "train.steps", TrainConfig.steps, why)
    if t.HasField("gradient_clipping_by_norm"):
        mp.set(f"{p}.gradient_clipping_by_norm", "train.clipnorm", t.gradient_clipping_by_norm)
    else:
        mp.implied("gradient_clipping_by_norm", "train.clipnorm", 0.0,
                   "the OD API clips no gradients unless asked")
    _optimizer(t.optimizer, f"{p}.optimizer", mp)
    if t.fine_tune_checkpoint:
        mp.set(f"{p}.fine_tune_checkpoint", "train.fine_tune_checkpoint", t.fine_tune_checkpoint,
               note="a Model Garden checkpoint (od zoo list); an OD API checkpoint's variable "
                    "names differ and fail with a CheckpointError")
        kind = t.fine_tune_checkpoint_type or "detection"
        if kind not in _FT_TYPES:
            raise ConfigError(f"{mp.source}: train_config.fine_tune_checkpoint_type = {kind!r}; "
                              f"od maps {', '.join(_FT_TYPES)} (→ backbone, detector, full).")
        where = f"{p}.fine_tune_checkpoint_type"
        if t.HasField("fine_tune_checkpoint_type"):
            mp.set(where, "train.fine_tune_checkpoint_type", _FT_TYPES[kind])
        else:
            mp.implied("fine_tune_checkpoint_type", "train.fine_tune_checkpoint_type",
                       _FT_TYPES[kind], "the OD API's default is detection")
    _augmentation(t.data_augmentation_options, f"{p}.data_augmentation_options", mp)


#: ``optimizer.moving_average_decay`` when the file leaves it out (the OD API's optimizer.proto).
_ODAPI_MOVING_AVERAGE_DECAY = 0.9999


def _optimizer(o, p: str, mp) -> None:
    if o.use_moving_average:
        decay = (o.moving_average_decay if o.HasField("moving_average_decay")
                 else _ODAPI_MOVING_AVERAGE_DECAY)
        note = ("Model Garden's ExponentialMovingAverage; od evaluate, export and detect use the "
                "averages")
        mp.set(f"{p}.use_moving_average", "train.ema_decay", decay, note=note)
        if o.HasField("moving_average_decay"):
            mp.set(f"{p}.moving_average_decay", "train.ema_decay", decay, note=note)
    elif o.HasField("use_moving_average"):
        mp.set(f"{p}.use_moving_average", "train.ema_decay", 0.0)
        if o.HasField("moving_average_decay"):
            mp.note(f"{p}.moving_average_decay", "ignored", "use_moving_average is false")
    kind = next((k for k in ("momentum_optimizer", "adam_optimizer", "rms_prop_optimizer")
                 if o.HasField(k)), None)
    if kind is None:
        return
    opt = getattr(o, kind)
    name = {"momentum_optimizer": "sgd", "adam_optimizer": "adam",
            "rms_prop_optimizer": "rmsprop"}[kind]
    q = f"{p}.{kind}"
    if kind == "momentum_optimizer":
        mp.set(f"{q}.momentum_optimizer_value", "train.momentum", opt.momentum_optimizer_value)
    elif kind == "rms_prop_optimizer":
        mp.note(f"{q}.momentum_optimizer_value", "approximated",
                "Model Garden's RMSprop keeps its own momentum (0)")
    mp.values["train.optimizer"] = name
    _learning_rate(opt.learning_rate, f"{q}.learning_rate", mp, name)


def _learning_rate(lr, p: str, mp, optimizer: str) -> None:
    if lr.HasField("cosine_decay_learning_rate"):
        c, q = lr.cosine_decay_learning_rate, f"{p}.cosine_decay_learning_rate"
        mp.set(f"{q}.learning_rate_base", "train.learning_rate", c.learning_rate_base,
               note=f"{optimizer}, cosine decay")
        mp.values["train.lr_schedule"] = "cosine"
        steps = mp.values.get("train.steps", TrainConfig.steps)
        mp.note(f"{q}.total_steps", "mapped" if c.total_steps == steps else "approximated",
                "od's cosine decays to 0 at train.steps" +
                ("" if c.total_steps == steps else f" ({steps}), not at total_steps"))
        if c.HasField("warmup_learning_rate"):
            mp.set(f"{q}.warmup_learning_rate", "train.warmup_learning_rate",
                   c.warmup_learning_rate)
        mp.set(f"{q}.warmup_steps", "train.warmup_steps", c.warmup_steps,
               note="linear warm-up; od caps it at half of train.steps")
        if c.hold_base_rate_steps:
            mp.note(f"{q}.hold_base_rate_steps", "approximated",
                    "od's cosine starts right after the warm-up (no hold)")
    elif lr.HasField("exponential_decay_learning_rate"):
        e, q = lr.exponential_decay_learning_rate, f"{p}.exponential_decay_learning_rate"
        mp.set(f"{q}.initial_learning_rate", "train.learning_rate", e.initial_learning_rate)
        mp.set(f"{q}.initial_learning_rate", "train.lr_schedule", "exponential")
        mp.set(f"{q}.decay_steps", "train.lr_decay_steps", e.decay_steps or 4000000)
        mp.set(f"{q}.decay_factor", "train.lr_decay_rate", e.decay_factor
               if e.HasField("decay_factor") else 0.95)
        mp.set(f"{q}.staircase", "train.lr_staircase", e.staircase
               if e.HasField("staircase") else True)
        if e.burnin_steps:
            mp.set(f"{q}.burnin_steps", "train.warmup_steps", e.burnin_steps, "approximated",
                   "the OD API's constant burn-in → a linear warm-up")
            mp.set(f"{q}.burnin_learning_rate", "train.warmup_learning_rate",
                   e.burnin_learning_rate, "approximated")
        else:
            mp.implied("burnin_steps", "train.warmup_steps", 0, "no warm-up")
    elif lr.HasField("manual_step_learning_rate"):
        m, q = lr.manual_step_learning_rate, f"{p}.manual_step_learning_rate"
        mp.set(f"{q}.initial_learning_rate", "train.learning_rate", m.initial_learning_rate)
        mp.values["train.lr_schedule"] = "stepwise"
        mp.set(f"{q}.schedule.step", "train.lr_boundaries", [s.step for s in m.schedule])
        mp.set(f"{q}.schedule.learning_rate", "train.lr_values",
               [m.initial_learning_rate] + [s.learning_rate for s in m.schedule])
        if m.warmup and m.schedule:
            mp.set(f"{q}.warmup", "train.warmup_steps", m.schedule[0].step, "approximated",
                   "a linear warm-up to the initial rate over the first interval")
        else:
            mp.implied("manual_step_learning_rate.warmup", "train.warmup_steps", 0,
                       "no warm-up")
    elif lr.HasField("constant_learning_rate"):
        q = f"{p}.constant_learning_rate"
        mp.set(f"{q}.learning_rate", "train.learning_rate", lr.constant_learning_rate.
               learning_rate)
        mp.values["train.lr_schedule"] = "constant"
        mp.implied("warm-up", "train.warmup_steps", 0, "a constant rate has no warm-up")


def _augmentation(steps, p: str, mp) -> None:
    flip = scale = False
    for step in steps:
        if step.HasField("random_horizontal_flip"):
            mp.set(f"{p}.random_horizontal_flip", "data.hflip", True)
            flip = True
        if step.HasField("random_scale_crop_and_pad_to_square"):
            s, q = step.random_scale_crop_and_pad_to_square, \
                f"{p}.random_scale_crop_and_pad_to_square"
            mp.set(f"{q}.scale_min", "data.scale_min", s.scale_min if s.HasField("scale_min")
                   else 0.1)
            mp.set(f"{q}.scale_max", "data.scale_max", s.scale_max if s.HasField("scale_max")
                   else 2.0)
            scale = True
        if step.HasField("random_image_scale"):
            s, q = step.random_image_scale, f"{p}.random_image_scale"
            mp.set(f"{q}.min_scale_ratio", "data.scale_min", s.min_scale_ratio or 0.5,
                   "approximated", "image scaling → Model Garden's scale jitter")
            mp.set(f"{q}.max_scale_ratio", "data.scale_max", s.max_scale_ratio or 2.0,
                   "approximated")
            scale = True
        for crop in ("ssd_random_crop", "random_crop_image"):
            if step.HasField(crop):
                min_area = step.random_crop_image.min_area if crop == "random_crop_image" \
                    and step.random_crop_image.HasField("min_area") else 0.1
                zoom = round(min(2.0, 1 / min_area ** 0.5), 3)
                path = f"{p}.{crop}" + (".min_area" if crop == "random_crop_image" else "")
                mp.set(path, "data.scale_min", 1.0, "approximated",
                       f"random crops (area >= {min_area}) → scale jitter 1.0-{zoom} (zoom in)")
                mp.set(path, "data.scale_max", zoom, "approximated")
                scale = True
    if not flip:
        mp.implied("random_horizontal_flip", "data.hflip", False, "the file asks for no flip")
    if not scale:
        mp.implied("scale/crop augmentation", "data.scale_min", 1.0,
                   "the file asks for no scale jitter")
        mp.values["data.scale_max"] = 1.0


def _inputs(msg, mp) -> None:
    for reader, key, p in ((msg.train_input_reader, "data.train", "train_input_reader"),) + tuple(
            (r, "data.val", "eval_input_reader") for r in msg.eval_input_reader[:1]):
        paths = list(reader.tf_record_input_reader.input_path)
        q = f"{p}.tf_record_input_reader.input_path"
        if paths:
            mp.set(q, key, paths[0], "mapped" if len(paths) == 1 else "approximated",
                   "the API's TFRecords are read as they are" +
                   ("" if len(paths) == 1 else "; od reads one glob: only the first is used"))
        if reader.label_map_path:
            if key == "data.train":
                mp.set(f"{p}.label_map_path", "data.label_map", reader.label_map_path)
            elif reader.label_map_path != mp.values.get("data.label_map"):
                mp.note(f"{p}.label_map_path", "approximated",
                        "od uses one label map: train_input_reader's")
            else:
                mp.note(f"{p}.label_map_path", "mapped", "the same label map as for training")
    if msg.eval_config.num_examples:
        mp.set("eval_config.num_examples", "eval.max_images", msg.eval_config.num_examples)
