"""The ``od`` command line. It only parses arguments and calls library functions (the same ones
the notebooks call); every behaviour lives in the modules it imports."""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from od.errors import OdError  # noqa: E402


# ---- od data ---------------------------------------------------------------------------------
def _add_data_commands(sub) -> None:
    data = sub.add_parser("data", help="convert, validate and inspect annotated datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("convert", help="annotations → sharded TFRecords + label_map.pbtxt")
    c.add_argument("--format", default="voc", help="input format: voc, csv")
    c.add_argument("--annotations", action="append", required=True,
                   help="VOC folder or CSV file; repeat, or write SPLIT=PATH (train/val/test) "
                        "to fix the split of that source")
    c.add_argument("--images", help="images folder (default: beside the annotations)")
    c.add_argument("--out", required=True, help="output folder")
    c.add_argument("--label-map", help="use this label_map.pbtxt (unknown classes are errors)")
    c.add_argument("--split", default="0.8,0.1,0.1", help="train,val,test ratios")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--clip-boxes", action="store_true", help="clip boxes that leave the image")
    c.add_argument("--skip-invalid", action="store_true",
                   help="leave invalid images out (counted in summary.json) instead of failing")
    c.add_argument("--workers", type=int, default=None)
    c.set_defaults(func=_data_convert)


def _data_convert(a) -> None:
    from od.data.convert import convert
    s = convert(a.annotations, a.out, format=a.format, images=a.images, label_map=a.label_map,
                split=a.split, seed=a.seed, box_policy="clip" if a.clip_boxes else "error",
                skip_invalid=a.skip_invalid, workers=a.workers)
    j = s.to_json()
    print(json.dumps({k: j[k] for k in ("images", "boxes_per_class", "skipped_count",
                                        "skipped_by_reason")}, indent=2))
    print(f"wrote {a.out}/ (TFRecord shards, label_map.pbtxt, summary.json)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="od", description="Fine-tune, evaluate, export and run "
                                "TensorFlow object detectors on your own labelled images.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except OdError as e:
        print(f"od: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("od: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
