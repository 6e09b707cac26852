"""``od quickstart``: the whole job on a synthetic dataset that `od` generates itself.

Stages, each with the same library function a user calls on their own data:
generate shapes (JPEG + VOC XML) → ``od.data.convert`` → ``od.train.fine_tune`` (from scratch,
``configs/quickstart_shapes_128.yaml``) → ``od.evaluate.evaluate`` → ``od.export.export`` →
``od.detect.detect_folder``. Nothing is downloaded. About 6-8 minutes on a 2-core CPU.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from od.errors import OdError

CONFIG = "quickstart_shapes_128.yaml"


def config_path() -> Path:
    """The quickstart pipeline config, from ``od.config.configs_dir()``."""
    from od.config import configs_dir

    path = configs_dir() / CONFIG
    if not path.is_file():
        raise OdError(f"cannot find {path}; reinstall od.")
    return path


def run(workdir: str | os.PathLike = "od-quickstart", *, num_images: int = 400,
        overrides=(), progress: bool = True, log=print, overwrite: bool = False) -> dict:
    """Run every stage on generated data in ``workdir``; return paths and figures.

    ``workdir`` must be new, empty, or a previous quickstart's (else ``overwrite=True``); its
    stages write only their own subfolders (od.outputs).

    Returns:
      {"raw", "data", "run", "export", "detections": paths, "metrics": {AP, AP50, AP75},
      "seconds": per stage}.
    """
    from od import detect, evaluate, export, outputs, synthetic, train
    from od.data.convert import convert

    work = Path(workdir)
    outputs.prepare_out(work, command="quickstart", overwrite=overwrite)
    outputs.start_output(work, "quickstart")
    seconds, t = {}, time.time()

    def lap(name):
        nonlocal t
        seconds[name] = round(time.time() - t, 1)
        t = time.time()

    raw, data, run_dir = work / "shapes", work / "data", work / "run"
    exp, det = work / "export", work / "detections"
    if not (raw / "annotations").is_dir():
        synthetic.generate(raw, num_images, seed=0)
    log(f"[1/6] generated {num_images} images + VOC XML in {raw}")
    lap("generate")
    summary = convert(raw / "annotations", data, format="voc", images=raw / "images",
                      split=(0.8, 0.1, 0.1), seed=0, overwrite=overwrite)
    log(f"[2/6] converted to TFRecords in {data}: {summary.images}")
    lap("convert")
    result = train.fine_tune(config_path(), run_dir,
                             overrides=[f"data.train={data}", *overrides], progress=progress)
    log(f"[3/6] trained {result.step} steps in {result.seconds:.0f} s → checkpoints in {run_dir}")
    lap("train")
    report = evaluate.evaluate(run_dir, str(data / "test-*.tfrecord"), progress=progress)
    coco = report["coco"]
    log(f"[4/6] test AP {coco['AP']:.3f}  AP50 {coco['AP50']:.3f}  AP75 {coco['AP75']:.3f} → "
        f"{run_dir / 'eval' / 'metrics.json'}")
    lap("evaluate")
    export.export(run_dir, exp, overwrite=overwrite)
    log(f"[5/6] exported SavedModel → {exp / 'saved_model'}")
    lap("export")
    new = work / "new_photos"
    if not (new / "images").is_dir():
        synthetic.generate(new, 8, seed=12345)  # images the model has never seen
    detect.detect_folder(exp, new / "images", det, min_score=0.5, progress=progress,
                         overwrite=overwrite)
    outputs.write_marker(work, "quickstart", ["shapes", "data", "run", "export", "new_photos",
                                              "detections"])
    log(f"[6/6] detections drawn in {det}/ and listed in {det / 'detections.json'}")
    lap("detect")
    return {"raw": str(raw), "data": str(data), "run": str(run_dir), "export": str(exp),
            "detections": str(det), "seconds": seconds,
            "metrics": {k: coco[k] for k in ("AP", "AP50", "AP75")}}
