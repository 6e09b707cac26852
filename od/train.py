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
- the training shards are read once before training (framing and CRC), so a corrupt shard is an
  error naming it; ``train.epochs`` gives ``train.steps`` from the number of training images;
- ``tf.distribute`` strategies from ``runtime.strategy`` (one device, mirrored GPUs, multi-worker
  mirrored via ``TF_CONFIG`` where only the chief writes the run folder, TPU).

Checkpoints are written by TensorFlow's CheckpointManager: the ``checkpoint`` state file names a
checkpoint only after all its files are complete, so an interrupted save never becomes "latest".
"""
from __future__ import annotations

import json
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
from od.errors import AnnotationError, CheckpointError, ConfigError, OdError
from od import model as model_lib
from od.layout import LABEL_MAP_FILE, PIPELINE_FILE


LOG_FILE = "train.log"  # the CLI's log of the run (od.logs), in RUN


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


#: Model fields that only change post-processing, not the weights: free to change on resume.
_POST_PROCESSING = {"name", "max_detections", "nms_iou_threshold", "score_threshold",
                    "nms_version"}


def _check_resume(cfg: config_lib.PipelineConfig, model_dir: Path):
    """The config of the run already in ``model_dir`` (None if there is none), after checking
    that its model is the same."""
    saved = model_dir / PIPELINE_FILE
    if not saved.is_file():
        return None
    old = config_lib.load(saved)
    diff = [f"model.{k}: {getattr(old.model, k)!r} → {getattr(cfg.model, k)!r}"
            for k in config_lib.to_dict(cfg)["model"]
            if k not in _POST_PROCESSING and getattr(old.model, k) != getattr(cfg.model, k)]
    if diff:
        raise ConfigError(f"{model_dir} holds a run of a different model ({'; '.join(diff)}). "
                          "Use a new --model-dir, or the same model settings to resume.")
    # the optimizer's state in the checkpoint (momentum, moving averages) fits only its own kind
    if old.train.optimizer != cfg.train.optimizer or bool(old.train.ema_decay) != bool(
            cfg.train.ema_decay):
        raise ConfigError(
            f"{model_dir} was trained with train.optimizer={old.train.optimizer} "
            f"train.ema_decay={old.train.ema_decay}; resuming with train.optimizer="
            f"{cfg.train.optimizer} train.ema_decay={cfg.train.ema_decay} would drop or restart "
            "the optimizer's state (momentum, moving averages). Resume with the run's values, or "
            f"start a new --model-dir with train.fine_tune_checkpoint={model_dir} "
            "train.fine_tune_checkpoint_type=full.")
    return old


def check_model_dir(model_dir: Path, cfg: config_lib.PipelineConfig, writes: bool = True
                    ) -> None:
    """``model_dir`` is new, empty, or a run of ``od train`` (resumed); never the training data,
    a folder holding it, or a user's folder (od would write pipeline.yaml, label_map.pbtxt and
    checkpoints among the user's files). ``writes=False`` (a multi-worker cluster's non-chief,
    which never writes there while the chief may be filling it): the data checks only.

    Raises:
      OutputError: naming the folder, what is wrong and the fix.
    """
    from od import odapi as odapi_lib, outputs

    d = cfg.data
    outputs.prepare_out(model_dir, inputs=[d.train, d.val or None, d.label_map or None],
                        command="train", overwrite=True, what="--model-dir")
    # the CLI's RUN/train.log and OD API mapping table may come first (e.g. a failed attempt)
    ours = {LOG_FILE, odapi_lib.TABLE_FILE, Path(odapi_lib.TABLE_FILE).with_suffix(".json").name}
    theirs = writes and model_dir.is_dir() and any(p.name not in ours for p in model_dir.iterdir())
    if theirs and not config_lib.written_by_od(model_dir / PIPELINE_FILE):
        raise outputs.OutputError(
            f"--model-dir {model_dir} exists, is not empty and is not a run of `od train` (it "
            f"has no {PIPELINE_FILE} written by od); training would write checkpoints, "
            f"{PIPELINE_FILE} and {LABEL_MAP_FILE} among its files. Give a new or empty folder, "
            "or an od run folder to resume it.")


def is_chief(runtime: config_lib.RuntimeConfig) -> bool:
    """Whether this process writes the run folder: always, except in a multi-worker cluster
    (``TF_CONFIG``), where only the chief does (task ``chief``, else ``worker`` 0)."""
    if not runtime.strategy.startswith("multi_worker"):
        return True
    spec = json.loads(os.environ["TF_CONFIG"])
    task = spec.get("task", {})
    if "chief" in spec.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0


def check_runtime(cfg: config_lib.PipelineConfig) -> None:
    """Raise ConfigError for a strategy this environment cannot run (before any training)."""
    if cfg.runtime.strategy.startswith("multi_worker"):
        tf_config = os.environ.get("TF_CONFIG", "")
        try:
            spec = json.loads(tf_config) if tf_config else None
        except json.JSONDecodeError:
            spec = {}
        if spec is None:
            raise ConfigError(f"runtime.strategy={cfg.runtime.strategy} needs the TF_CONFIG "
                              "environment variable (the cluster and this worker's task), e.g. "
                              'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", '
                              '"host2:12345"]}, "task": {"type": "worker", "index": 0}}\' on '
                              "each machine (README: multi-worker); or use runtime.strategy=auto.")
        if not isinstance(spec, dict) or "cluster" not in spec or "task" not in spec:
            raise ConfigError(f"TF_CONFIG={tf_config[:200]!r} is not JSON with 'cluster' and "
                              "'task' keys; see README: multi-worker.")


def check_shards(cfg: config_lib.PipelineConfig) -> int:
    """Read every training and validation shard once, checking its framing and checksums, so a
    corrupt shard is an AnnotationError naming it before training starts (TensorFlow would fail
    much later with a DataLossError that does not name the file). Returns the number of
    training examples."""
    import glob

    from od.data import tfrecord_io

    count = 0
    for pattern, is_train in ((cfg.data.train, True), (cfg.data.val, False)):
        for path in sorted(glob.glob(pattern)) if pattern else []:
            try:
                n = sum(1 for _ in tfrecord_io.iter_records(path))
            except AnnotationError as e:
                raise AnnotationError(f"training data: {e}") from None
            count += n if is_train else 0
    return count


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
              progress: bool = True, log=print) -> TrainResult:
    """Fine-tune a detector; resume if ``model_dir`` already has checkpoints.

    Args:
      config: a pipeline YAML path, a PipelineConfig, or None for the defaults.
      model_dir: the run folder (created): checkpoints, pipeline.yaml, label_map.pbtxt,
        TensorBoard logs in ``train/`` and ``eval/``.
      extra: more YAML files layered on ``config``; overrides: ``section.key=value`` strings.
      progress: show the tqdm progress bar.
      log: prints one-line notes (from-scratch training, an extended schedule, an early stop).
    Returns:
      TrainResult with the final global step, wall seconds, last losses, evaluations and the
      reason of an early stop (``stopped``, '' when it ran to ``train.steps``).
    Raises:
      Interrupted: SIGINT/SIGTERM stopped the run after saving a checkpoint at that step
        (``exit_code`` 130/143).
      ConfigError: invalid config, missing data/label map, a run folder of another model.
      OutputError: ``model_dir`` is or holds the training data, or is a non-empty folder that is
        not a run of ``od train``.
      CheckpointError: the fine-tune checkpoint is missing, lacks the parts
        ``fine_tune_checkpoint_type`` restores, or does not fit the model.
      LabelMapError: ``fine_tune_checkpoint_type=full`` with a checkpoint whose class head was
        trained for another label map.
    """
    import tensorflow as tf
    from official.core import task_factory, train_lib
    from official.core import train_utils
    from official.modeling import performance

    import official.vision.registry_imports  # noqa: F401  (Model Garden registers its tasks)

    model_dir = Path(model_dir)
    if isinstance(config, config_lib.PipelineConfig):  # checked like a loaded one
        cfg = config_lib.apply_overrides(config, overrides, "the PipelineConfig given")
    else:
        cfg = config_lib.load(config, extra, overrides)
    cfg, lm = resolve(cfg)
    check_runtime(cfg)
    check_model_dir(model_dir, cfg, writes=is_chief(cfg.runtime))
    # before any TensorFlow op (the anchor check runs some): MultiWorkerMirroredStrategy's
    # collective ops must be configured at program start-up
    strategy = make_strategy(cfg.runtime)
    images = check_shards(cfg)
    cfg = steps_from_epochs(cfg, images, log)
    from od import anchors  # anchor coverage printed, anchors fitted (model.anchor_fit)
    cfg = anchors.prepare_training(cfg, model_dir, log=log)
    given = cfg.train.fine_tune_checkpoint
    ckpt = checkpoints.resolve("" if given.lower() == "none" else given)
    cfg = replace(cfg, train=replace(cfg.train, fine_tune_checkpoint=ckpt or "none"))
    old_cfg = _check_resume(cfg, model_dir)
    latest = tf.train.latest_checkpoint(str(model_dir)) if model_dir.is_dir() else None
    if ckpt and not latest:
        _check_init_checkpoint(ckpt, cfg, lm)
    if not given and not latest:
        log("train.fine_tune_checkpoint is empty: training from random weights (give a "
            "checkpoint or zoo name, or set train.fine_tune_checkpoint=none to train from "
            "scratch on purpose)")
    if cfg.train.eval_every and not cfg.data.val:
        raise ConfigError("train.eval_every is set but there is no validation data: set data.val "
                          "or convert the data with a val split.")
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


def tqdm_write(message: str) -> None:
    from tqdm import tqdm
    tqdm.write(message)
