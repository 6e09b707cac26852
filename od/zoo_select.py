"""Speeds of the zoo's checkpoints, and choosing one by speed and COCO AP.

Speed is never copied from a paper: the package ships ``od/zoo_speeds.json`` (figures of a
reference machine, labelled with it, never rewritten, measured by :func:`od.zoo_bench.benchmark`),
and `od zoo benchmark` writes this machine's figures to the user file :func:`user_speeds_path`
(``$OD_ZOO_SPEEDS``, else the od cache). Where both have a figure, the one measured on this machine
wins, and :func:`describe` says which machine a latency comes from.

:func:`select` is a pure function of a table (:data:`od.zoo.ZOO`) and speed records;
:func:`list_table` renders both. Nothing here imports TensorFlow.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from od.errors import ZooError
from od.zoo import ARCHITECTURES, ZOO, ZooEntry, ap_source

#: The speed figures shipped with the package (measured on a reference machine).
SHIPPED_SPEEDS = Path(__file__).with_name("zoo_speeds.json")
#: Environment variable naming the user speed file (default: ``<od cache>/zoo_speeds.json``).
SPEEDS_ENV = "OD_ZOO_SPEEDS"
#: ``SpeedRecord.origin`` of a figure measured on this machine / on another one.
HERE, ELSEWHERE = "this machine", "another machine"


# ---- speeds ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeedRecord:
    """One measured speed: entry ``name`` at ``input_size`` pixels, ``batch`` images per call.

    ``latency_ms`` is the median wall time of one call (ms) divided by ``batch``, i.e. ms per
    image; ``images_per_s`` is ``batch`` / median call time. Both are None, with the reason in
    ``note``, when the model could not be measured. ``machine`` labels where it was measured.
    """

    name: str
    machine: str
    batch: int
    input_size: int
    latency_ms: float | None
    images_per_s: float | None
    repeats: int
    date: str
    note: str = ""
    origin: str = ""   # HERE / ELSEWHERE, set by load_speeds ('' when not known)

    @property
    def measured(self) -> bool:
        return self.latency_ms is not None


def user_speeds_path() -> Path:
    """This machine's speed file, which `od zoo benchmark` updates: ``$OD_ZOO_SPEEDS``, else
    ``zoo_speeds.json`` in the od cache (``$OD_CACHE_DIR``, else ``~/.cache/od``). Never a file
    inside the installed package."""
    env = os.environ.get(SPEEDS_ENV)
    if env:
        return Path(env).expanduser()
    from od.download import cache_root  # od.download imports this module
    return cache_root() / "zoo_speeds.json"


def cpu_model() -> str:
    """This machine's CPU model name (Linux ``/proc/cpuinfo``, else ``platform``); what every
    measurement of `od` (zoo speeds, ``bench/``) records as its machine. No TF import."""
    import platform
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return model


def cpu_label() -> str:
    """``'<n>-core CPU (<model>'``: the start of the machine label of a CPU measurement made
    here (:func:`od.zoo_bench.machine_label` appends the TensorFlow version). No TF import."""
    return f"{os.cpu_count()}-core CPU ({cpu_model()}"


def read_speeds(path: str | os.PathLike) -> list[SpeedRecord]:
    """Records from one speed JSON file (``{"machines": {label: {"date", "records": [...]}}}``).

    Every record is checked: ``name``/``machine``/``date``/``note`` text, ``batch`` and
    ``input_size`` integers >= 1, ``repeats`` an integer >= 0, ``latency_ms``/``images_per_s``
    None or a finite number >= 0.

    Raises ZooError naming the file (and the record and field) when it is unreadable, not a
    speed file, or a record is malformed; a missing file gives [].
    """
    path = Path(path)
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        out = []
        for machine, m in doc["machines"].items():
            for i, r in enumerate(m["records"]):
                rec = SpeedRecord(machine=machine, date=r.get("date", m.get("date", "")),
                                  **{k: v for k, v in r.items() if k != "date"})
                bad = _bad_field(rec)
                if bad:
                    raise ValueError(f"record {i} of machine {machine!r}: {bad}")
                out.append(rec)
        return out
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ZooError(f"speed file {path} is unreadable or not a speed file written by `od zoo "
                       f"benchmark` ({e}); pass the right file, or measure anew with `od zoo "
                       f"benchmark --out NEW.json`") from e


def _bad_field(r: SpeedRecord) -> str:
    """What is wrong with record ``r`` ('' when nothing)."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)
    for f in ("name", "machine", "date", "note"):
        if not isinstance(getattr(r, f), str):
            return f"{f} = {getattr(r, f)!r} is not text"
    for f, low in (("batch", 1), ("input_size", 1), ("repeats", 0)):
        if not is_int(getattr(r, f)) or getattr(r, f) < low:
            return f"{f} = {getattr(r, f)!r} is not an integer >= {low}"
    for f in ("latency_ms", "images_per_s"):
        v = getattr(r, f)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v) or v < 0):
            return f"{f} = {v!r} is not a finite number >= 0 (or null: not measured)"
    return ""


