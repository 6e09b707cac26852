"""``od zoo list | select | download | benchmark``: their arguments and the library calls behind
them (od.zoo_select, od.download, od.zoo_bench). Part of the command line (od.cli)."""
from __future__ import annotations

import os
import sys


# ---- od zoo ----------------------------------------------------------------------------------
def add_zoo_commands(sub) -> None:
    zoo = sub.add_parser("zoo", help="pretrained checkpoints: list, select, download, benchmark")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True)
    c = zsub.add_parser("list", help="the checkpoint table with published AP and measured speed")
    c.add_argument("--speeds", help="speed JSON to show (default: $OD_ZOO_SPEEDS, then shipped)")
    c.set_defaults(func=_zoo_list)
    c = zsub.add_parser("select", help="best AP within a latency bound, or fastest above an AP")
    c.add_argument("--max-latency-ms", type=float, help="ms per image on the measured machine")
    c.add_argument("--min-ap", type=float, help="published COCO box AP, percent")
    c.add_argument("--batch", type=int, default=1, help="batch size of the latency figure")
    c.add_argument("--speeds", help="speed JSON to use (default: $OD_ZOO_SPEEDS, then shipped)")
    c.add_argument("--architecture", choices=["retinanet", "faster_rcnn"],
                   help="only this detector architecture (default: both compete)")
    c.add_argument("--coco-checkpoint-only", action="store_true",
                   help="only entries whose AP is their downloadable COCO checkpoint's (no "
                        "Faster R-CNN: Model Garden publishes no COCO checkpoint for it)")
    c.set_defaults(func=_zoo_select)
    c = zsub.add_parser("download", help="download, verify and unpack a checkpoint into the cache")
    c.add_argument("name", help="zoo name, http(s)/gs/file URL, or local tarball/folder")
    c.add_argument("--cache-dir", help="cache folder (default: $OD_CACHE_DIR or ~/.cache/od)")
    c.add_argument("--sha256", help="expected SHA-256 of the archive (hex)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=_zoo_download)
    c = zsub.add_parser("benchmark", help="measure detector latency/throughput on this machine")
    c.add_argument("names", nargs="*", help="zoo detector names (default: all detectors)")
    c.add_argument("--out", help="speed JSON to update (default: $OD_ZOO_SPEEDS, else "
                                 "zoo_speeds.json in the od cache; never the package's file)")
    c.add_argument("--repeats", type=int, help="timed calls per batch size (default: adaptive)")
    c.add_argument("--input-size", type=int, help="override every input size (pixels)")
    c.set_defaults(func=_zoo_benchmark)


def _speeds(path):
    """The speed records of ``--speeds PATH`` (a missing file is an error here, not 'no
    figures'), or the default files when it is not given."""
    from od import zoo_select
    from od.errors import ZooError
    if path is None:
        return zoo_select.load_speeds()
    if not os.path.isfile(path):
        raise ZooError(f"--speeds {path}: no such file; give a speed JSON written by `od zoo "
                       f"benchmark`, or leave --speeds out to use {zoo_select.SPEEDS_ENV} and the "
                       f"shipped figures")
    return zoo_select.load_speeds([path])


def _zoo_list(a) -> None:
    from od import zoo_select
    print(zoo_select.list_table(speeds=_speeds(a.speeds)))


def _zoo_select(a) -> None:
    from od import zoo, zoo_select
    speeds = _speeds(a.speeds)
    bounds = dict(max_latency_ms=a.max_latency_ms, min_ap=a.min_ap, batch=a.batch, speeds=speeds,
                  architecture=a.architecture, coco_checkpoint_only=a.coco_checkpoint_only)
    e = zoo_select.select(zoo.ZOO, **bounds)
    print(e.name)
    print(zoo_select.describe(e, speeds, a.batch), file=sys.stderr)
    fits = zoo_select.rank(zoo.ZOO, **bounds)
    print("candidates that fit, best first:\n" + zoo_select.ranking(fits, speeds, a.batch),
          file=sys.stderr)


def _zoo_download(a) -> None:
    from od.checkpoints import prefix_in
    from od.download import download
    from od.outputs import prepare_folder
    prepare_folder(a.cache_dir, "--cache-dir")
    path = download(a.name, cache_dir=a.cache_dir, sha256=a.sha256, progress=not a.no_progress)
    print(path)
    print(f"checkpoint: {prefix_in(path)}", file=sys.stderr)


def _zoo_benchmark(a) -> None:
    from od import zoo_bench
    from od.outputs import prepare_file
    prepare_file(a.out)
    records = zoo_bench.benchmark(a.names or None, repeats=a.repeats, input_size=a.input_size)
    print(f"wrote {zoo_bench.write_speeds(records, a.out)}")
