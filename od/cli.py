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
    c.set_defaults(func=_data_convert)
    i = dsub.add_parser("inspect", help="summary.json and PNG plots of a dataset")
    i.add_argument("data", help="a converted TFRecord folder, or an annotation source with "
                                "--format")
    i.add_argument("--format", choices=["voc", "coco", "csv", "automl", "tfrecord"],
                   help="format of DATA when it is not a TFRecord folder")
    i.add_argument("--images", help="images folder for an annotation source")
    i.add_argument("--out", help="output folder (default DATA/inspect)")
    i.add_argument("--samples", type=int, default=16, help="images in the sample grid")
    i.set_defaults(func=_data_inspect)


def _data_convert(a) -> None:
    from od.data.convert import convert
    s = convert(a.annotations, a.out, format=a.format, images=a.images, label_map=a.label_map,
                split=a.split, seed=a.seed, box_policy="clip" if a.clip_boxes else "error",
                skip_invalid=a.skip_invalid, workers=a.workers, to=a.to, dedupe=a.dedupe,
                balance=a.balance, verify=a.verify, shard_bytes=int(a.shard_mb * 1024 * 1024),
                progress=sys.stderr.isatty())
    j = s.to_json()
    print(json.dumps({k: j[k] for k in ("images", "boxes_per_class", "negative_images",
                                        "skipped_count", "skipped_by_reason", "removed_count",
                                        "fixes")}, indent=2))
    dup = j["duplicates"]
    if dup.get("duplicate_images"):
        print(f"{dup['duplicate_images']} duplicate image(s) by {dup['method']} "
              f"({dup['removed']} removed); see summary.json")
    print(f"wrote {a.out}/ ({a.to}, label_map.pbtxt, summary.json)")


def _data_inspect(a) -> None:
    from od.data.inspect import inspect
    s = inspect(a.data, a.out, format=a.format, images=a.images, samples=a.samples)
    print(json.dumps({k: v for k, v in s.items() if k != "plots"}, indent=2))
    print("plots: " + ", ".join(s["plots"]))


# ---- od train / evaluate / export / detect / quickstart / config ----------------------------
def _add_model_commands(sub) -> None:
    t = sub.add_parser("train", help="fine-tune a detector (resumes if RUN has checkpoints)")
    t.add_argument("--config", action="append", default=[],
                   help="pipeline config YAML; repeat to layer more files on the first")
    t.add_argument("--model-dir", required=True, help="run folder (checkpoints, logs)")
    t.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.batch_size=8")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="COCO metrics of a run on TFRecord shards")
    e.add_argument("--model-dir", "--model", dest="model_dir", required=True,
                   help="run folder of `od train`")
    e.add_argument("--data", required=True, help="shard glob, e.g. 'DATA/test*.tfrecord'")
    e.add_argument("--out", help="output folder (default RUN/eval)")
    e.add_argument("--max-images", type=int, default=0)
    e.set_defaults(func=_evaluate)

    x = sub.add_parser("export", help="SavedModel (+ frozen graph, TFLite) from a run, checked")
    x.add_argument("--model-dir", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--format", "--formats", action="extend", nargs="+", dest="formats",
                   default=None, help="saved_model (always), frozen_graph, tflite, tflite_fp16, "
                   "tflite_int8")
    x.add_argument("--calibration-images", type=int, default=100,
                   help="training/val images that calibrate tflite_int8")
    x.set_defaults(func=_export)

    d = sub.add_parser("detect", help="detect objects in a folder of images")
    d.add_argument("--model", required=True, help="export folder of `od export`")
    d.add_argument("--images", required=True, help="folder of images (or one image)")
    d.add_argument("--out", required=True)
    d.add_argument("--min-score", type=float, default=0.5)
    d.add_argument("--voc", action="store_true", help="also write VOC XML pre-labels")
    d.add_argument("--crops", action="store_true", help="also write one crop per box")
    d.add_argument("--format", default="saved_model",
                   help="saved_model, or tflite / tflite_fp16 / tflite_int8 of the export folder")
    d.set_defaults(func=_detect)

    q = sub.add_parser("quickstart", help="run every stage on a generated dataset (no download)")
    q.add_argument("--workdir", default="od-quickstart")
    q.add_argument("--images", type=int, default=400, help="number of generated images")
    q.add_argument("overrides", nargs="*", help="pipeline overrides, e.g. train.steps=100")
    q.set_defaults(func=_quickstart)

    c = sub.add_parser("config", help="show the resolved pipeline config")
    csub = c.add_subparsers(dest="config_command", required=True)
    cs = csub.add_parser("show", help="print the layered config as YAML")
    cs.add_argument("--config", action="append", default=[])
    cs.add_argument("overrides", nargs="*")
    cs.set_defaults(func=_config_show)


def _layers(paths):
    return (paths[0] if paths else None), paths[1:]


def _train(a) -> None:
    from od.train import fine_tune
    base, extra = _layers(a.config)
    r = fine_tune(base, a.model_dir, extra=extra, overrides=a.overrides,
                  progress=not a.no_progress)
    print(f"trained to step {r.step} in {r.seconds:.0f} s; checkpoints and pipeline.yaml in "
          f"{r.model_dir}; TensorBoard: tensorboard --logdir {r.model_dir}")


