"""The ``od`` command line. It only parses arguments and calls library functions (the same ones
the notebooks call); every behaviour lives in the modules it imports."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from od.cli_data import OVERWRITE_HELP, add_data_commands
from od.cli_zoo import add_zoo_commands
from od.errors import OdError

# ---- od train / evaluate / export / detect / quickstart / config ----------------------------
def _add_output_options(parser, log: str) -> None:
    """--overwrite, --checkpoint and --verbose, shared by evaluate, export and detect."""
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--checkpoint", help="best, latest or a checkpoint path (default: best "
                        "when RUN/best/ exists, else latest)")
    parser.add_argument("--verbose", action="store_true",
                        help=f"show TensorFlow logs (always in {log})")


def _add_model_commands(sub) -> None:
    t = sub.add_parser("train", help="fine-tune a detector (resumes if RUN has checkpoints)")
    t.add_argument("--config", action="append", default=[],
                   help="pipeline config YAML; repeat to layer more files on the first")
    t.add_argument("--model-dir", required=True, help="run folder (checkpoints, logs)")
    t.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.batch_size=8")
    t.add_argument("--no-progress", action="store_true")
    t.add_argument("--verbose", action="store_true",
                   help="show TensorFlow/Model Garden logs (always in RUN/train.log)")
    t.add_argument("--nearest", action="store_true",
                   help="OD API pipeline.config: map an architecture od cannot build "
                        "(CenterNet, EfficientDet, SSD without FPN) to the nearest od one")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="COCO metrics, plots and report.html of a run or an "
                       "exported model on TFRecords or any annotation source")
    e.add_argument("--model-dir", "--model", dest="model_dir", action="append",
                   help="run folder of `od train`, export folder of `od export`, or a .tflite / "
                        "frozen .pb file; repeat to compare models")
    e.add_argument("--compare", nargs="+", metavar="MODEL",
                   help="evaluate these models on the same data: one table and one plot in OUT")
    e.add_argument("--format", action="append", dest="model_format",
                   choices=["saved_model", "frozen_graph", "tflite", "tflite_fp16",
                            "tflite_int8"],
                   help="which model of an export folder runs (default saved_model); repeat "
                        "once per model with --compare")
    e.add_argument("--data", required=True,
                   help="TFRecord shards (glob, file or folder) or an annotation source: VOC "
                        "folder/devkit, COCO JSON/Roboflow folder, CSV, AutoML CSV")
    e.add_argument("--data-format", choices=["tfrecord", "voc", "coco", "csv", "automl"],
                   help="format of --data (default: detected)")
    e.add_argument("--images", help="images folder of an annotation source")
    e.add_argument("--split", choices=["train", "val", "test"],
                   help="split to score where the source has them (default: test, or its only "
                        "split)")
    e.add_argument("--label-map", help="label_map.pbtxt of a model file that has none beside it")
    e.add_argument("--min-score", type=float,
                   help="score threshold of the confusion matrix (default: the model's "
                        "eval.min_score)")
    e.add_argument("--iou-threshold", type=float,
                   help="IoU at which a detection matches a box in the threshold table and the "
                        "confusion matrix (default: the model's eval.iou_threshold; COCO AP "
                        "always averages IoU 0.50:0.95)")
    e.add_argument("--clip-boxes", action="store_true",
                   help="clip boxes that leave the image (default: report them as errors)")
    e.add_argument("--out", help="output folder (default RUN/eval, EXPORT/eval[_FORMAT]; "
                                 "required with --compare)")
    e.add_argument("--max-images", type=int, default=0)
    e.add_argument("--tile", type=int, default=0, metavar="N",
                   help="detect as od detect --tile N does (whole image + overlapping N px tiles, "
                        "merged): what tiling gains on these photos")
    e.add_argument("--tile-overlap", type=float, default=0.2, help="tile overlap fraction")
    _add_output_options(e, "RUN/evaluate.log")
    e.set_defaults(func=_evaluate)

    x = sub.add_parser("export", help="SavedModel (+ frozen graph, TFLite) from a run, checked")
    x.add_argument("--model-dir", required=True)
    x.add_argument("--out", required=True)
    x.add_argument("--format", "--formats", action="extend", nargs="+", dest="formats",
                   default=None, help="saved_model (always), frozen_graph, tflite, tflite_fp16, "
                   "tflite_int8")
    x.add_argument("--calibration-images", type=int, default=100,
                   help="training/val images that calibrate tflite_int8")
    _add_output_options(x, "RUN/export.log")
    x.set_defaults(func=_export)

    d = sub.add_parser("detect", help="detect objects in a folder of images")
    d.add_argument("--model", required=True, help="export folder of `od export` (or a run "
                   "folder of `od train`, with --checkpoint)")
    d.add_argument("--images", required=True, help="folder of images (or one image)")
    d.add_argument("--out", required=True)
    d.add_argument("--min-score", type=float, default=0.5)
    d.add_argument("--voc", action="store_true", help="also write VOC XML pre-labels")
    d.add_argument("--crops", action="store_true", help="also write one crop per box")
    d.add_argument("--format", default="saved_model",
                   help="saved_model, or tflite / tflite_fp16 / tflite_int8 of the export folder")
    d.add_argument("--tile", type=int, default=0, metavar="N",
                   help="also detect on overlapping N-px tiles, merged (od.tiling; small objects in "
                        "large photos; e.g. N = the model's input size)")
    d.add_argument("--tile-overlap", type=float, default=0.2, help="tile overlap fraction")
    d.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="images of one size per model call (default 8, the fastest measured on "
                        "camera and mixed-size folders; 1: one at a time)")
    _add_output_options(d, "OUT/od.log")
    d.set_defaults(func=_detect)

    q = sub.add_parser("quickstart", help="run every stage on a generated dataset (no download)")
    q.add_argument("--workdir", default="od-quickstart")
    q.add_argument("--images", type=int, default=400, help="number of generated images")
    q.add_argument("overrides", nargs="*", help="pipeline overrides, e.g. train.steps=100")
    q.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    q.add_argument("--verbose", action="store_true",
                   help="show TensorFlow/Model Garden logs (always in WORKDIR/od.log)")
    q.set_defaults(func=_quickstart)

    c = sub.add_parser("config", help="show the resolved pipeline config")
    csub = c.add_subparsers(dest="config_command", required=True)
    cs = csub.add_parser("show", help="print the layered config as YAML")
    cs.add_argument("--config", action="append", default=[])
    cs.add_argument("overrides", nargs="*")
    cs.set_defaults(func=_config_show)
    ci = csub.add_parser("import", help="an Object Detection API pipeline.config → od YAML, "
                         "with a table of what maps to what")
    ci.add_argument("pipeline_config", help="the OD API pipeline.config (protobuf text format)")
    ci.add_argument("--out", help="write the od YAML here (and the table as OUT_STEM.mapping.txt); "
                                  "default: print the YAML")
    ci.add_argument("--nearest", action="store_true",
                    help="map an architecture od cannot build to the nearest od detector")
    ci.add_argument("overrides", nargs="*", help="section.key=value, e.g. data.train=DATA")
    ci.set_defaults(func=_config_import)


def _layers(paths):
    return (paths[0] if paths else None), paths[1:]


def _train(a) -> None:
    from od import odapi
    from od.train import Interrupted, check_model_dir, fine_tune
    base, extra = _layers(a.config)
    overrides = a.overrides
    if base and odapi.is_pipeline_config(base):  # an OD API pipeline.config, by content
        imported = odapi.import_config(base, nearest=a.nearest, extra=extra, overrides=overrides)
        print(imported.table())
        check_model_dir(Path(a.model_dir), imported.cfg)  # before the table is written there
        os.makedirs(a.model_dir, exist_ok=True)
        print(f"mapping table saved as {imported.save_table(a.model_dir)}")
        base, extra, overrides = imported.cfg, (), ()
    try:  # library logging goes to RUN/train.log (fine_tune routes it)
        r = fine_tune(base, a.model_dir, extra=extra, overrides=overrides,
                      progress=not a.no_progress, verbose=a.verbose)
    except Interrupted as e:  # Ctrl-C / SIGTERM: checkpoint saved, exit 130 / 143
        print(f"od: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    print(f"trained to step {r.step} in {r.seconds:.0f} s; checkpoints and pipeline.yaml in "
          f"{r.model_dir}; TensorBoard: tensorboard --logdir {r.model_dir}")


def _evaluate_log(out, models) -> str | None:
    """Where `od evaluate` logs: in --out, else in the (od-made) run or export folder, else in
    the default ``<stem>_eval/`` folder beside a model file; never in a user's own folder."""
    if out:
        return os.path.join(out, "evaluate.log")
    if not models:
        return None
    p = Path(models[0])
    return str(p / "evaluate.log" if p.is_dir() else p.parent / f"{p.stem}_eval" / "evaluate.log")


