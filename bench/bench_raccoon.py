"""Benchmark: the main job on the real raccoon data, as the README's command sequence.

Runs `od data convert` (the 160/40 CSV split), `od train` (configs/retinanet_mobilenetv2_fpn_256.yaml
from the ImageNet MobileNetV2 backbone in ../shared/weights), `od evaluate` on the 40 test images,
`od export` and `od detect`, timing each stage; then, as the baseline measured in the same run,
trains Model Garden's default head width (FPN and head 256 filters) for a few steps to compare
throughput. Prints the figures and the ratios; writes bench/out/raccoon.json.

Usage: python bench/bench_raccoon.py [--steps 600] [--baseline-steps 30] [--work bench/out/raccoon]
"""
from __future__ import annotations

import argparse
import json
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


def od(*args: str) -> tuple[float, str]:
    t = time.time()
    proc = subprocess.run([sys.executable, "-m", "od.cli", *args], cwd=ROOT, text=True,
                          capture_output=True)
    if proc.returncode:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"od {' '.join(args)} failed ({proc.returncode})")
    return time.time() - t, proc.stdout


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--baseline-steps", type=int, default=30)
    ap.add_argument("--work", default=str(ROOT / "bench" / "out" / "raccoon"))
    a = ap.parse_args()
    if not RACCOON.is_dir():
        raise SystemExit(f"{RACCOON} not found: this benchmark needs ../shared")
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    data, run, exp, det = work / "data", work / "run", work / "export", work / "detections"
    fig = {"machine": f"{cpu_name()}, {__import__('os').cpu_count()} cores"}

    fig["convert_s"], _ = od("data", "convert", "--format", "csv",
                             "--annotations", f"train={RACCOON}/data/train_labels.csv",
                             "--annotations", f"test={RACCOON}/data/test_labels.csv",
                             "--images", str(RACCOON / "images"), "--out", str(data))
    fig["train_s"], _ = od("train", "--config", str(CONFIG), "--model-dir", str(run),
                           f"data.train={data}", f"train.steps={a.steps}", "--no-progress")
    fig["train_steps"] = a.steps
    fig["steps_per_s"] = round(a.steps / fig["train_s"], 2)
    fig["evaluate_s"], out = od("evaluate", "--model", str(run), "--data",
                                f"{data}/test-*.tfrecord")
    coco = json.loads((run / "eval" / "metrics.json").read_text())["coco"]
    fig.update({k: round(coco[k], 3) for k in ("AP", "AP50", "AP75")})
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
    fig["ours_128_filters_same_steps_s"] = round(ours_s, 1)
    fig["speedup_vs_model_garden_default_head"] = round(base_s / ours_s, 2)
    fig["AP50_vs_target_0.90"] = round(fig["AP50"] / 0.90, 3)
    for k in ("convert_s", "train_s", "evaluate_s", "export_s", "detect_s"):
        fig[k] = round(fig[k], 1)
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "raccoon.json").write_text(json.dumps(fig, indent=2))
    print(json.dumps(fig, indent=2))


if __name__ == "__main__":
    main()
