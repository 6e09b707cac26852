"""``od train``: fine-tune a Model Garden RetinaNet from a pipeline config.

The training loop is Model Garden's (``official.core.train_lib.run_experiment`` in ``train`` mode:
its Trainer, orbit Controller and CheckpointManager). `od` adds:

- the resolved pipeline config saved as ``RUN/pipeline.yaml`` and the label map as
  ``RUN/label_map.pbtxt`` (the run folder is self-contained for evaluate/export);
- resume: running the same command again continues from the newest checkpoint in ``RUN``
  (Model Garden's CheckpointManager restores it; the fine-tune checkpoint is only read on a fresh
  run); a run folder made with a different model config is refused;
- a tqdm progress bar with loss, learning rate, steps/s and ETA, TensorBoard logs in
  ``RUN/train`` (library logs go to ``RUN/train.log`` through od.logs, set up by the CLI);
- periodic evaluation with pycocotools (``train.eval_every``), the best checkpoint in
  ``RUN/best/``, early stopping, ``RUN/eval/history.jsonl`` and ``history.png``
  (od.train_actions, orbit train actions);
- Ctrl-C / SIGTERM: a checkpoint at the current step, then :class:`Interrupted` (exit 130/143);
- more ``train.steps`` on resume continue the learning rate without a second warm-up, and a
  killed save's ``ckpt-N_temp/`` is removed (od.train_resume);
- the training shards are read once before training (framing and CRC, class ids and names
  against the label map), so a corrupt shard or a label map edited since ``od data convert`` is
  an error naming it; ``train.epochs`` gives ``train.steps`` from the number of training images;
  these checks, and those of a resumed run (same model, optimizer and label map, ``train.steps``
  not below the step reached, readable checkpoints), are in od.train_checks;
- ``tf.distribute`` strategies from ``runtime.strategy`` (one device, mirrored GPUs, multi-worker
  mirrored via ``TF_CONFIG`` where only the chief writes the run folder, TPU).

Checkpoints are written by TensorFlow's CheckpointManager: the ``checkpoint`` state file names a
checkpoint only after all its files are complete, so an interrupted save never becomes "latest".
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

from od import atomic
from od import checkpoints
from od import config as config_lib
from od.experiment import resolve, to_experiment
from od import label_map as label_map_lib
from od import train_actions as actions_lib
from od import train_resume
from od.errors import CheckpointError, ConfigError, OdError
from od import model as model_lib
from od.layout import LABEL_MAP_FILE, PIPELINE_FILE
from od import train_checks
from od.train_checks import LOG_FILE  # fine_tune's log of the run, in RUN
from od.train_checks import check_model_dir, check_runtime, check_shards, is_chief


@dataclass(frozen=True)
class TrainResult:
    """What a training run did: the run folder, the final step, seconds, final losses."""

    model_dir: Path
    step: int
    seconds: float
    losses: dict
    evaluations: list
    stopped: str = ""


class Interrupted(OdError):
    """Training was stopped by Ctrl-C (SIGINT) or SIGTERM after saving a checkpoint at the current
    step; ``exit_code`` is 128 + the signal number (130, 143)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.exit_code = 128 + int(signum)


def make_strategy(runtime: config_lib.RuntimeConfig):
    """A ``tf.distribute.Strategy`` for ``runtime.strategy`` (``auto``: all GPUs mirrored if
    there are several, else one device)."""
    import tensorflow as tf
    from official.common import distribute_utils

    gpus = len(tf.config.list_physical_devices("GPU"))
    num_gpus = gpus if runtime.num_gpus < 0 else runtime.num_gpus
    name = runtime.strategy
    if name == "multi_worker":
        name = "multi_worker_mirrored"
    if name == "auto":
        name = "mirrored" if num_gpus > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if num_gpus else "/cpu:0")
    return distribute_utils.get_distribution_strategy(
        distribution_strategy=name, num_gpus=num_gpus, tpu_address=runtime.tpu or None)


