"""The checks ``od train`` makes before it builds anything (od.train calls them in this order):

- :func:`check_runtime`: a strategy this environment can run (``TF_CONFIG``);
- :func:`check_model_dir`: the run folder is new, empty, or a run of ``od train``, and never the
  training data or a user's folder;
- :func:`check_shards`: every training/validation shard reads (framing, checksums) and every box's
  class id and name is in the label map (a label map edited after ``od data convert`` would
  otherwise train ids past the class head, or under other names, without a word);
- :func:`check_strips` (once the input size is known): no training image is so long and thin
  that the input pipeline would resize its short side to 0 px;
- :func:`check_checkpoints`: the newest checkpoint of a run reads (:func:`damaged_checkpoint`), and
  a run folder with checkpoint files has a ``checkpoint`` state file naming one (else TensorFlow
  would start a fresh run over them);
- :func:`check_resume`: resuming keeps the model, the optimizer, the label map, and a
  ``train.steps`` not below the step reached; other changed settings are listed.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from od import config as config_lib
from od.errors import AnnotationError, CheckpointError, ConfigError, LabelMapError
from od.layout import LABEL_MAP_FILE, PIPELINE_FILE

LOG_FILE = "train.log"  # the CLI's log of the run (od.logs), in RUN
STRIP = 32  # training images longer than wide by more than this are checked (check_strips)

#: Model fields that only change post-processing, not the weights: free to change on resume.
_POST_PROCESSING = {"name", "max_detections", "nms_iou_threshold", "score_threshold",
                    "nms_version"}
#: Settings a resume does not compare (train.steps has its own message; the checkpoint is read
#: only on a fresh run).
_NOT_COMPARED = {"train.steps", "train.fine_tune_checkpoint", "train.fine_tune_checkpoint_type"}


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


def check_model_dir(model_dir: Path, cfg: config_lib.PipelineConfig, writes: bool = True
                    ) -> None:
    """``model_dir`` is new, empty, or a run of ``od train`` (resumed); never the training data,
    a folder holding it, another command's output (an export also holds pipeline.yaml), or a
    user's folder (od would write pipeline.yaml, label_map.pbtxt and
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
    other = outputs.output_of(model_dir) if theirs else None  # an export holds pipeline.yaml too
    if other not in (None, "train"):
        raise outputs.OutputError(
            f"--model-dir {model_dir} is an output of `od {other}`, not a run of `od train`; "
            "training would write checkpoints among its files. Give a new or empty folder, or "
            "the run folder to resume.")
    if theirs and not config_lib.written_by_od(model_dir / PIPELINE_FILE):
        raise outputs.OutputError(
            f"--model-dir {model_dir} exists, is not empty and is not a run of `od train` (it "
            f"has no {PIPELINE_FILE} written by od); training would write checkpoints, "
            f"{PIPELINE_FILE} and {LABEL_MAP_FILE} among its files. Give a new or empty folder, "
            "or an od run folder to resume it.")


def _check_classes(path: str, k: int, example, label_map) -> None:
    """Every box of ``example`` (record ``k`` of shard ``path``) has a class id of
    ``label_map``, under its name (or display name) where the record stores one."""
    known = {it.id: it for it in label_map.items}
    fix = (f"Was the label map changed after `od data convert` wrote {path}? Set "
           "data.label_map to the label map the shards were converted with, or convert the data "
           f"again with --label-map {label_map.source}.")
    for cid, box in zip(example.class_ids, example.record.boxes):
        item = known.get(cid)
        name = f"{example.record.image_path} (record {k})"
        if item is None:
            ids = ", ".join(f"{i} {it.name!r}" for i, it in sorted(known.items())[:10])
            raise LabelMapError(f"{path}: {name} has a box of class id {cid} ({box.label!r}), "
                                f"which the label map {label_map.source} does not have (its "
                                f"ids: {ids}). {fix}")
        if box.label not in (str(cid), item.name, item.display_name):
            raise LabelMapError(f"{path}: {name} has a box of class id {cid} named "
                                f"{box.label!r}, but the label map {label_map.source} names id "
                                f"{cid} {item.name!r}. {fix}")


@dataclass(frozen=True)
class ShardCheck:
    """What :func:`check_shards` found: ``images``, the number of training examples;
    ``strips``, ``(height, width, name)`` (pixels) of each training image more than ``STRIP``
    times longer than wide, for :func:`check_strips`; ``records``, the training examples as
    ``ImageAnnotation`` without their image bytes (boxes ``[ymin, xmin, ymax, xmax]``
    normalised, labels the label map's names), for the anchor check (``od.anchors.BoxSet``).
    ``strips`` and ``records`` are filled only with a label map."""
    images: int
    strips: tuple[tuple[int, int, str], ...] = ()
    records: tuple = ()