def _evaluate(a) -> None:
    from od import logs
    from od.evaluate import compare, evaluate
    models = (a.model_dir or []) + (a.compare or [])
    kw = dict(split=a.split, data_format=a.data_format, images=a.images, label_map=a.label_map,
              min_score=a.min_score, iou_threshold=a.iou_threshold, tile=a.tile,
              tile_overlap=a.tile_overlap, box_policy="clip" if a.clip_boxes else "error",
              max_images=a.max_images)
    with logs.routed(_evaluate_log(a.out, models), a.verbose):
        if len(models) > 1:
            if not a.out:
                raise OdError("comparing models needs --out (the folder for the comparison).")
            if a.checkpoint:
                raise OdError("--checkpoint picks one run's checkpoint; leave it out with "
                              "--compare (each run uses its best, else latest).")
            fmts = a.model_format or []
            r = compare(models, a.data, a.out,
                        formats=fmts * len(models) if len(fmts) == 1 else fmts,
                        overwrite=a.overwrite, **kw)
            keys = ("AP", "AP50", "AP75")
            for m in r["models"]:
                print(f"{m['model']}: " + "  ".join(
                    f"{k} {'-' if m[k] is None else format(m[k], '.3f')}" for k in keys))
            print(f"wrote {r['files']['markdown']}, {r['files']['csv']}, {r['files']['plot']}")
            return
        if not models:
            raise OdError("give the model to evaluate: --model RUN|EXPORT|FILE (or --compare A "
                          "B).")
        if a.model_format and len(a.model_format) > 1:
            raise OdError("one --format per evaluated model; give it once.")
        r = evaluate(models[0], a.data, a.out, format=(a.model_format or [None])[0],
                     checkpoint=a.checkpoint, overwrite=a.overwrite, **kw)
    c = r["coco"]
    print(json.dumps({k: c[k] for k in ("AP", "AP50", "AP75")}, indent=2))
    print(f"wrote {r['plots'].get('metrics', '')} and plots")
    print(f"report: {r['report_html']}")