def _evaluate(a) -> None:
    from od.evaluate import evaluate
    r = evaluate(a.model_dir, a.data, a.out, max_images=a.max_images)
    c = r["coco"]
    print(json.dumps({k: c[k] for k in ("AP", "AP50", "AP75")}, indent=2))
    print(f"wrote {r['plots'].get('metrics', '')} and plots")


def _export(a) -> None:
    from od.export import export
    r = export(a.model_dir, a.out, formats=tuple(a.formats or ("saved_model",)),
               calibration_images=a.calibration_images)
    for c in r["checks"]:
        box = (f"max box diff {c['max_box_diff']:.2g}" if "max_box_diff" in c else
               f"min matched IoU {c['min_matched_iou']:.3f}")
        print(f"{c['format']}: {box}, max score diff {c['max_score_diff']:.2g} (ok)")
    print(f"wrote {a.out}/")


def _detect(a) -> None:
    from od.detect import detect_folder
    r = detect_folder(a.model, a.images, a.out, min_score=a.min_score, voc=a.voc, crops=a.crops,
                      format=a.format)
    print(f"{sum(len(x['detections']) for x in r)} boxes in {len(r)} images → {a.out}/")


def _quickstart(a) -> None:
    from od.quickstart import run
    r = run(a.workdir, num_images=a.images, overrides=a.overrides)
    print(json.dumps(r, indent=2))


def _config_show(a) -> None:
    import yaml

    from od import config
    base, extra = _layers(a.config)
    print(yaml.safe_dump(config.to_dict(config.load(base, extra, a.overrides)), sort_keys=False))


# ---- od zoo ----------------------------------------------------------------------------------
def _add_zoo_commands(sub) -> None:
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
    c.set_defaults(func=_zoo_select)
    c = zsub.add_parser("download", help="download, verify and unpack a checkpoint into the cache")
    c.add_argument("name", help="zoo name, http(s)/gs/file URL, or local tarball/folder")
    c.add_argument("--cache-dir", help="cache folder (default: $OD_CACHE_DIR or ~/.cache/od)")
    c.add_argument("--sha256", help="expected SHA-256 of the archive (hex)")
    c.add_argument("--no-progress", action="store_true", help="no progress bar")
    c.set_defaults(func=_zoo_download)
    c = zsub.add_parser("benchmark", help="measure detector latency/throughput on this machine")
    c.add_argument("names", nargs="*", help="zoo detector names (default: all detectors)")
    c.add_argument("--out", help="speed JSON to update (default: $OD_ZOO_SPEEDS, else the "
                                 "package's zoo_speeds.json)")
    c.add_argument("--repeats", type=int, help="timed calls per batch size (default: adaptive)")
    c.add_argument("--input-size", type=int, help="override every input size (pixels)")
    c.set_defaults(func=_zoo_benchmark)


def _zoo_list(a) -> None:
    from od import zoo
    print(zoo.list_table(speeds=zoo.load_speeds([a.speeds]) if a.speeds else None))


def _zoo_select(a) -> None:
    from od import zoo
    e = zoo.select(zoo.ZOO, max_latency_ms=a.max_latency_ms, min_ap=a.min_ap, batch=a.batch,
                   speeds=zoo.load_speeds([a.speeds]) if a.speeds else None)
    print(e.name)


def _zoo_download(a) -> None:
    from od.download import checkpoint_path, download
    path = download(a.name, cache_dir=a.cache_dir, sha256=a.sha256, progress=not a.no_progress)
    print(path)
    print(f"checkpoint: {checkpoint_path(path)}", file=sys.stderr)


def _zoo_benchmark(a) -> None:
    from od import zoo_bench
    records = zoo_bench.benchmark(a.names or None, repeats=a.repeats, input_size=a.input_size)
    print(f"wrote {zoo_bench.write_speeds(records, a.out)}")


# ---- od serve ---------------------------------------------------------------------------------
def _add_serve_command(sub) -> None:
    s = sub.add_parser("serve", help="serve an export over TF Serving's REST API (dynamic "
                       "batching)")
    s.add_argument("--model", required=True, help="export folder of `od export`")
    s.add_argument("--name", default="default", help="model name in the URL /v1/models/NAME")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    s.add_argument("--port", type=int, default=8501, help="port (0: any free port)")
    s.add_argument("--format", default="saved_model",
                   choices=["saved_model", "tflite", "tflite_fp16", "tflite_int8"])
    s.add_argument("--max-batch", type=int, default=8, help="images run as one batch, at most")
    s.add_argument("--batch-timeout-ms", type=float, default=5.0,
                   help="how long a batch waits for more requests")
    s.add_argument("--max-body-mb", type=float, default=20.0, help="largest request body")
    s.add_argument("--queue-size", type=int, default=64,
                   help="images waiting for the model, at most (then 503)")
    s.set_defaults(func=_serve)


def _serve(a) -> None:
    from od.serve import ServeConfig, serve
    serve(ServeConfig(a.model, name=a.name, host=a.host, port=a.port, format=a.format,
                      max_batch=a.max_batch, batch_timeout_ms=a.batch_timeout_ms,
                      max_body_mb=a.max_body_mb, queue_size=a.queue_size))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="od", description="Fine-tune, evaluate, export and run "
                                "TensorFlow object detectors on your own labelled images.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_model_commands(sub)
    _add_zoo_commands(sub)
    _add_serve_command(sub)
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