def load_speeds(paths: Iterable[str | os.PathLike] | None = None) -> list[SpeedRecord]:
    """One record per (name, batch) from ``paths`` (default: :func:`user_speeds_path`, then the
    shipped reference file), each with ``origin`` HERE or ELSEWHERE.

    A record is HERE when it comes from the default user file (written by `od zoo benchmark` on
    this machine) or its machine label starts with :func:`cpu_label`. For each (name, batch) the
    preference is: measured here, then the earlier file, then measured at all, then the newest
    date. Raises ZooError on a malformed file."""
    user = None
    if paths is None:
        user = user_speeds_path()
        paths = [user, SHIPPED_SPEEDS]
    here = cpu_label()
    best: dict[tuple[str, int], tuple] = {}
    for rank, path in enumerate(paths):
        for r in read_speeds(path):
            is_here = (user is not None and Path(path) == user) or r.machine.startswith(here)
            r = dataclasses.replace(r, origin=HERE if is_here else ELSEWHERE)
            key = (is_here, -rank, r.measured, r.date)
            k = (r.name, r.batch)
            if k not in best or key > best[k][0]:
                best[k] = (key, r)
    return [r for _, r in best.values()]


def _speed_index(speeds: Iterable[SpeedRecord], batch: int) -> dict[str, SpeedRecord]:
    return {r.name: r for r in speeds if r.batch == batch and r.measured}


# ---- selection ---------------------------------------------------------------------------------
def _fmt(e: ZooEntry, s: SpeedRecord | None) -> str:
    speed = f"{s.latency_ms:.1f} ms/image at batch {s.batch}" if s else "speed not measured"
    return f"{e.name} ({e.ap_label}, {speed})"


def _detectors(table: Sequence[ZooEntry], architecture: str | None,
               coco_checkpoint_only: bool) -> list[ZooEntry]:
    if architecture is not None and architecture not in ARCHITECTURES:
        raise ZooError(f"architecture {architecture!r} is not one of {', '.join(ARCHITECTURES)}")
    return [e for e in table if e.is_detector
            and (architecture is None or e.model_architecture == architecture)
            and (e.has_coco_checkpoint or not coco_checkpoint_only)]