def steps_from_epochs(cfg: config_lib.PipelineConfig, images: int, log=print):
    """With ``train.epochs > 0``, ``train.steps = ceil(epochs * images / batch_size)``."""
    t = cfg.train
    if not t.epochs:
        return cfg
    steps = max(1, math.ceil(t.epochs * images / t.batch_size))
    log(f"train.epochs = {t.epochs:g} over {images} training images at batch size "
        f"{t.batch_size}: train.steps = {steps}")
    return replace(cfg, train=replace(t, steps=steps))


def _check_init_checkpoint(ckpt: str, cfg: config_lib.PipelineConfig, lm) -> None:
    """Before a fresh run: the checkpoint has the parts its type restores, and for ``full`` a
    class head that fits the label map. Raises CheckpointError / LabelMapError."""
    info = model_lib.inspect_checkpoint(ckpt)
    kind = cfg.train.fine_tune_checkpoint_type
    need = set(config_lib.FINE_TUNE_PARTS[kind]) - (
        {"decoder"} if cfg.model.decoder == "identity" else set())
    missing = need - info.modules
    if missing:
        has = ", ".join(sorted(info.modules)) or "none of backbone, decoder, head"
        hint = ("It is a backbone-only checkpoint (e.g. ImageNet): set "
                "train.fine_tune_checkpoint_type=backbone." if info.modules == {"backbone"} else
                "Set train.fine_tune_checkpoint_type to one its parts allow (backbone, detector).")
        raise CheckpointError(f"train.fine_tune_checkpoint {ckpt}: fine_tune_checkpoint_type="
                              f"{kind} restores {', '.join(sorted(need))}, but the checkpoint "
                              f"has no {', '.join(sorted(missing))} (it holds: {has}). {hint}")
    if kind == "full":
        model_lib.check_head(info, lm, cfg.data.label_map,
                             "To train on your classes from this checkpoint, set "
                             "train.fine_tune_checkpoint_type=detector: it restores backbone and "
                             "FPN and makes a new head for your label map.")


def _random_states() -> tuple:
    """Python's and NumPy's global RNG states, which ``train.seed`` changes."""
    import random

    import numpy as np
    return random.getstate(), np.random.get_state()


def _restore_random_states(states: tuple) -> None:
    """Put back the states of :func:`_random_states` and clear TensorFlow's global seed, so a
    seeded run leaves no seed behind for later code in the same process."""
    import random

    import numpy as np
    import tensorflow as tf

    random.setstate(states[0])
    np.random.set_state(states[1])
    tf.compat.v1.set_random_seed(None)


def _typed_restore(initialize, ckpt: str, cfg: config_lib.PipelineConfig):
    """Wrap the trainer's ``initialize``, which is where Model Garden restores
    ``init_checkpoint`` (the checkpoint manager's ``init_fn``, run once on a fresh run), so that
    a checkpoint that does not fit the model is a CheckpointError. Only that call is wrapped:
    no other error is reinterpreted, and nothing depends on a message's text."""
    import tensorflow as tf

    def wrapped(*args, **kwargs):
        try:
            return initialize(*args, **kwargs)
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            kind = cfg.train.fine_tune_checkpoint_type
            parts = ", ".join(config_lib.FINE_TUNE_PARTS[kind])
            raise CheckpointError(
                f"train.fine_tune_checkpoint {ckpt!r}: its {parts} do not fit this model "
                f"({cfg.model.backbone} {cfg.model.backbone_id}, {cfg.model.decoder} decoder): "
                f"{str(e)[:300]}. Use a checkpoint of the same architecture (the model.* "
                "settings it was trained with), or restore less "
                "(train.fine_tune_checkpoint_type=backbone).") from None
    return wrapped


