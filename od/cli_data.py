"""``od data convert`` and ``od data inspect``: their arguments and the library calls behind them
(od.data.convert.convert, od.data.inspect.inspect). Part of the command line (od.cli)."""
from __future__ import annotations

import json
import sys

from od.errors import OdError

OVERWRITE_HELP = ("write into an existing non-empty folder that is not a previous output of "
                  "this command (only the files od writes are replaced)")


# ---- od data ---------------------------------------------------------------------------------
def add_data_commands(sub) -> None:
    data = sub.add_parser("data", help="convert, validate and inspect annotated datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("convert", help="annotations in any format → TFRecords (or VOC, COCO, "
                        "CSV, AutoML CSV) + label_map.pbtxt + summary.json")
    c.add_argument("--format", default="voc", choices=["voc", "coco", "csv", "automl", "tfrecord"],
                   help="input format (default voc)")
    c.add_argument("--to", default="tfrecord", choices=["tfrecord", "voc", "coco", "csv", "automl"],
                   help="output format (default tfrecord)")
    c.add_argument("--annotations", action="append", required=True,
                   help="VOC folder/devkit, COCO JSON or Roboflow folder, CSV file, TFRecord "
                        "file/folder; repeat, or write SPLIT=PATH (train/val/test) to fix the "
                        "split of that source")
    c.add_argument("--images", help="images folder (default: beside the annotations)")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--label-map", help="use this label_map.pbtxt (unknown classes are errors)")
    c.add_argument("--split", default="0.8,0.1,0.1",
                   help="train,val,test ratios for images the source gives no split")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--clip-boxes", action="store_true",
                   help="clip boxes that leave the image (default: report them as errors)")
    c.add_argument("--skip-invalid", action="store_true",
                   help="leave invalid images out (counted in summary.json) instead of failing")
    c.add_argument("--dedupe", action="store_true",
                   help="remove images whose decoded pixels equal another's (reported)")
    c.add_argument("--balance", choices=["undersample"],
                   help="undersample images down to the smallest class")
    c.add_argument("--verify", choices=["fast", "full"], default="fast",
                   help="full: decode every pixel of every image to find corrupt data")
    c.add_argument("--shard-mb", type=float, default=100.0, help="target MB per TFRecord shard")
    c.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    c.add_argument("--exif", choices=["auto", "stored", "displayed"], default="auto",
                   help="boxes of an EXIF-rotated image are drawn on its stored pixels or on the "
                        "turned picture; auto: decided by the annotated size, square images as "
                        "stored (see od.data.guards)")
    c.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    c.set_defaults(func=_data_convert)
    i = dsub.add_parser("inspect", help="summary.json and PNG plots of a dataset")
    i.add_argument("data", help="a converted TFRecord folder, or an annotation source with "
                                "--format")
    i.add_argument("--format", choices=["voc", "coco", "csv", "automl", "tfrecord"],
                   help="format of DATA when it is not a TFRecord folder")
    i.add_argument("--images", help="images folder for an annotation source")
    i.add_argument("--out", help="output folder (default DATA/inspect for a folder od data convert wrote, else DATA_inspect beside DATA)")
    i.add_argument("--samples", type=int, default=16, help="images in the sample grid")
    i.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    i.add_argument("--config", action="append", default=[],
                   help="pipeline config YAML: also report anchor coverage (as written and "
                        "fitted) and draw anchors.png; repeat to layer files")
    i.set_defaults(func=_data_inspect)


def _data_convert(a) -> None:
    import math
    from od.data.convert import convert
    if not math.isfinite(a.shard_mb) or a.shard_mb <= 0:
        raise OdError(f"--shard-mb {a.shard_mb:g}: give a size in MB greater than 0, e.g. "
                      "--shard-mb 100.")
    s = convert(a.annotations, a.out, format=a.format, images=a.images, label_map=a.label_map,
                split=a.split, seed=a.seed, box_policy="clip" if a.clip_boxes else "error",
                skip_invalid=a.skip_invalid, workers=a.workers, to=a.to, dedupe=a.dedupe,
                balance=a.balance, verify=a.verify, shard_bytes=int(a.shard_mb * 1024 * 1024),
                progress=sys.stderr.isatty(), exif=a.exif, overwrite=a.overwrite)
    j = s.to_json()
    print(json.dumps({k: j[k] for k in ("images", "boxes_per_class", "negative_images",
                                        "skipped_count", "skipped_by_reason", "removed_count",
                                        "fixes")}, indent=2))
    dup = j["duplicates"]
    if dup.get("duplicate_images"):
        across = dup.get("across_splits", 0)
        print(f"{dup['duplicate_images']} duplicate image(s) by {dup['method']} "
              f"({dup['removed']} removed); see summary.json" + (
                  f"; {across} of them in val/test with a copy in an earlier split, so their "
                  "scores count pictures the model trained on: --dedupe keeps one of each"
                  if across else "" if dup["removed"] else "; --dedupe keeps one of each"))
    for note in j.get("notes", []):
        print(note)
    print(f"wrote {a.out}/ ({a.to}, label_map.pbtxt, summary.json)")


def _data_inspect(a) -> None:
    from od.data.inspect import inspect
    s = inspect(a.data, a.out, format=a.format, images=a.images, samples=a.samples,
                overwrite=a.overwrite, config=a.config or None)
    print(json.dumps({k: v for k, v in s.items() if k not in ("plots", "anchors")}, indent=2))
    if "anchors" in s:
        _print_anchor_report(s["anchors"])
    print("plots: " + ", ".join(s["plots"]))


def _print_anchor_report(r: dict) -> None:
    if "error" in r:
        print(f"anchor coverage not measured: {r['error']}")
        return
    w, f = r["as_written"], r["fitted"]
    print(f"anchor coverage as written: {w['recall']:.3f} (input {w['input_size']} px, anchor "
          f"sizes {w['anchor_sizes_px'][0]:g}..{w['anchor_sizes_px'][-1]:g} px)")
    print(r["fit"])
    print("per class (fitted): " + ", ".join(f"{c} {v:.2f}" for c, v in f["per_class"].items()))
    if r.get("suggestion"):
        print(f"overrides that reach the target: {r['suggestion']}")
    if r.get("max_detections_note"):
        print(r["max_detections_note"])