def check_shards(cfg: config_lib.PipelineConfig, label_map=None) -> ShardCheck:
    """Read every training and validation shard once, checking its framing and checksums, so a
    corrupt shard is an AnnotationError naming it before training starts (TensorFlow would fail
    much later with a DataLossError that does not name the file); with ``label_map``, also that
    every box's class id (and stored name) is the label map's (LabelMapError naming the shard,
    the image and the id), and, with ``train.eval_every``, that the validation shards hold a box
    (ConfigError: negatives only leave AP undefined). Returns a :class:`ShardCheck`; its
    ``records`` spare the anchor check a second read of the training shards, and hold no image
    bytes (a dataset larger than memory stays out of it)."""
    import glob

    from od.data import tfrecord, tfrecord_io

    count, val_images, val_boxes, strips, records = 0, 0, 0, [], []
    names = {it.id: it.name for it in label_map.items} if label_map is not None else {}
    for pattern, is_train in ((cfg.data.train, True), (cfg.data.val, False)):
        for path in sorted(glob.glob(pattern)) if pattern else []:
            n = 0
            try:
                for n, record in enumerate(tfrecord_io.iter_records(path), start=1):
                    if label_map is not None:
                        example = tfrecord.parse_example(record, path)
                        _check_classes(path, n - 1, example, label_map)
                        h, w = example.record.height, example.record.width
                        if is_train and 0 < STRIP * min(h, w) < max(h, w):
                            strips.append((h, w, f"{path}: {example.record.image_path} "
                                                 f"(record {n - 1})"))
                        if is_train:
                            records.append(_slim(example, names, f"{path}#{n - 1}"))
                        val_boxes += 0 if is_train else sum(
                            not b.is_crowd for b in example.record.boxes)
            except AnnotationError as e:
                raise AnnotationError(f"training data: {e}") from None
            count += n if is_train else 0
            val_images += 0 if is_train else n
    if label_map is not None and cfg.train.eval_every and val_images and not val_boxes:
        raise ConfigError(
            f"data.val {cfg.data.val}: its {val_images} image(s) hold no box (negatives only), so "
            f"the evaluation every {cfg.train.eval_every} steps (train.eval_every) has no AP to "
            "measure; put images with boxes in the val split (convert again, e.g. --split "
            "0.8,0.1,0.1), set data.val to other shards, or set train.eval_every=0.")
    return ShardCheck(count, tuple(strips), tuple(records))


def _slim(example, names: dict, source: str):
    """``example.record`` without its image bytes, each box under the label map's name of its
    class id (``names``: id → name; ids checked by :func:`_check_classes`); its size checked
    (``od.data.values``)."""
    import dataclasses

    from od.data import values

    values.image_size(example.record.width, example.record.height,
                      f"{source}: image/width, height")
    boxes = tuple(dataclasses.replace(b, label=names[i])
                  for b, i in zip(example.record.boxes, example.class_ids))
    return example.record.replace(boxes=boxes, image_data=None, source=source)


def check_strips(cfg: config_lib.PipelineConfig, strips) -> None:
    """Raise AnnotationError for a training image (``(height, width, name)``, as in
    :attr:`ShardCheck.strips`) so much longer than wide that Model Garden's input pipeline, which
    resizes its long side to ``model.input_size`` (times ``data.scale_min`` at most jitter),
    would round its short side to 0 px: TensorFlow fails mid-training ("output dimensions
    must be positive"). ``od detect``/``evaluate`` pad such strips themselves; training cannot."""
    side = round(cfg.data.scale_min * cfg.model.input_size) if cfg.model.input_size else 0
    bad = [(h, w, name) for h, w, name in strips if side and min(h, w) * side / max(h, w) <= 0.5]
    if bad:
        h, w, name = max(bad, key=lambda t: max(t[:2]) / min(t[:2]))
        raise AnnotationError(
            f"training data: {name} is {w}x{h} px, its long side {max(h, w) / min(h, w):.0f} "
            f"times its short side ({len(bad)} such image(s)): resized to {side} px along its "
            "long side "
            f"(model.input_size {cfg.model.input_size} x data.scale_min {cfg.data.scale_min:g}) "
            "its short side becomes 0 px, which training cannot take. Pad such images to at most "
            f"{STRIP}:1, or cut them into pieces, and convert again.")


def check_checkpoints(model_dir: Path, latest: str | None) -> None:
    """Before a resume writes anything: raise CheckpointError when the newest checkpoint
    ``latest`` cannot be read (:func:`damaged_checkpoint`), or when ``model_dir`` holds
    checkpoint files (``ckpt-N.index``) but no ``checkpoint`` state file names one of them
    (``latest`` is None): TensorFlow would start a fresh run and write its checkpoints over
    them."""
    if latest:
        damaged = damaged_checkpoint(model_dir, latest)
        if damaged:
            raise damaged
        return
    if not model_dir.is_dir():
        return
    found = sorted((p.name[:-len(".index")] for p in model_dir.glob("ckpt-*.index")),
                   key=lambda n: int(re.sub(r"\D", "", n) or 0))
    if found:
        raise CheckpointError(
            f"{model_dir} holds checkpoints ({', '.join(found)}) but its 'checkpoint' state file "
            "is missing, unreadable or names none of them, so training would start again from "
            f"step 0 over them. To resume from the newest, write the line "
            f"model_checkpoint_path: \"{found[-1]}\" as {model_dir / 'checkpoint'}; or train "
            "in a new --model-dir.")