def fine_tune(config=None, model_dir: str | os.PathLike = "run", *, extra=(), overrides=(),
              progress: bool = True, log=print, verbose: bool = False) -> TrainResult:
    """Fine-tune a detector; resume if ``model_dir`` already has checkpoints.

    Library logging (Model Garden's per-loop dicts, absl, TensorFlow and tf_keras warnings) goes
    to ``RUN/train.log`` (od.logs.routed), not to the console or a notebook's cell, unless
    ``verbose``; progress and ``log``'s notes are shown either way.

    Args:
      config: a pipeline YAML path, a PipelineConfig, or None for the defaults.
      model_dir: the run folder (created): checkpoints, pipeline.yaml, label_map.pbtxt,
        TensorBoard logs in ``train/`` and ``eval/``.
      extra: more YAML files layered on ``config``; overrides: ``section.key=value`` strings.
      progress: show the tqdm progress bar.
      log: prints one-line notes (from-scratch training, an extended schedule, an early stop).
      verbose: show the library logging as well (it is in ``RUN/train.log`` either way).
    Returns:
      TrainResult with the final global step, wall seconds, last losses, evaluations and the
      reason of an early stop (``stopped``, '' when it ran to ``train.steps``).
    Raises:
      Interrupted: SIGINT/SIGTERM stopped the run after saving a checkpoint at that step
        (``exit_code`` 130/143).
      ConfigError: invalid config, missing data/label map, a run folder of another model or
        optimizer, or a resume with ``train.steps`` below the step reached.
      OutputError: ``model_dir`` is or holds the training data, or is a non-empty folder that is
        not a run of ``od train``.
      CheckpointError: the fine-tune checkpoint is missing, lacks the parts
        ``fine_tune_checkpoint_type`` restores, or does not fit the model; the run's newest
        checkpoint cannot be read, or its checkpoints have no ``checkpoint`` state file.
      LabelMapError: ``fine_tune_checkpoint_type=full`` with a checkpoint whose class head was
        trained for another label map; a shard's class id or name not in the label map; a
        resume with a label map naming other classes than the run's.
    """
    from od import logs

    model_dir = Path(model_dir)
    if isinstance(config, config_lib.PipelineConfig):  # checked like a loaded one
        cfg = config_lib.apply_overrides(config, overrides, "the PipelineConfig given")
    else:
        cfg = config_lib.load(config, extra, overrides)
    cfg, lm = resolve(cfg)
    check_runtime(cfg)
    check_model_dir(model_dir, cfg, writes=is_chief(cfg.runtime))  # before train.log is made
    with logs.routed(model_dir / LOG_FILE, verbose):
        return _fine_tune(cfg, lm, model_dir, progress, log)