def rank(table: Sequence[ZooEntry] = ZOO, *, max_latency_ms: float | None = None,
         min_ap: float | None = None, speeds: Iterable[SpeedRecord] | None = None,
         batch: int = 1, architecture: str | None = None,
         coco_checkpoint_only: bool = False) -> list[ZooEntry]:
    """Every detector of ``table`` that fits the bounds, best first, in :func:`select`'s order.

    Candidates are detector entries of both architectures (or ``architecture`` only: 'retinanet'
    or 'faster_rcnn'; with ``coco_checkpoint_only`` only entries whose AP is their downloadable
    COCO checkpoint's) with a published COCO AP and a measured speed at ``batch``. With
    ``max_latency_ms`` (ms/image): those at or under it (and AP >= ``min_ap``), by AP descending,
    then latency, then name; with only ``min_ap`` (percent): those at or above it, by latency,
    then AP descending, then name; with neither: all, by AP. ``speeds`` defaults to
    :func:`load_speeds`. Returns [] when nothing fits; raises ZooError on an unknown architecture
    or a ``batch`` that is not an integer >= 1.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ZooError(f"batch must be an integer >= 1 (images per call), got {batch!r}")
    speeds = load_speeds() if speeds is None else list(speeds)
    by_name = _speed_index(speeds, batch)
    cands = [e for e in _detectors(table, architecture, coco_checkpoint_only)
             if e.coco_ap is not None and e.name in by_name
             and (min_ap is None or e.coco_ap >= min_ap)]
    ms = lambda e: by_name[e.name].latency_ms  # noqa: E731
    if max_latency_ms is not None or min_ap is None:
        fits = [e for e in cands if max_latency_ms is None or ms(e) <= max_latency_ms]
        return sorted(fits, key=lambda e: (-e.coco_ap, ms(e), e.name))
    return sorted(cands, key=lambda e: (ms(e), -e.coco_ap, e.name))


def select(table: Sequence[ZooEntry] = ZOO, *, max_latency_ms: float | None = None,
           min_ap: float | None = None, speeds: Iterable[SpeedRecord] | None = None,
           batch: int = 1, architecture: str | None = None,
           coco_checkpoint_only: bool = False) -> ZooEntry:
    """Choose a detector from ``table`` by measured speed and published COCO AP.

    With ``max_latency_ms`` (ms per image at ``batch``): the best AP among detectors measured at
    or under the bound (and with AP >= ``min_ap`` when given); ties go to the faster, then to the
    name. With only ``min_ap`` (COCO AP, percent): the fastest detector with AP >= ``min_ap``;
    ties go to the higher AP. Both architectures compete unless ``architecture`` names one
    ('retinanet', 'faster_rcnn'); a Faster R-CNN entry's AP is a related model's published figure
    and it has no COCO checkpoint (:attr:`ZooEntry.ap_label` says so), and
    ``coco_checkpoint_only`` leaves such entries out. Only detector entries with a published AP
    count, and entries without a measured speed in ``speeds`` are left out (the error says
    which). ``speeds`` defaults to :func:`load_speeds` (user figures, then the shipped reference
    figures); otherwise the result depends on the arguments only. :func:`rank` gives all the
    candidates in this order.

    Raises ZooError when no bound is given, a bound is negative or NaN, ``batch`` < 1, the
    architecture is unknown, or nothing fits (naming the closest candidates and their figures).
    """
    if max_latency_ms is None and min_ap is None:
        raise ZooError("give a bound: max_latency_ms (e.g. 40) and/or min_ap (e.g. 25)")
    for label, v in (("max_latency_ms", max_latency_ms), ("min_ap", min_ap)):
        if v is not None and not v >= 0:
            raise ZooError(f"{label} must be a number >= 0, got {v!r}")
    speeds = load_speeds() if speeds is None else list(speeds)
    ranked = rank(table, max_latency_ms=max_latency_ms, min_ap=min_ap, speeds=speeds, batch=batch,
                  architecture=architecture, coco_checkpoint_only=coco_checkpoint_only)
    if ranked:
        return ranked[0]
    by_name = _speed_index(speeds, batch)
    pool = _detectors(table, architecture, coco_checkpoint_only)
    detectors = [e for e in pool if e.coco_ap is not None]
    no_ap = [e.name for e in pool if e.coco_ap is None]
    which = "".join([f" of architecture {architecture}" if architecture else "",
                     " with a COCO checkpoint" if coco_checkpoint_only else ""])
    if not detectors:
        raise ZooError(f"the zoo table has no detector entries{which} with a published COCO AP"
                       + (f" ({', '.join(no_ap)} publish none)" if no_ap else ""))
    measured = [e for e in detectors if e.name in by_name]
    unmeasured = [e.name for e in detectors if e.name not in by_name]
    skipped = (f" Left out for want of a measured speed at batch {batch}: "
               f"{', '.join(unmeasured)} (run `od zoo benchmark`)." if unmeasured else "")
    skipped += (f" Left out for want of a published COCO AP: {', '.join(no_ap)}."
                if no_ap else "")
    ms = lambda e: by_name[e.name].latency_ms  # noqa: E731
    ap_ok = [e for e in measured if min_ap is None or e.coco_ap >= min_ap]

    if max_latency_ms is not None:
        if not measured:
            raise ZooError(f"no detector{which} has a measured speed at batch {batch}, so none "
                           f"can be chosen by latency.{skipped}")
        hints = []
        if ap_ok:
            f = min(ap_ok, key=lambda e: (ms(e), -e.coco_ap))
            hints.append(f"the fastest{' with AP >= %g' % min_ap if min_ap is not None else ''}"
                         f" is {_fmt(f, by_name[f.name])}")
        fast = [e for e in measured if ms(e) <= max_latency_ms]
        if fast and min_ap is not None:
            b = max(fast, key=lambda e: (e.coco_ap, -ms(e)))
            hints.append(f"the best AP within {max_latency_ms:g} ms is {_fmt(b, by_name[b.name])}")
        want = f"at most {max_latency_ms:g} ms/image" + (
            f" and AP >= {min_ap:g}" if min_ap is not None else "")
        raise ZooError(f"no detector{which} fits {want} at batch {batch}: {'; '.join(hints)}. "
                       f"Raise the latency bound{' or lower min_ap' if min_ap is not None else ''}"
                       f".{skipped}")

    above = [e for e in detectors if e.coco_ap >= min_ap]
    if not above:
        b = max(detectors, key=lambda e: e.coco_ap)
        raise ZooError(f"no detector{which} has COCO AP >= {min_ap:g}: the best is "
                       f"{_fmt(b, by_name.get(b.name))}. Lower min_ap.")
    raise ZooError(f"detectors with AP >= {min_ap:g} exist "
                   f"({', '.join(e.name for e in above)}) but none has a measured speed at "
                   f"batch {batch}, so the fastest is unknown.{skipped}")


def ranking(entries: Sequence[ZooEntry], speeds: Iterable[SpeedRecord] | None = None,
            batch: int = 1) -> str:
    """Numbered lines, one per entry (e.g. :func:`rank`'s): name, architecture, AP, ms/image at
    ``batch`` and whether the AP is a downloadable COCO checkpoint's (`od zoo select` prints it).
    ``speeds`` defaults to :func:`load_speeds`."""
    speeds = load_speeds() if speeds is None else list(speeds)
    by_name = _speed_index(speeds, batch)
    rows = []
    for i, e in enumerate(entries, 1):
        s = by_name.get(e.name)
        rows.append((f"{i}.", e.name, e.model_architecture, _num(e.coco_ap, ".1f") + " AP",
                     f"{s.latency_ms:.1f} ms" if s else "not measured",
                     "COCO checkpoint" if e.has_coco_checkpoint else
                     "no COCO checkpoint (AP of a related model; ImageNet backbone init)"))
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(6)]
    return "\n".join("  ".join(c.rjust(w) if i in (0, 3, 4) else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                     for r in rows)


def describe(entry: ZooEntry, speeds: Iterable[SpeedRecord] | None = None, batch: int = 1) -> str:
    """One line saying ``entry``'s AP, its latency at ``batch`` and the machine that latency was
    measured on (this one or another), e.g. for `od zoo select`. When the detectors' figures come
    from different machines, a second sentence says so, since their latencies then compare
    machines as much as models. ``speeds`` defaults to :func:`load_speeds`."""
    speeds = load_speeds() if speeds is None else list(speeds)
    by_name = _speed_index(speeds, batch)
    s = by_name.get(entry.name)
    if s is None:
        line = f"{entry.name}: {ap_source(entry)}, speed not measured at batch {batch}"
    else:
        where = ("this machine" if s.origin == HERE else
                 "another machine (shipped reference figures; `od zoo benchmark "
                 f"{entry.name}` measures it here)" if s.origin == ELSEWHERE else "")
        line = (f"{entry.name}: {ap_source(entry)}, {s.latency_ms:.1f} ms/image at batch "
                f"{batch}, measured on {s.machine}" + (f" = {where}" if where else ""))
    origins = {r.origin for r in by_name.values()}
    if HERE in origins and ELSEWHERE in origins:
        here = sorted(n for n, r in by_name.items() if r.origin == HERE)
        line += (f". Note: only {', '.join(here)} measured on this machine; the other latencies "
                 "are from another machine, so the comparison mixes machines (run `od zoo "
                 "benchmark` to measure all here)")
    return line


# ---- the table ---------------------------------------------------------------------------------
def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def list_table(table: Sequence[ZooEntry] = ZOO,
               speeds: Iterable[SpeedRecord] | None = None) -> str:
    """A plain-text table: name, kind, input (pixels), COCO AP (%, or ImageNet top-1 for
    backbones, marked 'top1'), params (M), GFLOPs, latency (ms/image, batch 1), throughput
    (images/s, batch 8), and the machine the speed was measured on. ``speeds`` defaults to
    :func:`load_speeds`. Raises ZooError on a malformed speed file."""
    speeds = load_speeds() if speeds is None else list(speeds)
    b1 = {r.name: r for r in speeds if r.batch == 1}
    b8 = {r.name: r for r in speeds if r.batch == 8}
    head = ("name", "arch", "kind", "input", "COCO AP", "params M", "GFLOPs", "ms (b1)",
            "img/s (b8)", "measured on")
    rows = [head]
    for e in table:
        s1, s8 = b1.get(e.name), b8.get(e.name)
        ap = _num(e.coco_ap, ".1f") if e.coco_ap is not None else (
            f"{e.imagenet_top1:.1f} top1" if e.imagenet_top1 is not None else "-")
        if e.arch_only and e.coco_ap is not None:
            ap += "*"
        lat = _num(s1.latency_ms, ".1f") if s1 and s1.measured else (
            "n/a" if s1 else "-")
        ips = _num(s8.images_per_s, ".2f") if s8 and s8.measured else ("n/a" if s8 else "-")
        where = (s1 or s8).machine if (s1 or s8) else ""
        if where and (s1 or s8).origin == HERE:
            where += " [this machine]"
        kind = "detector, NO COCO CKPT" if e.arch_only else e.init
        arch = e.model_architecture if e.is_detector else "-"
        rows.append((e.name, arch, kind, str(e.input_size), ap, _num(e.params_m, "g"),
                     _num(e.gflops, "g"), lat, ips, where))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    right = {3, 4, 5, 6, 7, 8}
    lines = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                       for i, (c, w) in enumerate(zip(r, widths))).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    loaded = sorted({r.name for r in speeds if r.measured and "MACHINE LOADED" in r.note})
    if loaded:
        lines += ["", "measured on a loaded machine (upper bounds; the record's note gives a "
                      f"RetinaNet measured under the same load): {', '.join(loaded)}"]
    notes = sorted({f"{r.name}: {r.note}" for r in speeds if not r.measured and r.note})
    if notes:
        lines += ["", "not measured (n/a):"] + [f"  {n}" for n in notes]
    arch_only = [e for e in table if e.arch_only]
    if arch_only:
        lines += ["", "NO COCO CKPT: no COCO checkpoint published (Model Garden has none for "
                      "Faster R-CNN); `model=NAME` fine-tunes from the ImageNet backbone in its "
                      "url. Its AP (*) is not its own:"]
        lines += [f"  {e.name}: {e.ap_note or 'no published COCO AP'}" for e in arch_only]
    lines += ["", "AP: COCO val2017 box AP published by Model Garden; speed: measured by "
                  "`od zoo benchmark` (random weights, inference incl. NMS, float32)."]
    return "\n".join(lines)
