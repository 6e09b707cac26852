"""Starting a training run in a folder that may hold an earlier one: leftovers and the schedule.

- :func:`clean_temp`: a run killed while saving leaves TensorFlow's ``ckpt-N_temp/`` folder (and
  od's ``.best.tmp-PID`` / ``.history.png.tmp-PID``); they are removed at the next start. Only
  these names, which TensorFlow or od made, are touched.
- :func:`extend_schedule`: re-running with another ``train.steps`` continues from the newest
  checkpoint; the learning rate goes on from the value the previous schedule had at that step
  and decays (cosine, no second warm-up) to 0 at the new end. The continuation is kept in
  ``RUN/schedule.json`` so that later resumes use it too, and :func:`apply_schedule` puts it into
  Model Garden's optimizer config (its ``CosineDecayWithOffset``).
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from od import atomic

SCHEDULE_FILE = "schedule.json"
_TEMP = (re.compile(r"ckpt-\d+_temp"), re.compile(r"\.(best|history\.png|checkpoint)\.(tmp|old)-\d+"))


def clean_temp(model_dir: Path) -> list[str]:
    """Remove the temporary checkpoint folders/files a killed run left in ``model_dir`` and in
    ``model_dir/eval``; returns their names."""
    removed = []
    for folder in (model_dir, model_dir / "eval"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if any(r.fullmatch(p.name) for r in _TEMP):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
                removed.append(p.name)
    return removed


def checkpoint_step(prefix: str | None) -> int:
    """``.../ckpt-120`` → 120 (0 for None)."""
    m = re.search(r"-(\d+)$", prefix or "")
    return int(m.group(1)) if m else 0


def learning_rate_at(params, step: int) -> float:
    """The learning rate Model Garden's schedule of ``params`` gives at ``step``."""
    from official.modeling import optimization

    sched = optimization.OptimizerFactory(params.trainer.optimizer_config).build_learning_rate()
    return float(sched(step)) if callable(sched) else float(sched)


def apply_schedule(params, schedule: dict | None):
    """Put a continuation schedule (``schedule.json``) into ``params`` (in place; returned)."""
    if schedule:
        opt = params.trainer.optimizer_config
        opt.learning_rate.cosine.initial_learning_rate = schedule["initial_learning_rate"]
        opt.learning_rate.cosine.decay_steps = schedule["decay_steps"]
        opt.learning_rate.cosine.offset = schedule["offset"]
        opt.warmup.type = None
    return params


def read_schedule(model_dir: Path) -> dict | None:
    path = model_dir / SCHEDULE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def extend_schedule(old_cfg, new_cfg, model_dir: Path, step: int, log=print,
                    write: bool = True) -> dict | None:
    """The schedule for resuming at ``step`` with ``new_cfg`` after a run made with ``old_cfg``.

    Same ``train.steps`` (or a fresh run): the saved continuation, if any. Other steps: a new
    continuation from the old schedule's learning rate at ``step`` to 0 at the new end, written
    to ``RUN/schedule.json`` (``write=False``: computed only, for the other workers of a
    cluster, whose chief writes it).
    """
    from od.experiment import to_experiment

    saved = read_schedule(model_dir)
    if not step or old_cfg is None or old_cfg.train.steps == new_cfg.train.steps \
            or step >= new_cfg.train.steps:
        return saved
    old_params = apply_schedule(to_experiment(old_cfg), saved)
    lr = learning_rate_at(old_params, step)
    schedule = {"offset": step, "initial_learning_rate": lr,
                "decay_steps": new_cfg.train.steps - step, "previous_steps": old_cfg.train.steps}
    if write:
        atomic.write_json(model_dir / SCHEDULE_FILE, schedule)
    if lr > 0:
        log(f"train.steps {old_cfg.train.steps} → {new_cfg.train.steps}: continuing from step "
            f"{step} at learning rate {lr:.3g}, decaying to 0 at step {new_cfg.train.steps}")
    else:
        log(f"train.steps {old_cfg.train.steps} → {new_cfg.train.steps}: the previous schedule "
            f"had ended at step {step} (learning rate 0), so more steps change nothing. To train "
            f"more, start a new run from this one: train.fine_tune_checkpoint={model_dir} "
            "train.fine_tune_checkpoint_type=full.")
    return schedule