def _export(a) -> None:
    from od.export import export
    r = export(a.model_dir, a.out, formats=tuple(a.formats or ("saved_model",)),
               calibration_images=a.calibration_images, checkpoint=a.checkpoint,
               overwrite=a.overwrite, verbose=a.verbose)  # library logs: RUN/export.log
    for c in r["checks"]:
        box = (f"max box diff {c['max_box_diff']:.2g}" if "max_box_diff" in c else
               f"min matched IoU {c['min_matched_iou']:.3f}")
        print(f"{c['format']}: {box}, max score diff {c['max_score_diff']:.2g} (ok)")
    print(f"wrote {a.out}/")


def _detect(a) -> None:
    from od import logs
    from od.detect import detect_folder
    with logs.routed(os.path.join(a.out, "od.log"), a.verbose):
        r = detect_folder(a.model, a.images, a.out, min_score=a.min_score, voc=a.voc,
                          crops=a.crops, format=a.format, checkpoint=a.checkpoint,
                          overwrite=a.overwrite, tile=a.tile, tile_overlap=a.tile_overlap,
                          batch_size=a.batch_size)
    done = r["images"]
    print(f"{sum(len(x['detections']) for x in done)} boxes in {len(done)} images → {a.out}/")
    for s in r["skipped"]:
        print(f"skipped {s['image']}: {s['reason']}", file=sys.stderr)


