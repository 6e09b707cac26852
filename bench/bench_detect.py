"""Benchmark: ``od detect`` on a folder against the OD API tutorial's per-image loop.

In one run, over the same SavedModel and the same folder of ``--n`` images (the 200 raccoon
photos of ../shared, 133 different sizes; repeated under new names when ``--n`` is larger):

- baseline, the TF Object Detection API tutorial's loop: for each file, PIL open → ``np.array``
  → the SavedModel's ``serving_default`` signature on a ``[1, H, W, 3]`` uint8 tensor → boxes
  with score >= ``--min-score`` drawn with ``PIL.ImageDraw`` → saved as JPEG (quality 92, as od);
- ``od.detect_folder`` (what ``od detect`` runs): images of one size batched (``--batch-size``);
  with ``--workers`` threads (default ``od.detect.auto_workers()``: none on 2 cores), decoding
  ahead of the model and drawing/encoding/writing in the background;
- ``od.detect_folder`` with ``batch_size=1, workers=0``: one image after another, as before
  batching; its ``detections.json`` must equal the batched one.

Each timing covers the whole folder including loading the SavedModel (TensorFlow already
imported); the three are interleaved for ``--repeats`` rounds and each one's best round is kept
(a shared CPU makes single rounds noisy). ``--sizes camera`` instead resizes every photo to one
of 640x480 / 480x640 first, as a camera's folder has (batching then applies).

Without ``--export`` a model is made first (not timed): the raccoon data converted, the
default RetinaNet-MobileNetV2-FPN 256 px config (configs/retinanet_mobilenetv2_fpn_256.yaml)
trained 2 steps from the ImageNet backbone, exported. Only speed is measured.
Prints the figures, machine and load, and writes bench/out/detect.json.

Usage: python bench/bench_detect.py [--export EXPORT] [--n 200] [--sizes raccoon|camera]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
RACCOON = ROOT.parent / "shared" / "data" / "raccoon"


def make_export(work: Path) -> Path:
    from od import export, train
    from od.data.convert import convert

    convert(RACCOON / "annotations", work / "data", format="voc", images=RACCOON / "images",
            split=(0.8, 0.1, 0.1), workers=1)
    train.fine_tune(ROOT / "configs" / "retinanet_mobilenetv2_fpn_256.yaml", work / "run",
                    overrides=[f"data.train={work / 'data'}", "model.input_size=256",
                               "model.anchor_fit=off", "train.batch_size=2", "train.steps=2",
                               "train.steps_per_loop=1", "train.checkpoint_every=2",
                               "train.warmup_steps=1", "train.fine_tune_checkpoint="
                               f"{ROOT.parent / 'shared' / 'weights' / 'mobilenet_v2_1.0_imagenet'}"],
                    progress=False)
    export.export(work / "run", work / "export")
    return work / "export"


def make_folder(folder: Path, n: int, sizes: str) -> Path:
    """``n`` images in ``folder``: the raccoon photos (links), repeated; or resized to a camera's
    two sizes."""
    from PIL import Image

    src = sorted((RACCOON / "images").glob("*.jpg"))
    folder.mkdir(parents=True)
    for k in range(n):
        p = src[k % len(src)]
        name = folder / (p.name if k < len(src) else f"{p.stem}-{k // len(src)}.jpg")
        if sizes == "camera":
            im = Image.open(p).convert("RGB")
            im.resize((640, 480) if im.width >= im.height else (480, 640)).save(name, quality=90)
        else:
            name.symlink_to(p)
    return folder


def tutorial_loop(export: Path, files: list[Path], out: Path, min_score: float) -> None:
    """The OD API tutorial's loop (module doc), with the label map's names on the boxes."""
    import numpy as np
    import tensorflow as tf
    from PIL import Image, ImageDraw

    from od import label_map

    names = {i.id: i.name for i in label_map.read(export / "label_map.pbtxt").items}
    detect_fn = tf.saved_model.load(str(export / "saved_model")).signatures["serving_default"]
    out.mkdir(parents=True)
    for path in files:
        image_np = np.array(Image.open(path).convert("RGB"))
        input_tensor = tf.convert_to_tensor(image_np)[tf.newaxis, ...]
        d = detect_fn(input_tensor)
        n = int(d["num_detections"][0])
        boxes = d["detection_boxes"][0, :n].numpy()
        scores = d["detection_scores"][0, :n].numpy()
        classes = d["detection_classes"][0, :n].numpy().astype(int)
        image = Image.fromarray(image_np)
        draw = ImageDraw.Draw(image)
        h, w = image_np.shape[:2]
        for (y0, x0, y1, x1), s, c in zip(boxes, scores, classes):
            if s >= min_score:
                draw.rectangle([x0 * w, y0 * h, x1 * w, y1 * h], outline=(0, 200, 255), width=2)
                draw.text((x0 * w + 2, y0 * h + 2), f"{names.get(c, c)}: {round(s * 100)}%",
                          fill=(0, 200, 255))
        image.save(out / f"{path.stem}.jpg", quality=92)


def machine() -> dict:
    from od.zoo_select import cpu_model
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                          time.gmtime())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, help="export folder (default: make one, not timed)")
    ap.add_argument("--n", type=int, default=200, help="images in the folder")
    ap.add_argument("--sizes", choices=("raccoon", "camera"), default="raccoon")
    ap.add_argument("--min-score", type=float, default=0.05,
                    help="boxes drawn/kept (low: a briefly trained model scores low)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--workers", type=int, default=None,
                    help="decode/write threads of od detect (default: od.detect.auto_workers())")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workdir", type=Path, help="keep the work here (default: a temp folder)")
    a = ap.parse_args()

    import tensorflow as tf  # noqa: F401 - imported before any timing

    from od.detect import auto_workers, detect_folder

    work = a.workdir or Path(tempfile.mkdtemp(prefix="bench_detect-"))
    try:
        export = a.export or make_export(work / "model")
        folder = make_folder(work / f"images-{a.sizes}-{a.n}", a.n, a.sizes)
        files = sorted(folder.glob("*.jpg"))
        runs = {"tutorial loop": lambda o: tutorial_loop(export, files, o, a.min_score),
                "od detect": lambda o: detect_folder(export, folder, o, min_score=a.min_score,
                                                     progress=False, batch_size=a.batch_size,
                                                     workers=a.workers),
                "od detect, batch 1": lambda o: detect_folder(
                    export, folder, o, min_score=a.min_score, progress=False, batch_size=1,
                    workers=0)}
        best: dict[str, float] = {}
        for r in range(a.repeats):
            for name, fn in runs.items():
                out = work / f"out-{r}-{name.replace(' ', '_').replace(',', '')}"
                t = time.perf_counter()
                fn(out)
                best[name] = min(best.get(name, 1e9), time.perf_counter() - t)
                print(f"round {r + 1}: {name:20s} {len(files) / (time.perf_counter() - t):6.2f} "
                      "images/s", flush=True)
        last = a.repeats - 1
        same = (json.loads((work / f"out-{last}-od_detect" / "detections.json").read_text()) ==
                json.loads((work / f"out-{last}-od_detect_batch_1" / "detections.json")
                           .read_text()))
        rate = {k: round(len(files) / v, 2) for k, v in best.items()}
        report = {**machine(), "load_average": [round(x, 2) for x in os.getloadavg()],
                  "images": len(files), "sizes": a.sizes,
                  "distinct_sizes": len({__import__("PIL.Image").Image.open(f).size
                                         for f in files}),
                  "batch_size": a.batch_size,
                  "workers": auto_workers() if a.workers is None else a.workers,
                  "images_per_s": rate,
                  "ratio": round(rate["od detect"] / rate["tutorial loop"], 2),
                  "ratio_batch_1": round(rate["od detect, batch 1"] / rate["tutorial loop"], 2),
                  "batched_equals_unbatched": same}
        print(json.dumps(report, indent=2))
        (ROOT / "bench" / "out").mkdir(exist_ok=True)
        (ROOT / "bench" / "out" / f"detect-{a.sizes}.json").write_text(
            json.dumps(report, indent=2) + "\n")
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
