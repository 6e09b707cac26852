"""Benchmark: the main job on the real raccoon data, as the README's command sequence.

Runs `od data convert` (the 160/40 CSV split), `od train` (configs/retinanet_mobilenetv2_fpn_256.yaml
from the ImageNet MobileNetV2 backbone in ../shared/weights), `od evaluate` on the 40 test images,
`od export` and `od detect`, timing each stage; then, as the baseline measured in the same run,
trains Model Garden's default head width (FPN and head 256 filters) for a few steps to compare
throughput. Prints the figures and the ratios; writes bench/out/raccoon.json.

Time to accuracy (issue 15): the shipped recipe must reach test AP >= 0.56 and AP50 >= 0.95 in
<= 8 minutes of training wall time (``train_s``: the training loop as `od train` reports it in
``RUN/train_result.json``, from the first step to the last checkpoint; interpreter start, imports
and the anchor check are reported apart in ``train_command_s``). ``--recipe LABEL:OVERRIDES``
(repeatable, overrides comma-separated) trains other recipes the same way in the same run and
prints them in one table: the tuning evidence for the shipped default.

Usage: python bench/bench_raccoon.py [--steps N] [--baseline-steps 30] [--work bench/out/raccoon]
                                    [--recipe 'head128:model.fpn_filters=128,model.head_filters=128']
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RACCOON = SHARED / "data" / "raccoon"
CONFIG = ROOT / "configs" / "retinanet_mobilenetv2_fpn_256.yaml"
sys.path.insert(0, str(ROOT))
from od.zoo_select import cpu_model  # noqa: E402  (the one CPU-name reader)

GOAL_SECONDS, GOAL_AP, GOAL_AP50 = 480.0, 0.56, 0.95  # issue 15: time to accuracy


def od(*args: str) -> tuple[float, str]:
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "od.cli", *args], cwd=ROOT, text=True,
                          capture_output=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"od {' '.join(args)} failed ({proc.returncode})")
    return time.time() - t, proc.stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=0, help="0: the config's train.steps")
    ap.add_argument("--recipe", action="append", default=[],
                    help="LABEL:key=value,key=value  another recipe trained and evaluated alike")
    ap.add_argument("--baseline-steps", type=int, default=30)
    ap.add_argument("--work", default=str(ROOT / "bench" / "out" / "raccoon"))
    a = ap.parse_args()
    if not RACCOON.is_dir():
        raise SystemExit(f"{RACCOON} not found: this benchmark needs ../shared")
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    data, run, exp, det = work / "data", work / "run", work / "export", work / "detections"
    fig = {"date": time.strftime("%Y-%m-%d %H:%M"),
           "machine": f"{cpu_model()}, {os.cpu_count()} cores, load average at start "
                      f"{os.getloadavg()[0]:.2f}"}

    fig["convert_s"], _ = od("data", "convert", "--format", "csv",
                             "--annotations", f"train={RACCOON}/data/train_labels.csv",
                             "--annotations", f"test={RACCOON}/data/test_labels.csv",
                             "--images", str(RACCOON / "images"), "--out", str(data))
    steps = [f"train.steps={a.steps}"] if a.steps else []
    recipes = [("shipped default", steps)] + [
        (r.split(":", 1)[0], [*steps, *filter(None, r.partition(":")[2].split(","))])
        for r in a.recipe]
    table = []
    for k, (label, sets) in enumerate(recipes):
        rdir = run if k == 0 else work / f"recipe-{k}"
        cmd_s, _ = od("train", "--config", str(CONFIG), "--model-dir", str(rdir),
                      f"data.train={data}", *sets, "--no-progress")
        result = json.loads((rdir / "train_result.json").read_text())
        eval_s, _ = od("evaluate", "--model", str(rdir), "--data", f"{data}/test-*.tfrecord")
        coco = json.loads((rdir / "eval" / "metrics.json").read_text())["coco"]
        row = {"recipe": label, "overrides": sets, "steps": result["step"],
               "train_s": result["seconds"], "train_command_s": round(cmd_s, 1),
               "evaluate_s": round(eval_s, 1), **{m: round(coco[m], 3) for m in
                                                  ("AP", "AP50", "AP75")}}
        row["goal_met"] = (row["train_s"] <= GOAL_SECONDS and row["AP"] >= GOAL_AP
                           and row["AP50"] >= GOAL_AP50)
        table.append(row)
        print(f"{label:24s} {row['steps']:5d} steps  train {row['train_s']:6.1f} s  "
              f"AP {row['AP']:.3f}  AP50 {row['AP50']:.3f}  goal met: {row['goal_met']}",
              flush=True)
    fig["recipes"] = table
    fig.update({k: table[0][k] for k in ("train_s", "train_command_s", "evaluate_s", "AP",
                                         "AP50", "AP75", "goal_met")})
    fig["train_steps"] = table[0]["steps"]
    fig["steps_per_s"] = round(table[0]["steps"] / table[0]["train_s"], 2)
    fig["goals"] = {"train_s_max": GOAL_SECONDS, "AP_min": GOAL_AP, "AP50_min": GOAL_AP50}
    fig["export_s"], out = od("export", "--model-dir", str(run), "--out", str(exp),
                              "--format", "saved_model", "--format", "frozen_graph")
    fig["export_checks"] = json.loads((exp / "export_check.json").read_text())["checks"]
    test_images = work / "test_images"
    test_images.mkdir(parents=True)
    for line in (RACCOON / "data" / "test_labels.csv").read_text().splitlines()[1:]:
        name = line.split(",")[0]
        shutil.copy(RACCOON / "images" / name, test_images / name)
    fig["detect_s"], out = od("detect", "--model", str(exp), "--images", str(test_images),
                              "--out", str(det), "--min-score", "0.5")
    fig["detect_boxes"] = int(re.match(r"(\d+) boxes", out.strip().splitlines()[-1]).group(1))

    # Baseline in the same run: Model Garden's default 256-filter FPN/head, same data and steps.
    base_s, _ = od("train", "--config", str(CONFIG), "--model-dir", str(work / "baseline"),
                   f"data.train={data}", f"train.steps={a.baseline_steps}",
                   "model.fpn_filters=256", "model.head_filters=256", "--no-progress")
    ours_s, _ = od("train", "--config", str(CONFIG), "--model-dir", str(work / "ours_short"),
                   f"data.train={data}", f"train.steps={a.baseline_steps}", "--no-progress")
    fig["baseline_256_filters_s"] = round(base_s, 1)
    fig["ours_same_steps_s"] = round(ours_s, 1)
    fig["speedup_vs_model_garden_default_head"] = round(base_s / ours_s, 2)
    fig["time_to_accuracy_vs_goal"] = round(fig["train_s"] / GOAL_SECONDS, 3)
    for k in ("convert_s", "train_s", "evaluate_s", "export_s", "detect_s"):
        fig[k] = round(fig[k], 1)
    fig["machine_after"] = f"load average at the end {os.getloadavg()[0]:.2f}"
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "raccoon.json").write_text(json.dumps(fig, indent=2))
    print(json.dumps(fig, indent=2))


if __name__ == "__main__":
    main()
