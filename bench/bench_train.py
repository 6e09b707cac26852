"""Benchmark: does `od train` cost anything over a plain Model Garden training loop?

Three contenders train the same model on the same TFRecords for the same number of steps, each in
its own fresh Python process (so no TensorFlow state is shared), in one run:

  od        ``od train --config CONFIG --model-dir RUN data.train=DATA train.steps=N`` (the command
            a user runs: anchor check, progress bar, history, checkpoints, its train actions)
  mg        Model Garden's ``train_lib.run_experiment(mode='train')`` on the identical
            ``ExperimentConfig`` that `od` built (read back from ``RUN/pipeline.yaml``, so the
            fitted anchors and the resolved backbone checkpoint are the same), same strategy
  cached    the same as ``mg`` but fed one cached in-memory batch, repeated (input pipeline
            removed: decode, augmentation and shuffling cost nothing)

Throughput is the steady state: steps per second over the training loops after the first
``--warmup`` steps (graph tracing and the first checkpoint restore excluded), measured by the same
kind of per-loop clock in all three (od's ``RUN/train/history.jsonl``; an orbit train action
for the other two). Contenders run in turn, ``--repeats`` rounds (od, mg, cached; then mg,
cached, od; ...) so that a change of machine load hits all of them; the medians of the rounds are
reported, and the median of each round's own ratio (paired, robust to a slow drift of the
machine's speed).

Goals (issue 15): od >= 0.97x mg and >= 0.95x cached.

Usage:
  python bench/bench_train.py [--steps 120] [--warmup 30] [--repeats 2] [--config CONFIG]
                              [--set key=value ...]      (extra overrides for all contenders)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RACCOON = ROOT.parent / "shared" / "data" / "raccoon"
CONFIG = ROOT / "configs" / "retinanet_mobilenetv2_fpn_256.yaml"
sys.path.insert(0, str(ROOT))


def machine() -> str:
    from od.zoo_select import cpu_model
    return f"{cpu_model()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}"


def steady_rate(rows: list[dict], warmup: int) -> float:
    """Steps/s over the loops that start after ``warmup`` steps. ``rows``: ``{step, seconds}`` at
    the end of each loop, in order (``seconds`` = that loop's duration)."""
    steps = secs = 0.0
    prev = None
    for r in rows:
        if prev is not None and prev >= warmup:
            steps += r["step"] - prev
            secs += r["seconds"]
        prev = r["step"]
    if not secs:
        raise SystemExit(f"no loop after the {warmup} warm-up steps: raise --steps")
    return steps / secs


# --- contenders (each runs in a fresh process: `bench_train.py --worker NAME ...`) ------------

def worker_od(run: Path, data: Path, steps: int, config: str, sets: list[str]) -> list[dict]:
    cmd = [sys.executable, "-m", "od.cli", "train", "--config", config, "--model-dir", str(run),
           f"data.train={data}", f"train.steps={steps}", *sets]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"od train failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rows = [json.loads(x) for x in (run / "train" / "history.jsonl").read_text().splitlines()]
    return [{"step": r["step"], "seconds": 0.0 if not r["steps_per_second"] else
             (r["step"] - p["step"]) / r["steps_per_second"]}
            for p, r in zip([{"step": 0}, *rows], rows)]


def worker_mg(od_run: Path, run: Path, cached: bool) -> list[dict]:
    """Model Garden's own loop on the ExperimentConfig od built for ``od_run``."""
    from official.core import task_factory, train_lib
    from official.modeling import performance

    import official.vision.registry_imports  # noqa: F401
    from od import config as config_lib
    from od.experiment import resolve, to_experiment
    from od.train import make_strategy

    cfg, _ = resolve(config_lib.load(od_run / "pipeline.yaml"))
    params = to_experiment(cfg)
    performance.set_mixed_precision_policy(params.runtime.mixed_precision_dtype)
    strategy = make_strategy(cfg.runtime)
    with strategy.scope():
        task = task_factory.get_task(params.task, logging_dir=str(run))
    if cached:
        build = task.build_inputs

        def one_batch(params_, input_context=None):
            return build(params_, input_context).take(1).cache().repeat()

        task.build_inputs = one_batch
    rows, clock = [], [time.perf_counter()]

    def action(_output):
        step = int(trainer_ref[0].global_step.numpy()) if trainer_ref else 0
        now = time.perf_counter()
        rows.append({"step": step, "seconds": now - clock[0]})
        clock[0] = now

    from official.core import train_utils
    with strategy.scope():
        trainer = train_utils.create_trainer(params, task, train=True, evaluate=False)
    trainer_ref = [trainer]
    train_lib.run_experiment(distribution_strategy=strategy, task=task, mode="train",
                             params=params, model_dir=str(run), trainer=trainer,
                             train_actions=[action])
    return rows


def run_worker(a) -> None:
    if a.worker == "od":
        rows = worker_od(Path(a.run), Path(a.data), a.steps, a.config, a.set)
    else:
        rows = worker_mg(Path(a.od_run), Path(a.run), a.worker == "cached")
    print("ROWS " + json.dumps(rows))


def contender(name: str, work: Path, data: Path, a, k: int) -> float:
    run = work / f"{name}-{k}"
    cmd = [sys.executable, __file__, "--worker", name, "--run", str(run), "--data", str(data),
           "--steps", str(a.steps), "--config", a.config, "--od-run", str(work / "od-0")]
    cmd += [f"--set={s}" for s in a.set]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    line = [x for x in proc.stdout.splitlines() if x.startswith("ROWS ")]
    if proc.returncode or not line:
        raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    rate = steady_rate(json.loads(line[-1][5:]), a.warmup)
    print(f"  round {k + 1}  {name:7s} {rate:6.3f} steps/s", flush=True)
    shutil.rmtree(run, ignore_errors=True) if name != "od" or k else None
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--warmup", type=int, default=30, help="steps left out of the rate")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--set", action="append", default=[], help="extra override, key=value")
    ap.add_argument("--worker", choices=("od", "mg", "cached"), help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--od-run", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return run_worker(a)
    if not RACCOON.is_dir():
        raise SystemExit(f"{RACCOON} not found: this benchmark needs ../shared")
    work = Path(tempfile.mkdtemp(prefix="od-bench-train-"))
    try:
        data = work / "data"
        subprocess.run([sys.executable, "-m", "od.cli", "data", "convert", "--format", "csv",
                        "--annotations", f"train={RACCOON}/data/train_labels.csv",
                        "--annotations", f"test={RACCOON}/data/test_labels.csv",
                        "--images", str(RACCOON / "images"), "--out", str(data)],
                       cwd=ROOT, check=True, capture_output=True)
        print(f"{time.strftime('%Y-%m-%d %H:%M')}  {machine()}")
        print(f"{Path(a.config).name} {' '.join(a.set)}: {a.steps} steps, rate over steps "
              f"{a.warmup}..{a.steps}, {a.repeats} round(s)")
        rates: dict[str, list[float]] = {"od": [], "mg": [], "cached": []}
        names = list(rates)
        for k in range(a.repeats):  # the order turns each round: no contender always goes first
            for name in names[k % len(names):] + names[:k % len(names)]:
                rates[name].append(contender(name, work, data, a, k))
        med = {k: statistics.median(v) for k, v in rates.items()}
        print(f"\n{'contender':40s}{'steps/s':>9s}{'images/s':>10s}")
        bs = 8
        for name, label in (("od", "od train"), ("mg", "Model Garden run_experiment"),
                            ("cached", "Model Garden, one cached batch")):
            print(f"{label:40s}{med[name]:9.3f}{med[name] * bs:10.1f}")
        # paired ratios: each round's od against the same round's others (a slow drift of the
        # machine's speed hits a round's three runs alike), then the median over the rounds
        paired = {o: statistics.median(x / y for x, y in zip(rates["od"], rates[o]))
                  for o in ("mg", "cached")}
        print(f"\nod / run_experiment: {med['od'] / med['mg']:.3f}x of the medians, "
              f"{paired['mg']:.3f}x median of the rounds' ratios   (goal >= 0.97)")
        print(f"od / cached batch:   {med['od'] / med['cached']:.3f}x of the medians, "
              f"{paired['cached']:.3f}x median of the rounds' ratios   (goal >= 0.95)")
        print(f"machine after the run: {machine()}")
        out = ROOT / "bench" / "out"
        out.mkdir(parents=True, exist_ok=True)
        (out / "train.json").write_text(json.dumps(
            {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "steps": a.steps,
             "warmup": a.warmup, "overrides": a.set, "rates": rates, "median": med,
             "od_vs_run_experiment": med["od"] / med["mg"],
             "od_vs_cached": med["od"] / med["cached"],
             "od_vs_run_experiment_paired": paired["mg"],
             "od_vs_cached_paired": paired["cached"]}, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
