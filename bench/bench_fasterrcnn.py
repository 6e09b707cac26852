"""Inference speed of Faster R-CNN next to RetinaNet on this machine (random weights).

Each config in ``configs/`` is built as ``od train`` builds it (COCO's 91 classes, its input size)
and wrapped in the serving module ``od export`` saves (resize, network, NMS, boxes normalised);
after a warm-up call the median of ``--repeats`` calls on one image gives ms/image at batch 1.
Random weights leave few boxes above the score threshold, so NMS time is a lower bound. The load
average is printed with the figures: on a shared machine they are upper bounds.

    PYTHONPATH=. python bench/bench_fasterrcnn.py [--repeats 5] [--configs a.yaml b.yaml]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DEFAULT = ("fasterrcnn_mobilenetv2_fpn_256.yaml", "retinanet_mobilenetv2_fpn_256.yaml",
           "fasterrcnn_resnet50_fpn_coco.yaml", "retinanet_resnet50_fpn_coco.yaml")


def measure(config_file: str, repeats: int) -> dict:
    import numpy as np
    import tensorflow as tf

    from od import config, model as model_lib

    cfg = config.load(CONFIGS / config_file, overrides=["model.num_classes=91"])
    module = model_lib.detection_module(cfg, model_lib.build_model(cfg), batch_size=1)
    serve = tf.function(module.serve)
    size = cfg.model.input_size
    image = tf.constant(np.random.default_rng(0).integers(0, 255, (1, size, size, 3), np.uint8))
    serve(image)  # trace + warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        serve(image)["num_detections"].numpy()
        times.append(time.perf_counter() - start)
    return {"config": config_file, "architecture": cfg.model.architecture,
            "input_size": size, "ms_per_image": round(1000 * statistics.median(times), 1),
            "repeats": repeats, "load_average": round(os.getloadavg()[0], 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--configs", nargs="+", default=list(DEFAULT))
    a = p.parse_args()
    for name in a.configs:
        print(json.dumps(measure(name, a.repeats)), flush=True)


if __name__ == "__main__":
    main()
