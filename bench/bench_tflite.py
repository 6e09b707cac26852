"""Benchmark: the TFLite formats of a trained run against its SavedModel (the baseline, same run).

Exports RUN with ``od export --format tflite tflite_fp16 tflite_int8`` (timed; skipped with
--skip-export when OUT exists), then, on the test images of the run's data folder: per format the
file size, COCO AP/AP50 (od.metrics, pycocotools), the worst agreement with the SavedModel's
detections over the images (od.tflite.compare at min score 0.3 and 0.5), and the median CPU
latency over 20 runs on one image, both of the bare interpreter ``invoke`` (od.tflite.latency_ms)
and of a whole ``Detector`` call (decode-free: preprocessing + model + box mapping). Prints the
figures and writes bench/out/tflite.json.

Usage: python bench/bench_tflite.py [--run bench/out/raccoon/run] [--out /tmp/tflite_raccoon]
                                    [--skip-export] [--runs 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from od import atomic, metrics, tflite
    from od.config import load
    from od.experiment import data_folder
    from od.data import tfrecord
    from od.detect import Detector
    from od.evaluate import decode_image, run_on_records
    from od.export import export
    from od.label_map import read

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", default=str(ROOT / "bench" / "out" / "raccoon" / "run"))
    ap.add_argument("--out", default="/tmp/tflite_raccoon")
    ap.add_argument("--skip-export", action="store_true")
    ap.add_argument("--runs", type=int, default=20)
    a = ap.parse_args()
    out = Path(a.out)
    result = {"run": a.run, "out": a.out}
    if not (a.skip_export and out.is_dir()):
        t = time.time()
        export(a.run, out, formats=("saved_model", *tflite.FILES))
        result["export_s"] = round(time.time() - t, 1)
    cfg = load(Path(a.run) / "pipeline.yaml")
    pattern = str(Path(data_folder(cfg)) / "test-*.tfrecord")
    label_map = read(out / "label_map.pbtxt")
    sample = decode_image(tfrecord.read(pattern)[0].encoded)
    formats = {}
    for fmt in ("saved_model", *tflite.FILES):
        detector = Detector(out, format=fmt)
        gts, dets = run_on_records(detector, pattern)
        coco = metrics.coco_metrics(gts, dets, label_map)
        times = []
        for _ in range(a.runs + 1):
            t = time.perf_counter()
            detector(sample)
            times.append((time.perf_counter() - t) * 1000)
        row = {"AP": round(coco["AP"], 3), "AP50": round(coco["AP50"], 3),
               "detector_ms": round(statistics.median(times[1:]), 1)}
        if fmt != "saved_model":
            path = out / tflite.FILES[fmt]
            row["bytes"] = path.stat().st_size
            row["invoke_ms"] = round(tflite.latency_ms(path, sample, a.runs), 1)
            for min_score in (0.3, 0.5):
                cs = [tflite.compare(fmt, formats["saved_model"]["dets"][k], dets[k], min_score,
                                     cfg.model.nms_iou_threshold) for k in dets]
                row[f"at_{min_score}"] = {
                    "compared": sum(sum(c["num_above_min_score"]) for c in cs),
                    "max_score_diff": round(max(c["max_score_diff"] for c in cs), 4),
                    "min_matched_iou": round(min(c["min_matched_iou"] for c in cs), 4),
                    "all_ok": all(c["ok"] for c in cs)}
        formats[fmt] = {**row, "dets": dets}
        print(fmt, json.dumps(row))
    result["formats"] = {k: {kk: vv for kk, vv in v.items() if kk != "dets"}
                         for k, v in formats.items()}
    atomic.write_json(ROOT / "bench" / "out" / "tflite.json", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
