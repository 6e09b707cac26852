"""What ``od train`` adds to Model Garden's loop, as orbit train actions (called after each loop
of ``train.steps_per_loop`` steps by ``orbit.Controller``; the loop itself stays Model Garden's):

- :class:`Progress`: one tqdm bar (loss, lr, steps/s, ETA) and ``RUN/train/history.jsonl``, one
  row per loop (step, losses, learning rate);
- :class:`PeriodicEval`: every ``train.eval_every`` steps COCO metrics on the val split with
  pycocotools, one console line, ``RUN/eval/history.jsonl``, the curves in
  ``RUN/eval/history.png``, the best checkpoint by ``eval.best_metric`` copied atomically to
  ``RUN/best/`` (with ``metrics.json``), and early stopping after ``train.early_stop_patience``
  evaluations without an improvement of ``train.early_stop_min_delta``;
- :class:`StopCheck` with :class:`StopSignals`: Ctrl-C / SIGTERM ask the loop to stop at the end
  of the current loop; :class:`Stop` carries the reason out of the controller, and ``od.train``
  saves a checkpoint at that step.
"""
from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from pathlib import Path

from od import atomic
from od.layout import BEST_DIR



class Stop(Exception):
    """Raised by an action to end training cleanly at the current step (``reason``: one line;
    ``signum``: the signal that asked for it, or None for early stopping)."""

    def __init__(self, reason: str, signum: int | None = None):
        super().__init__(reason)
        self.reason, self.signum = reason, signum


class StopSignals:
    """Context manager: the first SIGINT/SIGTERM only sets ``signum`` (training stops after the
    current loop and saves); a second one raises KeyboardInterrupt at once. Handlers are
    restored on exit; outside the main thread it does nothing."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, old in self._old.items():
            signal.signal(s, old)
        return False


def _append_jsonl(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def read_jsonl(path: Path, max_step: int | None = None) -> list[dict]:
    """Rows of a history file (missing file → []); with ``max_step`` only rows up to that step
    (a killed run may have logged steps after its last checkpoint)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if max_step is None or row.get("step", 0) <= max_step:
            rows.append(row)
    return rows


def rewrite_jsonl(path: Path, rows: list[dict]) -> None:
    if path.is_file():
        atomic.write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


class Progress:
    """orbit train action: the tqdm bar and ``RUN/train/history.jsonl``."""

    def __init__(self, trainer, total: int, enabled: bool, model_dir: Path, chief: bool = True):
        from tqdm import tqdm

        self.trainer = trainer
        start = int(trainer.global_step.numpy())
        self.bar = tqdm(total=total, initial=start, desc="train", unit="step",
                        disable=not enabled, dynamic_ncols=True)
        self.last, self.time = start, time.time()
        self.losses: dict = {}
        self.path = model_dir / "train" / "history.jsonl" if chief else None
        if self.path is not None:  # resume: forget loops logged after the restored checkpoint
            rows = read_jsonl(self.path, start)
            if len(rows) != len(read_jsonl(self.path)):
                rewrite_jsonl(self.path, rows)

    def __call__(self, output) -> None:
        step = int(self.trainer.global_step.numpy())
        now = time.time()
        rate = (step - self.last) / max(now - self.time, 1e-9)
        self.losses = {k: float(v) for k, v in (output or {}).items()}
        self.bar.update(step - self.last)
        self.last, self.time = step, now
        shown = {k.removesuffix("_loss"): f"{v:.3f}" for k, v in self.losses.items()
                 if k in ("total_loss", "cls_loss", "box_loss")}
        if "learning_rate" in self.losses:
            shown["lr"] = f"{self.losses['learning_rate']:.3g}"
        shown["steps/s"] = f"{rate:.2f}"
        self.bar.set_postfix(shown, refresh=True)
        if self.path is not None:
            _append_jsonl(self.path, {"step": step, **self.losses, "steps_per_second": rate})


