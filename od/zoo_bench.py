"""Measure the speed of the zoo's detector architectures on this machine.

Each detector is built the way ``od train ... model=NAME`` builds it: the ``model`` section of the
entry's pipeline config in ``configs/`` (``od.config.apply_zoo_model``) → ``od.model.build_model``
(Model Garden's RetinaNet or Mask R-CNN factory, the latter without masks for Faster R-CNN entries),
COCO's 91 classes, at its input size, with random weights
(the network's speed does not depend on them), and called in inference mode (``training=False``; box decoding and NMS included, ``nms_version`` :data:`NMS`)
inside a ``tf.function``. After a warm-up call (tracing) the median wall time of ``repeats`` calls
gives ms/image at batch 1 and images/s at batch 8. Random weights leave few boxes above the score
threshold, so the NMS share is a lower bound.

TensorFlow and Model Garden are imported inside the functions, so importing this module is cheap.
"""
from __future__ import annotations

import datetime
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

from od import atomic
from od.errors import ZooError
from od.zoo import ZOO, ZooEntry, get
from od.zoo_select import (SPEEDS_ENV, SpeedRecord, cpu_label, read_speeds,
                           user_speeds_path)

#: Post-processing measured: 'batched' (tf.image.combined_non_max_suppression). Model Garden's
#: default 'v2' (and 'v1') take 1.5-3 s per image on a 2-core CPU whatever the network, which
#: would hide every difference between architectures.
NMS = "batched"


def machine_label() -> str:
    """'GPU: <name> (TF x)' when TensorFlow sees a GPU, else '<n>-core CPU (<model>, TF x)'
    with the CPU model from /proc/cpuinfo (:func:`od.zoo.cpu_label`)."""
    import tensorflow as tf
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU: {details.get('device_name', gpus[0].name)} (TF {tf.__version__})"
    return f"{cpu_label()}, TF {tf.__version__})"


#: Classes of the COCO detectors' heads (Model Garden's COCO label ids up to 90 + background).
COCO_NUM_CLASSES = 91


def build_detector(entry: ZooEntry, input_size: int | None = None, nms_version: str = NMS):
    """The Keras detector (RetinaNet or Faster R-CNN) of ``entry`` (random weights) at
    ``input_size`` pixels (default: the entry's), built from the entry's pipeline config with Model
    Garden's ``nms_version`` post-processing. Raises ZooError for a backbone-only entry or a size
    the model rejects (< 1 included)."""
    _check_size(input_size)
    if not entry.is_detector:
        raise ZooError(f"{entry.name} is a backbone checkpoint, not a detector; benchmark a "
                       f"detector entry (`od zoo list` shows the kind)")
    from dataclasses import replace

    from od import config as config_lib
    from od import model as model_lib
    from od.errors import ConfigError

    cfg = config_lib.apply_zoo_model(config_lib.PipelineConfig(), entry.name)
    model = replace(cfg.model, input_size=input_size or entry.input_size,
                    nms_version=nms_version, num_classes=COCO_NUM_CLASSES)
    try:
        cfg = config_lib.check(replace(cfg, model=model), f"zoo entry {entry.name}")
        return model_lib.build_model(cfg)
    except (ConfigError, ValueError) as e:
        raise ZooError(f"cannot build {entry.name} from configs/{entry.config} at "
                       f"{model.input_size} px: {e}") from e


def _check_args(batch_sizes, repeats, input_size) -> None:
    if repeats is not None and repeats < 1:
        raise ZooError(f"repeats must be >= 1 (timed calls per batch size), got {repeats}")
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise ZooError(f"batch sizes must be >= 1 images, got {tuple(batch_sizes)}")
    _check_size(input_size)


def _check_size(input_size) -> None:
    if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int)
                                   or input_size < 1):
        raise ZooError(f"input size must be an integer >= 1 (pixels), got {input_size!r}; leave "
                       f"it out to use each entry's own size")


def _load() -> str:
    try:
        return "%.1f" % os.getloadavg()[0]
    except OSError:
        return "?"