def _fine_tune(cfg, lm, model_dir: Path, progress: bool, log) -> TrainResult:
    import tensorflow as tf
    from official.core import task_factory, train_lib
    from official.core import train_utils
    from official.modeling import performance

    import official.vision.registry_imports  # noqa: F401  (Model Garden registers its tasks)

    # before any TensorFlow op (the anchor check runs some): MultiWorkerMirroredStrategy's
    # collective ops must be configured at program start-up
    strategy = make_strategy(cfg.runtime)
    shards = check_shards(cfg, lm)
    cfg = steps_from_epochs(cfg, shards.images, log)
    from od import anchors  # anchor coverage printed, anchors fitted (model.anchor_fit)
    cfg = anchors.prepare_training(cfg, model_dir, log=log, records=shards.records)
    train_checks.check_strips(cfg, shards.strips)
    given = cfg.train.fine_tune_checkpoint
    ckpt = checkpoints.resolve("" if given.lower() == "none" else given)
    cfg = replace(cfg, train=replace(cfg.train, fine_tune_checkpoint=ckpt or "none"))
    latest = tf.train.latest_checkpoint(str(model_dir)) if model_dir.is_dir() else None
    train_checks.check_checkpoints(model_dir, latest)
    old_cfg = train_checks.check_resume(cfg, lm, model_dir, latest, log)
    if ckpt and not latest:
        _check_init_checkpoint(ckpt, cfg, lm)
    if not given and not latest:
        log("train.fine_tune_checkpoint is empty: training from random weights (give a "
            "checkpoint or zoo name, or set train.fine_tune_checkpoint=none to train from "
            "scratch on purpose)")
    if cfg.train.eval_every and not cfg.data.val:
        raise ConfigError(f"train.eval_every={cfg.train.eval_every} but there is no validation "
                          f"data: {os.path.dirname(cfg.data.train)} has no val-*.tfrecord (its "
                          "summary.json counts the images per split); set data.val=SHARDS, "
                          "convert with a val split that gets images, or set train.eval_every=0.")
    chief = is_chief(cfg.runtime)  # only the chief writes in RUN (other workers: temp folders)
    start_step = train_resume.checkpoint_step(latest)
    if chief:
        model_dir.mkdir(parents=True, exist_ok=True)
        removed = train_resume.clean_temp(model_dir)
        if removed:
            log(f"removed leftovers of an interrupted run in {model_dir}: {', '.join(removed)}")
        schedule = train_resume.extend_schedule(old_cfg, cfg, model_dir, start_step, log)
        config_lib.save(cfg, model_dir / PIPELINE_FILE)
        label_map_lib.write(lm, model_dir / LABEL_MAP_FILE)
    else:
        schedule = train_resume.extend_schedule(old_cfg, cfg, model_dir, start_step,
                                                lambda m: None, write=False)

    params = train_resume.apply_schedule(to_experiment(cfg), schedule)
    if cfg.train.seed:
        rng_states = _random_states()  # restored at the end (notebooks, tests)
        tf.keras.utils.set_random_seed(cfg.train.seed)
    import tf_keras

    policy = tf_keras.mixed_precision.global_policy()  # restored at the end (notebooks, tests)
    performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
    with strategy.scope():
        task = task_factory.get_task(params.task, logging_dir=str(model_dir))
        trainer = train_utils.create_trainer(params, task, train=True, evaluate=False)
    if ckpt:
        trainer.initialize = _typed_restore(trainer.initialize, ckpt, cfg)
    _freeze(trainer.model, cfg, bool(ckpt), log)
    hooks: list = []  # od's actions, made once the controller has restored the checkpoint
    runner = train_lib.OrbitExperimentRunner(
        distribution_strategy=strategy, task=task, mode="train", params=params,
        model_dir=str(model_dir), trainer=trainer,
        train_actions=[lambda output: [hook(output) for hook in hooks]])
    # the checkpoint manager restores the newest checkpoint when the controller is built
    start_step = int(trainer.global_step.numpy())
    bar = actions_lib.Progress(trainer, cfg.train.steps, progress and chief, model_dir, chief)
    evaluator = None
    if cfg.train.eval_every:
        evaluator = actions_lib.PeriodicEval(trainer, cfg, lm, model_dir, start_step,
                                             write=chief, log=tqdm_write if progress else log,
                                             params=params)
    signals = actions_lib.StopSignals()
    hooks += [bar, *([evaluator] if evaluator else []), actions_lib.StopCheck(signals, evaluator)]
    start, stop = time.time(), None
    try:
        with signals:
            runner.run()
    except actions_lib.Stop as e:
        stop = e
        runner.checkpoint_manager.save(checkpoint_number=int(trainer.global_step.numpy()),
                                       check_interval=False)
    finally:
        bar.bar.close()
        tf_keras.mixed_precision.set_global_policy(policy)
        if cfg.train.seed:
            _restore_random_states(rng_states)
    result = TrainResult(model_dir, int(trainer.global_step.numpy()), time.time() - start,
                         bar.losses, evaluator.history if evaluator else [],
                         stop.reason if stop else "")
    if chief:
        atomic.write_json(model_dir / "train_result.json",
                          {"step": result.step, "seconds": round(result.seconds, 1),
                           "losses": result.losses, "evaluations": result.evaluations,
                           "stopped": result.stopped})
    if stop is not None and stop.signum is not None:
        raise Interrupted(f"{stop.reason} at step {result.step}; checkpoint saved in "
                          f"{model_dir}. Resume with the same command.", stop.signum)
    if stop is not None:
        log(stop.reason)
    return result


def _freeze(model, cfg, restored: bool, log) -> None:
    """Apply ``train.freeze_at`` to the backbone, only over weights a checkpoint gives."""
    k = cfg.train.freeze_at
    if not k or cfg.train.freeze_backbone:
        return
    if not restored:
        log(f"train.freeze_at={k} left out: no train.fine_tune_checkpoint gives the backbone "
            "its weights, and frozen random layers would never learn")
        return
    n = model_lib.freeze_early_layers(model.backbone, k)
    log(f"train.freeze_at={k}: the backbone's first {n} layers (to stride {2 ** k}) keep the "
        "checkpoint's weights")


def tqdm_write(message: str) -> None:
    from tqdm import tqdm
    tqdm.write(message)
