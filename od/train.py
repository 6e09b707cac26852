"""``od train``: fine-tune a Model Garden RetinaNet from a pipeline config.

The training loop is Model Garden's (``official.core.train_lib.run_experiment`` in ``train`` mode:
its Trainer, orbit Controller and CheckpointManager). `od` adds:

- the resolved pipeline config saved as ``RUN/pipeline.yaml`` and the label map as
  ``RUN/label_map.pbtxt`` (the run folder is self-contained for evaluate/export);
- resume: running the same command again continues from the newest checkpoint in ``RUN``
  (Model Garden's CheckpointManager restores it; the fine-tune checkpoint is only read on a fresh
  run); a run folder made with a different model config is refused;
- a tqdm progress bar with loss, learning rate and ETA, TensorBoard logs in ``RUN/train``;
- periodic evaluation with pycocotools (``train.eval_every``) logged to ``RUN/eval`` and
  ``RUN/eval/history.jsonl``;
- ``tf.distribute`` strategies from ``runtime.strategy`` (one device, mirrored GPUs, multi-worker
  mirrored via ``TF_CONFIG``, TPU).

Checkpoints are written by TensorFlow's CheckpointManager: the ``checkpoint`` state file names a
checkpoint only after all its files are complete, so an interrupted save never becomes "latest".
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from od import atomic  # noqa: E402
from od import config as config_lib  # noqa: E402
from od import label_map as label_map_lib  # noqa: E402
from od.errors import CheckpointError, ConfigError  # noqa: E402
from od import model as model_lib  # noqa: E402
from od.model import PIPELINE_FILE  # noqa: E402


@dataclass(frozen=True)
class TrainResult:
    """What a training run did: the run folder, the final step, seconds, final losses."""

    model_dir: Path
    step: int
    seconds: float
    losses: dict
    evaluations: list


def make_strategy(runtime: config_lib.RuntimeConfig):
    """A ``tf.distribute.Strategy`` for ``runtime.strategy`` (``auto``: all GPUs mirrored if
    there are several, else one device)."""
    import tensorflow as tf
    from official.common import distribute_utils

    gpus = len(tf.config.list_physical_devices("GPU"))
    num_gpus = gpus if runtime.num_gpus < 0 else runtime.num_gpus
    name = runtime.strategy
    if name == "auto":
        name = "mirrored" if num_gpus > 1 else "one_device"
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if num_gpus else "/cpu:0")
    return distribute_utils.get_distribution_strategy(
        distribution_strategy=name, num_gpus=num_gpus, tpu_address=runtime.tpu or None)


#: Model fields that only change post-processing, not the weights: free to change on resume.
_POST_PROCESSING = {"name", "max_detections", "nms_iou_threshold", "score_threshold",
                    "nms_version"}


def _check_resume(cfg: config_lib.PipelineConfig, model_dir: Path) -> None:
    saved = model_dir / PIPELINE_FILE
    if not saved.is_file():
        return
    old = config_lib.load(saved)
    diff = [f"model.{k}: {getattr(old.model, k)!r} → {getattr(cfg.model, k)!r}"
            for k in config_lib.to_dict(cfg)["model"]
            if k not in _POST_PROCESSING and getattr(old.model, k) != getattr(cfg.model, k)]
    if diff:
        raise ConfigError(f"{model_dir} holds a run of a different model ({'; '.join(diff)}). "
                          "Use a new --model-dir, or the same model settings to resume.")


def _check_fine_tune_checkpoint(path: str) -> str:
    import tensorflow as tf

    if not path:
        return ""
    from od import download, zoo

    if path.startswith(("http://", "https://", "gs://", "file://")) or \
            path.endswith((".tar.gz", ".tgz", ".tar")) or \
            (path in {e.name for e in zoo.ZOO} and not os.path.exists(path)):
        # a zoo name, URL or tarball: the cached download (fetched once, checksummed, extracted)
        return download.checkpoint_path(download.download(path))
    if tf.io.gfile.isdir(path):
        if not tf.train.latest_checkpoint(path) and not list(Path(path).glob("*.index")):
            raise CheckpointError(f"train.fine_tune_checkpoint: {path} holds no TensorFlow "
                                  "checkpoint (no 'checkpoint' file or *.index).")
        return tf.train.latest_checkpoint(path) or str(sorted(Path(path).glob("*.index"))[0]
                                                       ).removesuffix(".index")
    if not tf.io.gfile.exists(path + ".index"):
        raise CheckpointError(f"train.fine_tune_checkpoint: {path!r} is neither a checkpoint "
                              "folder nor a checkpoint prefix (PREFIX.index). Give the folder, "
                              "e.g. ../shared/weights/mobilenet_v2_1.0_imagenet.")
    return path


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


def _is_restore_error(e: Exception) -> bool:
    text = str(e)
    return isinstance(e, AssertionError) or any(
        s in text for s in ("incompatible tensor", "Unresolved object", "when attempting to "
                            "restore", "checkpoint"))


class _Progress:
    """orbit train action: a tqdm bar with loss and learning rate."""

    def __init__(self, trainer, total: int, enabled: bool):
        from tqdm import tqdm

        self.trainer = trainer
        start = int(trainer.global_step.numpy())
        self.bar = tqdm(total=total, initial=start, desc="train", unit="step",
                        disable=not enabled, dynamic_ncols=True)
        self.last = start
        self.losses: dict = {}

    def __call__(self, output) -> None:
        step = int(self.trainer.global_step.numpy())
        self.losses = {k: float(v) for k, v in (output or {}).items()}
        self.bar.update(step - self.last)
        self.last = step
        shown = {k: f"{v:.3f}" for k, v in self.losses.items()
                 if k in ("total_loss", "cls_loss", "box_loss")}
        if "learning_rate" in self.losses:
            shown["lr"] = f"{self.losses['learning_rate']:.2g}"
        self.bar.set_postfix(shown, refresh=True)


class _PeriodicEval:
    """orbit train action: every ``eval_every`` steps, COCO metrics on the val split."""

    def __init__(self, trainer, cfg, label_map, model_dir: Path):
        import tensorflow as tf

        self.trainer, self.cfg, self.label_map = trainer, cfg, label_map
        self.every = cfg.train.eval_every
        self.dir = model_dir / "eval"
        self.writer = tf.summary.create_file_writer(str(self.dir))
        self.history: list = []
        self.predictor = None

    def __call__(self, output) -> None:
        import tensorflow as tf

        from od import evaluate, tb
        from od.model import Predictor

        step = int(self.trainer.global_step.numpy())
        if step % self.every and step != self.cfg.train.steps:
            return
        if self.predictor is None:
            self.predictor = Predictor(self.cfg, self.trainer.model)
        metrics = evaluate.coco_on_records(
            self.predictor, self.cfg.data.val, self.label_map, max_images=self.cfg.eval.max_images,
            summaries=lambda g, d: tb.write_eval_summaries(  # images + PR curve in TensorBoard
                self.writer, step, g, d, self.label_map, self.cfg.data.val,
                self.cfg.eval.min_score))
        row = {"step": step, **{k: metrics[k] for k in ("AP", "AP50", "AP75")}}
        self.history.append(row)
        with self.writer.as_default():
            for k in ("AP", "AP50", "AP75"):
                if metrics[k] is not None:
                    tf.summary.scalar(k, metrics[k], step=step)
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / "history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(f"\n[eval @ step {step}] AP {row['AP']:.3f}  AP50 {row['AP50']:.3f}  "
              f"AP75 {row['AP75']:.3f}", flush=True)


def fine_tune(config=None, model_dir: str | os.PathLike = "run", *, extra=(), overrides=(),
              progress: bool = True) -> TrainResult:
    """Fine-tune a detector; resume if ``model_dir`` already has checkpoints.

    Args:
      config: a pipeline YAML path, a PipelineConfig, or None for the defaults.
      model_dir: the run folder (created): checkpoints, pipeline.yaml, label_map.pbtxt,
        TensorBoard logs in ``train/`` and ``eval/``.
      extra: more YAML files layered on ``config``; overrides: ``section.key=value`` strings.
      progress: show the tqdm progress bar.
    Returns:
      TrainResult with the final global step, wall seconds, last losses and evaluations.
    Raises:
      ConfigError: invalid config, missing data/label map, a run folder of another model.
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
    if isinstance(config, config_lib.PipelineConfig):
        cfg = config
        for text in overrides:
            cfg = config_lib.set_key(cfg, *config_lib.parse_override(text))
    else:
        cfg = config_lib.load(config, extra, overrides)
    cfg, lm = config_lib.resolve(cfg)
    ckpt = _check_fine_tune_checkpoint(cfg.train.fine_tune_checkpoint)
    cfg = replace(cfg, train=replace(cfg.train, fine_tune_checkpoint=ckpt))
    _check_resume(cfg, model_dir)
    if ckpt and not tf.train.latest_checkpoint(str(model_dir)):
        _check_init_checkpoint(ckpt, cfg, lm)
    if cfg.train.eval_every and not cfg.data.val:
        raise ConfigError("train.eval_every is set but there is no validation data: set data.val "
                          "or convert the data with a val split.")
    model_dir.mkdir(parents=True, exist_ok=True)
    config_lib.save(cfg, model_dir / PIPELINE_FILE)
    label_map_lib.write(lm, model_dir / "label_map.pbtxt")

    params = config_lib.to_experiment(cfg)
    if cfg.train.seed:
        tf.keras.utils.set_random_seed(cfg.train.seed)
    performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
    strategy = make_strategy(cfg.runtime)
    with strategy.scope():
        task = task_factory.get_task(params.task, logging_dir=str(model_dir))
        trainer = train_utils.create_trainer(params, task, train=True, evaluate=False)
    bar = _Progress(trainer, cfg.train.steps, progress)
    actions = [bar]
    evaluator = None
    if cfg.train.eval_every:
        evaluator = _PeriodicEval(trainer, cfg, lm, model_dir)
        actions.append(evaluator)
    start = time.time()
    try:
        train_lib.run_experiment(distribution_strategy=strategy, task=task, mode="train",
                                 params=params, model_dir=str(model_dir), trainer=trainer,
                                 train_actions=actions)
    except (AssertionError, ValueError) as e:  # Model Garden restores the init checkpoint
        if not (ckpt and _is_restore_error(e)):
            raise
        kind = cfg.train.fine_tune_checkpoint_type
        parts = ", ".join(config_lib.FINE_TUNE_PARTS[kind])
        raise CheckpointError(f"train.fine_tune_checkpoint {ckpt!r}: its {parts} do not fit "
                              f"this model ({cfg.model.backbone} {cfg.model.backbone_id}, "
                              f"{cfg.model.decoder} decoder): {str(e)[:300]}. Use a checkpoint "
                              "of the same architecture (the model.* settings it was trained "
                              "with), or restore less (train.fine_tune_checkpoint_type=backbone)."
                              ) from None
    finally:
        bar.bar.close()
    result = TrainResult(model_dir, int(trainer.global_step.numpy()), time.time() - start,
                         bar.losses, evaluator.history if evaluator else [])
    atomic.write_json(model_dir / "train_result.json",
                      {"step": result.step, "seconds": round(result.seconds, 1),
                       "losses": result.losses, "evaluations": result.evaluations})
    return result