def _names(label_map) -> dict:
    return {it.id: it.name for it in label_map.items}


def check_resume(cfg: config_lib.PipelineConfig, label_map, model_dir: Path,
                 latest: str | None, log=print):
    """The config of the run already in ``model_dir`` (None if it has no checkpoint yet: a
    failed first attempt is simply started again), after checking that resuming it keeps its
    model, optimizer and label map and does not ask for fewer steps than it has trained; other
    changed settings are listed through ``log``.

    Raises:
      ConfigError: another model (the differing keys), optimizer, or ``train.steps`` below the
        step reached. LabelMapError: the label map names other classes than the run's.
    """
    from od import label_map as label_map_lib
    from od.train_resume import checkpoint_step

    saved = model_dir / PIPELINE_FILE
    if not saved.is_file() or not latest:
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
    lm_path = model_dir / LABEL_MAP_FILE
    theirs = _names(label_map_lib.read(lm_path)) if lm_path.is_file() else None
    if theirs is not None and theirs != _names(label_map):
        ours = _names(label_map)
        changed = sorted(f"id {i}: {theirs.get(i)!r} → {ours.get(i)!r}"
                         for i in set(theirs) | set(ours) if theirs.get(i) != ours.get(i))
        raise LabelMapError(
            f"{model_dir} was trained with the label map {lm_path}; {cfg.data.label_map} names "
            f"other classes ({'; '.join(changed[:5])}), and resuming would relabel what the "
            "class head learned. Resume with the run's label map (convert the data with "
            f"--label-map {lm_path}), or start a new --model-dir with train.fine_tune_checkpoint="
            f"{model_dir} train.fine_tune_checkpoint_type=detector.")
    step = checkpoint_step(latest)
    if cfg.train.steps < step:
        raise ConfigError(
            f"{model_dir} is already at step {step}, beyond train.steps = {cfg.train.steps}. "
            f"Raise train.steps (to at least {step}) to resume it; for the model of an earlier "
            "step use `od export --checkpoint` with one of its checkpoints, or train a new "
            "--model-dir.")
    from od.experiment import absolute  # a run saved before paths were absolute: same paths

    before, after = config_lib.to_dict(old), config_lib.to_dict(cfg)
    before["data"].update({k: absolute(before["data"][k])
                           for k in ("train", "val", "label_map")})
    changes = [f"{s}.{k} {before[s][k]!r} → {v!r}" for s in after for k, v in after[s].items()
               if f"{s}.{k}" not in _NOT_COMPARED and before[s].get(k) != v]
    if changes:
        log(f"resuming {model_dir} at step {step} with settings changed since it was last "
            f"saved: {'; '.join(changes)}. They apply from step {step} on (the learning-rate "
            "schedule continues where it was); to use them from the start, train a new "
            f"--model-dir with train.fine_tune_checkpoint={model_dir} "
            "train.fine_tune_checkpoint_type=full.")
    if cfg.train.steps == step:
        log(f"{model_dir} is already at train.steps = {step}: nothing to train (raise "
            "train.steps to train more).")
    return old


def damaged_checkpoint(model_dir: Path, latest: str) -> CheckpointError | None:
    """The CheckpointError for a newest checkpoint ``latest`` of ``model_dir`` whose files cannot
    be read (truncated, a data file missing: every tensor is read once), naming the older ones
    to resume from; None when it reads."""
    import tensorflow as tf

    try:
        reader = tf.train.load_checkpoint(latest)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
        return None
    except (tf.errors.OpError, IndexError, ValueError) as e:
        why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    state = tf.train.get_checkpoint_state(str(model_dir))
    older = [Path(p).name for p in (state.all_model_checkpoint_paths if state else [])
             if Path(p).name != Path(latest).name and Path(f"{p}.index").is_file()]
    fix = (f"To resume from the previous one, write the line model_checkpoint_path: "
           f"\"{older[-1]}\" as {model_dir / 'checkpoint'}, or train a new --model-dir with "
           f"train.fine_tune_checkpoint={model_dir / older[-1]} "
           "train.fine_tune_checkpoint_type=full." if older else
           "No older checkpoint is left: train in a new --model-dir.")
    return CheckpointError(f"{latest}, the newest checkpoint of {model_dir}, cannot be read "
                           f"({why}): its files were damaged (a full disk, a copy cut short?). "
                           f"{fix}")