def _time_calls(fn, images, shape, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(images, shape)
        out["detection_boxes"].numpy()
        times.append(time.perf_counter() - t0)
    return times


def measure(entry: ZooEntry, *, batch_sizes: Sequence[int] = (1, 8), repeats: int | None = None,
            budget_s: float = 20.0, input_size: int | None = None,
            machine: str | None = None, nms_version: str = NMS) -> list[SpeedRecord]:
    """Speed records of one detector entry, one per batch size.

    ``repeats`` timed calls per batch size after one warm-up call; None picks 3..20 calls so that
    each batch size takes about ``budget_s`` seconds. Raises ZooError when it cannot be built, or
    on repeats / batch sizes / ``input_size`` < 1.
    """
    _check_args(batch_sizes, repeats, input_size)
    import tensorflow as tf
    machine = machine or machine_label()
    size = input_size or entry.input_size
    model = build_detector(entry, size, nms_version)

    @tf.function(reduce_retracing=True)
    def infer(images, image_shape):
        return model(images, image_shape=image_shape, training=False)

    today = datetime.date.today().isoformat()
    records = []
    for b in batch_sizes:
        images = tf.random.uniform([b, size, size, 3], 0.0, 255.0, dtype=tf.float32)
        shape = tf.constant([[size, size]] * b, dtype=tf.float32)
        warm = _time_calls(infer, images, shape, 1)[0]
        if repeats is None:  # the first timed call sizes the rest to about budget_s
            times = _time_calls(infer, images, shape, 1)
            n = int(min(20, max(3, budget_s // max(times[0], 1e-6))))
            times += _time_calls(infer, images, shape, n - 1)
        else:
            n = repeats
            times = _time_calls(infer, images, shape, n)
        med = statistics.median(times)
        records.append(SpeedRecord(
            name=entry.name, machine=machine, batch=b, input_size=size,
            latency_ms=round(1000.0 * med / b, 2), images_per_s=round(b / med, 3),
            repeats=n, date=today,
            note=(f"nms {nms_version}; warm-up (tracing) {warm:.1f} s; min "
                  f"{1000 * min(times) / b:.1f} ms/image; load average {_load()}")))
    return records


def benchmark(names: Iterable[str] | None = None, *, batch_sizes: Sequence[int] = (1, 8),
              repeats: int | None = None, budget_s: float = 20.0, input_size: int | None = None,
              log: Callable[[str], None] | None = print) -> list[SpeedRecord]:
    """Measure ``names`` (default: every detector entry of ``ZOO``) on this machine.

    Returns one :class:`~od.zoo.SpeedRecord` per (entry, batch size): ms/image and images/s.
    ``input_size`` (pixels) overrides every entry's size (for smoke tests; records say the size).
    Raises ZooError for an unknown name, a backbone-only entry, or repeats / batch sizes /
    ``input_size`` < 1;
    a model that fails to run (e.g. out of memory) gives records with no figures and the reason
    in ``note``.
    """
    _check_args(batch_sizes, repeats, input_size)
    entries = [e for e in ZOO if e.is_detector] if names is None else [get(n) for n in names]
    for e in entries:
        if not e.is_detector:
            raise ZooError(f"{e.name} is a backbone checkpoint; only detectors are benchmarked")
    machine = machine_label()
    out: list[SpeedRecord] = []
    for e in entries:
        t0 = time.perf_counter()
        try:
            recs = measure(e, batch_sizes=batch_sizes, repeats=repeats, budget_s=budget_s,
                           input_size=input_size, machine=machine)
        except ZooError:
            raise
        except Exception as err:  # noqa: BLE001 - any TF failure becomes a recorded reason
            why = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
            recs = [SpeedRecord(e.name, machine, b, input_size or e.input_size, None, None, 0,
                                datetime.date.today().isoformat(), f"not measured: {why}")
                    for b in batch_sizes]
        out += recs
        if log:
            log(f"{e.name}: " + ", ".join(
                f"b{r.batch} {r.latency_ms} ms/image {r.images_per_s} img/s" if r.measured
                else f"b{r.batch} {r.note}" for r in recs) + f" ({time.perf_counter() - t0:.0f} s)")
    return out


def default_out() -> Path:
    """Where `od zoo benchmark` writes: :func:`od.zoo.user_speeds_path` (``$OD_ZOO_SPEEDS``, else
    the od cache), never the package's shipped reference file."""
    return user_speeds_path()


def write_speeds(records: Sequence[SpeedRecord], path: str | os.PathLike | None = None) -> Path:
    """Merge ``records`` into the speed JSON ``path`` (default :func:`default_out`) atomically:
    per machine, records for the same (name, batch) are replaced, others kept. Raises ZooError
    when the file is malformed or cannot be written (the message suggests --out)."""
    path = Path(path) if path is not None else default_out()
    existing = read_speeds(path)
    new_keys = {(r.machine, r.name, r.batch) for r in records}
    keep = [r for r in existing if (r.machine, r.name, r.batch) not in new_keys]
    machines: dict[str, dict] = {}
    for r in keep + list(records):
        m = machines.setdefault(r.machine, {"date": r.date, "records": []})
        m["date"] = max(m["date"], r.date)
        m["records"].append({"name": r.name, "batch": r.batch, "input_size": r.input_size,
                             "latency_ms": r.latency_ms, "images_per_s": r.images_per_s,
                             "repeats": r.repeats, "date": r.date, "note": r.note})
    for m in machines.values():
        m["records"].sort(key=lambda d: (d["name"], d["batch"]))
    doc = {"about": "Detector speed measured by `od zoo benchmark`: latency_ms = median ms per "
                    "image (call time / batch), images_per_s = batch / median call time; "
                    "float32, inference with NMS, random weights.",
           "machines": machines}
    try:
        atomic.write_json(path, doc)
    except OSError as e:
        raise ZooError(f"cannot write speeds to {path} ({e}); pass --out FILE or set "
                       f"{SPEEDS_ENV}") from e
    return path
