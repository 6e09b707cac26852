"""Benchmark: detection quality of the default command on each real dataset (no hand-tuning).

For raccoon (../shared/data/raccoon, the 160/40 CSV split) and chess (../shared/data/chess_coco,
Roboflow COCO train/valid/test), runs what a new user runs::

    od data convert ...                       (the dataset's own split)
    od data inspect DATA --config CONFIG      anchor coverage as written and as fitted
    od train --config CONFIG --model-dir RUN data.train=DATA
    od evaluate --model RUN --data 'DATA/test-*.tfrecord'

with CONFIG = configs/retinanet_mobilenetv2_fpn_256.yaml, and reports the anchor coverage (before
and after the fit), the input size and anchors the fit chose, AP, AP50, per-class AP/AP50 and train
minutes. Goals (issue 9): raccoon AP50 >= 0.95; chess AP50 >= 0.85 with every class AP50 >= 0.6,
training <= 30 min on a 2-core CPU. Writes bench/out/quality.json.

Usage:
  python bench/bench_quality.py                       # the full default command (long)
  python bench/bench_quality.py --coverage-only       # convert + coverage only (minutes)
  python bench/bench_quality.py --steps 4 --datasets chess   # smoke test of the whole bench
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFIG = ROOT / "configs" / "retinanet_mobilenetv2_fpn_256.yaml"
RACCOON = SHARED / "data" / "raccoon"
CHESS = SHARED / "data" / "chess_coco"

#: dataset → (``od data convert`` arguments, AP50 goal, per-class AP50 goal)
DATASETS = {
    "raccoon": (["--format", "csv", "--annotations", f"train={RACCOON}/data/train_labels.csv",
                 "--annotations", f"test={RACCOON}/data/test_labels.csv",
                 "--images", str(RACCOON / "images")], 0.95, None),
    "chess": (["--format", "coco",
               "--annotations", f"train={CHESS}/train/_annotations.coco.json",
               "--annotations", f"val={CHESS}/valid/_annotations.coco.json",
               "--annotations", f"test={CHESS}/test/_annotations.coco.json"], 0.85, 0.6),
}


def od(*args: str) -> tuple[float, str]:
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "od.cli", *map(str, args)], cwd=ROOT, text=True,
                          capture_output=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"od {' '.join(map(str, args))} failed ({proc.returncode})")
    return time.time() - t, proc.stdout


def run_dataset(name: str, work: Path, steps: int | None, coverage_only: bool) -> dict:
    convert_args, goal, class_goal = DATASETS[name]
    data, run = work / "data", work / "run"
    fig: dict = {"dataset": name}
    fig["convert_s"], _ = od("data", "convert", *convert_args, "--out", data)
    _, _ = od("data", "inspect", data, "--config", CONFIG, "--out", work / "inspect",
              "--samples", "4")
    rep = json.loads((work / "inspect" / "summary.json").read_text())["anchors"]
    fig["coverage_as_written"] = rep["as_written"]["recall"]
    fig["coverage_fitted"] = rep["fitted"]["recall"]
    fig["fit"] = rep["fit"]
    fig["per_class_coverage_fitted"] = rep["fitted"]["per_class"]
    if coverage_only:
        return fig
    extra = [f"train.steps={steps}", "train.warmup_steps=1", "train.steps_per_loop=2",
             "train.checkpoint_every=2"] if steps else []
    train_s, out = od("train", "--config", CONFIG, "--model-dir", run, f"data.train={data}",
                      *extra, "--no-progress")
    fig["train_minutes"] = round(train_s / 60, 2)
    fig["train_log"] = [ln for ln in out.splitlines()
                        if ln.startswith(("anchor", "WARNING: anchor"))]
    pipe = (run / "pipeline.yaml").read_text()
    fig["pipeline_model"] = {k: v for k, v in (ln.strip().split(": ", 1) for ln in pipe.splitlines()
                                               if ln.startswith("  ") and ": " in ln)
                             if k in ("input_size", "anchor_size", "num_scales", "anchor_fit")}
    od("evaluate", "--model", run, "--data", f"{data}/test-*.tfrecord")
    coco = json.loads((run / "eval" / "metrics.json").read_text())["coco"]
    fig.update({k: None if coco[k] is None else round(coco[k], 3) for k in ("AP", "AP50")})
    fig["per_class"] = {c: {k: None if v.get(k) is None else round(v[k], 3)
                            for k in ("AP", "AP50")} for c, v in coco["per_class"].items()}
    if steps:  # a smoke test says nothing about the goals
        return fig
    return verdict(fig, goal, class_goal)


def verdict(fig: dict, goal: float, class_goal: float | None) -> dict:
    """Add the goal checks to a dataset's figures. A class with no box in the test split has no
    AP (pycocotools gives -1, stored as None): it is listed, not counted as a failure (chess:
    'bishop' has one training box and none in test)."""
    fig["goal_AP50"] = goal
    fig["meets_AP50"] = fig["AP50"] is not None and fig["AP50"] >= goal
    if class_goal is not None:
        scored = {c: v["AP50"] for c, v in fig["per_class"].items() if v["AP50"] is not None}
        fig["classes_without_test_boxes"] = sorted(set(fig["per_class"]) - set(scored))
        fig["lowest_class_AP50"] = min(scored.values()) if scored else None
        fig["meets_per_class"] = bool(scored) and all(v >= class_goal for v in scored.values())
    fig["meets_30_min"] = fig["train_minutes"] <= 30
    return fig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="raccoon,chess")
    ap.add_argument("--steps", type=int, default=None,
                    help="override train.steps (smoke tests only; default: the config's)")
    ap.add_argument("--coverage-only", action="store_true")
    ap.add_argument("--work", default=str(ROOT / "bench" / "out" / "quality"))
    a = ap.parse_args()
    if not (SHARED / "data").is_dir():
        raise SystemExit(f"{SHARED / 'data'} not found: this benchmark needs ../shared")
    results = []
    for name in a.datasets.split(","):
        work = Path(a.work) / name
        shutil.rmtree(work, ignore_errors=True)  # the benchmark's own output folder
        results.append(run_dataset(name, work, a.steps, a.coverage_only))
        print(json.dumps(results[-1], indent=2), flush=True)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    name = "quality_coverage.json" if a.coverage_only else \
        ("quality_smoke.json" if a.steps else "quality.json")
    (out / name).write_text(json.dumps({"steps_override": a.steps, "results": results}, indent=2))
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