def improved(value, best, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (None never does)."""
    return value is not None and (best is None or value > best + min_delta)


class PeriodicEval:
    """orbit train action: periodic COCO evaluation, best checkpoint, early stop, history."""

    def __init__(self, trainer, cfg, label_map, model_dir: Path, start_step: int,
                 write: bool = True, log=print, params=None):
        self.trainer, self.cfg, self.label_map = trainer, cfg, label_map
        self.every, self.metric = cfg.train.eval_every, cfg.eval.best_metric
        self.patience, self.min_delta = cfg.train.early_stop_patience, cfg.train.early_stop_min_delta
        self.model_dir, self.dir = model_dir, model_dir / "eval"
        self.write, self.log = write, log
        self.predictor, self.writer = None, None
        self.params = params  # the run's ExperimentConfig, reused by the Predictor
        self.stop_reason = ""
        # resume: replay the evaluations made up to the restored step
        path = self.dir / "history.jsonl"
        self.history = read_jsonl(path, start_step)
        if write and len(self.history) != len(read_jsonl(path)):
            rewrite_jsonl(path, self.history)
        self.best, self.best_step, self.waited = None, None, 0
        for row in self.history:
            self._update(row)

    def _update(self, row: dict) -> bool:
        value = row.get(self.metric)
        if improved(value, self.best, self.min_delta):
            self.best, self.best_step, self.waited = value, row["step"], 0
            return True
        self.waited += 1
        return False

    def __call__(self, output) -> None:
        import tensorflow as tf

        from od import evaluate, tb
        from od.model import Predictor

        step = int(self.trainer.global_step.numpy())
        if step % self.every and step != self.cfg.train.steps:
            return
        if self.predictor is None:
            self.predictor = Predictor(self.cfg, self.trainer.model, params=self.params)
        summaries = None
        if self.write:  # validation images with predictions + the PR curve, in TensorBoard
            self.writer = self.writer or tf.summary.create_file_writer(str(self.dir))
            summaries = lambda g, d: tb.write_eval_summaries(  # noqa: E731
                self.writer, step, g, d, self.label_map, self.cfg.data.val,
                self.cfg.eval.min_score)
        with self._averaged():
            metrics = evaluate.coco_on_records(self.predictor, self.cfg.data.val, self.label_map,
                                               max_images=self.cfg.eval.max_images,
                                               summaries=summaries)
        row = {"step": step, **{k: v for k, v in metrics.items() if k != "per_class"},
               "total_loss": float((output or {}).get("total_loss", float("nan")))}
        better = self._update(row)
        row["best"] = better
        self.history.append(row)
        shown = {k: "n/a" if row.get(k) is None else f"{row[k]:.3f}"  # None: no box scored
                 for k in ("AP", "AP50", "AP75", self.metric)}
        line = (f"[eval @ step {step}] AP {shown['AP']}  AP50 {shown['AP50']}  "
                f"AP75 {shown['AP75']}"
                + ("" if self.metric in ("AP", "AP50", "AP75") else
                   f"  {self.metric} {shown[self.metric]}")
                + ("  (best, saved to best/)" if better and self.write else
                   f"  (best {self.best:.3f} @ step {self.best_step})" if self.best is not None
                   else ""))
        self.log(line)
        if self.write:
            self.writer = self.writer or tf.summary.create_file_writer(str(self.dir))
            with self.writer.as_default():
                for k in ("AP", "AP50", "AP75"):
                    if metrics[k] is not None:
                        tf.summary.scalar(k, metrics[k], step=step)
            _append_jsonl(self.dir / "history.jsonl", row)
            if better:
                self._save_best(step, row)
            self._plot()
        if self.patience and self.waited >= self.patience:
            self.stop_reason = (f"early stop at step {step}: {self.metric} did not improve by more "
                                f"than {self.min_delta} for {self.waited} evaluations " + (
                                    f"(best {self.best:.3f} at step {self.best_step}, in "
                                    f"{self.model_dir / BEST_DIR})" if self.best is not None else
                                    "(it was undefined: no box of data.val was scored)"))

    @contextlib.contextmanager
    def _averaged(self):
        """Evaluate the moving averages of the weights where the run keeps them
        (``train.ema_decay``), as ``od evaluate``/``export`` restore them: Model Garden's
        ``ExponentialMovingAverage.swap_weights``, swapped back afterwards."""
        from official.modeling import optimization

        opt = self.trainer.optimizer
        if not isinstance(opt, optimization.ExponentialMovingAverage):
            yield
            return
        with self.trainer.strategy.scope():
            opt.swap_weights()
        try:
            yield
        finally:
            with self.trainer.strategy.scope():
                opt.swap_weights()

    def _save_best(self, step: int, row: dict) -> None:
        """Copy the current weights to ``RUN/best/ckpt-STEP`` (+ ``checkpoint`` state file and
        ``metrics.json``); the folder is replaced atomically."""
        with atomic.atomic_path(self.model_dir / BEST_DIR) as tmp:
            tmp.mkdir(parents=True)
            self.trainer.checkpoint.write(str(tmp / f"ckpt-{step}"))
            (tmp / "checkpoint").write_text(f'model_checkpoint_path: "ckpt-{step}"\n'
                                            f'all_model_checkpoint_paths: "ckpt-{step}"\n')
            atomic.write_json(tmp / "metrics.json", {"step": step, "metric": self.metric,
                                                     "value": row.get(self.metric),
                                                     "checkpoint": f"ckpt-{step}", "coco": row})

    def _plot(self) -> None:
        plot_history(read_jsonl(self.model_dir / "train" / "history.jsonl"), self.history,
                     self.dir / "history.png", self.metric)


def plot_history(train_rows: list[dict], eval_rows: list[dict], path: Path, metric: str) -> Path:
    """Loss (left) and AP curves (right) against the step, written atomically as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(1, 2)
    for key in ("total_loss", "cls_loss", "box_loss"):
        pts = [(r["step"], r[key]) for r in train_rows if key in r]
        if pts:
            ax1.plot(*zip(*pts), label=key)
    ax1.set(xlabel="step", ylabel="loss", title="training loss")
    ax1.legend(loc="upper right")
    for key in dict.fromkeys(("AP", "AP50", "AP75", metric)):
        pts = [(r["step"], r[key]) for r in eval_rows if r.get(key) is not None]
        if pts:
            ax2.plot(*zip(*pts), marker="o", label=key)
    ax2.set(xlabel="step", ylabel="COCO metric", title="validation", ylim=(0, 1))
    ax2.legend(loc="lower right")
    fig.tight_layout()
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    return path


class StopCheck:
    """orbit train action (last in the list): raise :class:`Stop` when a signal arrived or the
    evaluator decided to stop early."""

    def __init__(self, signals: StopSignals, evaluator: PeriodicEval | None):
        self.signals, self.evaluator = signals, evaluator

    def __call__(self, output) -> None:
        if self.signals.signum is not None:
            name = signal.Signals(self.signals.signum).name
            raise Stop(f"stopped by {name}", self.signals.signum)
        if self.evaluator is not None and self.evaluator.stop_reason:
            raise Stop(self.evaluator.stop_reason)