def _quickstart(a) -> None:
    from od import logs
    from od.quickstart import run
    with logs.routed(os.path.join(a.workdir, "od.log"), a.verbose):
        r = run(a.workdir, num_images=a.images, overrides=a.overrides, overwrite=a.overwrite)
    print(json.dumps(r, indent=2))


def _config_show(a) -> None:
    import yaml

    from od import config
    base, extra = _layers(a.config)
    print(yaml.safe_dump(config.to_dict(config.load(base, extra, a.overrides)), sort_keys=False))


def _config_import(a) -> None:
    import yaml

    from od import config, odapi
    imported = odapi.import_config(a.pipeline_config, nearest=a.nearest, overrides=a.overrides,
                                   placeholders="keep")
    print(imported.table())
    if a.out:
        out = odapi.write_yaml(imported, a.out)
        print(f"wrote {out} (train with: od train --config {out} --model-dir RUN)")
    else:
        print(yaml.safe_dump(config.to_dict(imported.cfg), sort_keys=False))


class _Parser(argparse.ArgumentParser):
    """argparse with `od`'s error form: the usage, then ``od: error: ...``, exit 2."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"od: error: {self.prog}: {message}\n")


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
    p = _Parser(prog="od", description="Fine-tune, evaluate, export and run "
                "TensorFlow object detectors on your own labelled images.")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback of an error (also accepted after the command)")
    sub = p.add_subparsers(dest="command", required=True)
    add_data_commands(sub)
    _add_model_commands(sub)
    add_zoo_commands(sub)
    _add_serve_command(sub)
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``od`` arguments; overrides (``section.key=value``) may come before, between or
    after the options (argparse alone stops taking them after the first option)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "overrides") and not any(x.startswith("-") for x in extra):
            args.overrides = [*args.overrides, *extra]
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _on_sigterm(signum, frame):
    raise SystemExit(143)


def main(argv=None) -> int:
    """Run ``od`` with ``argv``; returns the exit status: 0 done, 2 a user error (``od: error:``
    naming the file/value and the fix), 1 an internal error (a bug: one line, the traceback with
    ``--debug``), 130 Ctrl-C, 143 SIGTERM (temporary outputs are removed in both)."""
    import signal

    # TensorFlow's C++ start-up messages: quiet unless the user chose a level (set here, when a
    # command runs, not when od.cli is imported; `--verbose` shows library logs)
    # (3: errors too, e.g. "failed call to cuInit" on a machine with a CUDA driver but no GPU;
    # an error that matters reaches od as a Python exception and is reported by it)
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if "--verbose" in argv else "3")
    debug = "--debug" in argv
    argv = [x for x in argv if x != "--debug"]
    args = parse_args(argv)
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        args.func(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `od zoo list | head`: the reader left, stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OdError as e:
        if debug:
            raise
        print(f"od: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the environment the user gave: a full disk, a read-only folder...
        if debug:
            raise
        print(f"od: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("od: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:
        if e.code == 143:
            print("od: terminated", file=sys.stderr)
            return 143
        raise
    except Exception as e:  # noqa: BLE001 - a bug: one line unless --debug
        if debug:
            raise
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"od: internal error: {type(e).__name__}: {text} (run with --debug for the "
              "traceback)", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
