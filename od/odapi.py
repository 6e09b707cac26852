"""Object Detection API ``pipeline.config`` → `od` pipeline config, with a mapping table.

An OD API user brings a ``pipeline.config`` (protobuf text format), a ``label_map.pbtxt`` and
TFRecords. :func:`import_config` reads the file (:mod:`od.odapi_schema`: protobuf's own text
format parser on the subset schema), maps every field that has a Model Garden counterpart to an
`od` key, and returns the config with a table: each field of the file → ``mapped`` (to which key),
``approximated`` (how) or ``ignored`` (why), plus rows for settings implied by a field's absence
(e.g. no ``random_horizontal_flip`` → ``data.hflip=false``).

Architectures: an SSD with FPN is RetinaNet and Faster R-CNN is od's Faster R-CNN
(:mod:`od.fasterrcnn`, always with an FPN); both map directly. An architecture `od` cannot build
(CenterNet, EfficientDet's BiFPN, SSD without FPN, an unknown backbone) maps to the nearest `od`
detector (RetinaNet with the same backbone family and an FPN) only with ``nearest=True``
(``--nearest``); otherwise it is a ConfigError naming the choices.

Placeholders: the API's sample files hold ``PATH_TO_BE_CONFIGURED/...`` paths. Overrides fill
them (``data.train=DIR_OR_GLOB data.val=... data.label_map=... train.fine_tune_checkpoint=...``);
a placeholder left for training is a ConfigError naming the file's field and the override.
``od config import`` keeps them in the YAML it writes, for the user to edit.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from google.protobuf import text_format

from od import atomic
from od import config as config_lib
from od import odapi_schema
from od.errors import ConfigError
from od.odapi_model import _model
from od.odapi_train import _inputs, _train

PLACEHOLDER = "PATH_TO_BE_CONFIGURED"
TABLE_FILE = "odapi_mapping.txt"

_TOP = re.compile(r"^\s*(model|train_config|train_input_reader|eval_config|eval_input_reader|"
                  r"graph_rewriter)\s*:?\s*[{<]", re.M)

#: Why a field `od` does not map is ignored: the first fragment found in its path decides.
_IGNORED = (
    ("box_coder", "Model Garden's RetinaNet box coding is fixed"),
    ("matcher", "Model Garden labels anchors by IoU itself (0.5 positive, 0.4 negative)"),
    ("similarity_calculator", "IoU, as Model Garden's anchor labeler"),
    ("faster_rcnn.", "a Faster R-CNN detail: Model Garden's defaults (RPN, ROI sampling, "
                     "1000 proposals, box head) are used"),
    ("initializer", "Model Garden's own weight initialisers"),
    ("batch_norm", "Model Garden's batch norm settings"), ("batchnorm", "Model Garden's batch norm"),
    ("localization_loss", "Model Garden's box loss (Huber on its box encoding)"),
    ("_weight", "Model Garden's loss weights (box loss weight 50)"),
    ("normalize_", "Model Garden normalises the loss by the number of positive anchors"),
    ("encode_background_as_zeros", "sigmoid class scores, as Model Garden's RetinaNet"),
    ("dropout", "RetinaNet's head has no dropout"),
    ("kernel_size", "3x3 head convolutions in Model Garden"),
    ("class_prediction_bias_init", "Model Garden's prior-probability bias initialisation"),
    ("box_code_size", "4 box coordinates, as in od"),
    ("min_depth", "a TF1 feature-extractor depth floor; not used by Model Garden backbones"),
    ("max_depth", "the head width is model.head_filters"),
    ("override_base_feature_extractor_hyperparams", "Model Garden's backbone settings"),
    ("sync_replicas", "TF1 parameter-server setting; od uses tf.distribute (runtime.strategy)"),
    ("replicas_to_aggregate", "TF1 parameter-server setting; od uses runtime.strategy"),
    ("startup_delay_steps", "TF1 parameter-server setting; od uses runtime.strategy"),
    ("fine_tune_checkpoint_version", "od reads TF2 (object-based) checkpoints only"),
    ("max_number_of_boxes", "Model Garden pads ground truth to 100 boxes per image"),
    ("unpad_groundtruth_tensors", "Model Garden pads ground truth itself"),
    ("use_bfloat16", "precision is runtime.mixed_precision (set it for the machine you use)"),
    ("use_static", "a TPU implementation detail"), ("use_matmul", "a TPU implementation detail"),
    ("eval_config.", "od evaluates with pycocotools COCO metrics (od evaluate)"),
    ("eval_input_reader.", "od evaluates every record of data.val once, in order"),
    ("data_augmentation_options.", "Model Garden's RetinaNet parser has flip and scale jitter "
                                   "only"),
    ("max_detections_per_class", "Model Garden's NMS caps the total (model.max_detections)"),
    ("freeze_variables", "regular expressions over the OD API's TF1 variable names, which Model "
                         "Garden's layers do not share: set train.freeze_at=K (the backbone's "
                         "layers to stride 2^K) or train.freeze_backbone=true"),
    ("update_trainable_variables", "regular expressions over the OD API's TF1 variable names, "
                                   "which Model Garden's layers do not share: set "
                                   "train.freeze_at=K or train.freeze_backbone=true"),
)


@dataclass(frozen=True)
class Row:
    """One line of the mapping table. ``status``: mapped, approximated or ignored."""

    field: str      # dotted path in the pipeline.config, or '(absent) ...'
    value: str      # as written in the file
    status: str
    target: str     # the od key(s) set, '' when ignored
    note: str       # how (approximated) or why (ignored)


@dataclass(frozen=True)
class Imported:
    """An imported pipeline.config: the od config, the mapping table and where it came from."""

    cfg: config_lib.PipelineConfig
    rows: tuple
    source: str
    architecture: str

    def counts(self) -> dict:
        return {s: sum(r.status == s for r in self.rows) for s in
                ("mapped", "approximated", "ignored")}

    def table(self) -> str:
        """The mapping table as aligned text, with a summary line."""
        w = max(len(r.field) for r in self.rows)
        lines = [f"OD API pipeline.config {self.source} ({self.architecture}) → od:",
                 f"{'field'.ljust(w)}  {'value':<18} {'status':<12} od key / how / why"]
        for r in self.rows:
            target = f"{r.target}: {r.note}" if r.target and r.note else r.target or r.note
            lines.append(f"{r.field.ljust(w)}  {r.value[:18]:<18} {r.status:<12} {target}")
        c = self.counts()
        lines.append(f"{len(self.rows)} rows: {c['mapped']} mapped, {c['approximated']} "
                     f"approximated, {c['ignored']} ignored.")
        return "\n".join(lines)

    def save_table(self, folder: str | os.PathLike, name: str = TABLE_FILE) -> Path:
        """Write the table as ``folder/<name>`` (text) and ``.json`` beside it, atomically."""
        path = Path(folder) / name
        atomic.write_json(path.with_suffix(".json"), {
            "source": self.source, "architecture": self.architecture, "counts": self.counts(),
            "rows": [r.__dict__ for r in self.rows]})
        return atomic.write_text(path, self.table() + "\n")


def is_pipeline_config(path: str | os.PathLike) -> bool:
    """True if ``path`` holds an OD API pipeline config (by content: a top-level ``model {`` or
    ``train_config {`` block, and not a YAML mapping), whatever its extension."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM (Windows Notepad) is no text
    except (OSError, UnicodeDecodeError):
        return False
    if not _TOP.search(text):
        return False
    try:
        return not isinstance(yaml.safe_load(text), dict)
    except yaml.YAMLError:
        return True


def _unquote(v: str) -> str:
    return v[1:-1] if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"" else v


class _Mapper:
    def __init__(self, source: str):
        self.source = source
        self.values: dict = {}      # od key → value
        self.rows: dict = {}        # file path → Row (value filled in later)
        self.absent: list = []

    def set(self, path: str, key: str, value, status: str = "mapped", note: str = "") -> None:
        value = _tidy(value)
        self.values[key] = value
        shown = ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        target = f"{key}={shown}"
        old = self.rows.get(path)
        if old:  # a field that sets two keys
            target, status = f"{old.target}, {target}", max(old.status, status, key=_rank)
            note = "; ".join(n for n in (old.note, note) if n)
        self.rows[path] = Row(path, "", status, target, note)

    def note(self, path: str, status: str, note: str) -> None:
        self.rows[path] = Row(path, "", status, "", note)

    def implied(self, what: str, key: str, value, note: str) -> None:
        self.values[key] = value
        self.absent.append(Row(f"(absent) {what}", "", "mapped", f"{key}={value}", note))


def _tidy(value):
    """float32 fields of the file back to the decimals written (0.04, not 0.03999999910)."""
    if isinstance(value, float):
        return float(f"{value:.7g}")
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def _rank(status: str) -> int:
    return ("mapped", "approximated", "ignored").index(status)


def import_config(path: str | os.PathLike, *, nearest: bool = False, extra=(), overrides=(),
                  placeholders: str = "error") -> Imported:
    """Read an OD API ``pipeline.config`` and map it to an od PipelineConfig.

    Args:
      path: the pipeline.config (protobuf text format, ``TrainEvalPipelineConfig``).
      nearest: map an architecture od cannot build to the nearest od detector.
      extra: od YAML files layered on the result; overrides: ``section.key=value`` strings
        (and ``model=<zoo name>``), applied last, as in :func:`od.config.load`.
      placeholders: ``'error'``: a ``PATH_TO_BE_CONFIGURED`` value left after the overrides is a
        ConfigError; ``'keep'``: kept (``od config import`` writes them for the user to edit).
    Returns:
      Imported: the checked config and the mapping table.
    Raises:
      ConfigError: unreadable, binary or malformed file (the message gives line:column), an
        architecture without counterpart (and not ``nearest``), a placeholder left, a negative
        num_classes or one disagreeing with the label map (absent or 0: from the label map), an
        image size < 1, a value od's config refuses (naming the od key).
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM (Windows Notepad) is no text
    except OSError as e:
        raise ConfigError(f"cannot read pipeline config {source}: {e.strerror or e}.") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{source}: not a text file (byte {e.start} is not UTF-8); give the "
                          "OD API pipeline.config (protobuf text format).") from None
    try:
        msg = odapi_schema.parse(text)
        written = odapi_schema.field_paths(text)
    except text_format.ParseError as e:
        raise ConfigError(f"{source}: not a valid OD API pipeline.config ({e}).") from None
    except RecursionError:
        raise ConfigError(f"{source}: blocks nested too deeply to be an OD API "
                          "pipeline.config.") from None
    mp = _Mapper(source)
    desc = _model(msg, mp, nearest)
    _train(msg, mp)
    _inputs(msg, mp)
    cfg = config_lib.PipelineConfig()
    for key, value in mp.values.items():
        cfg = config_lib.set_key(cfg, key, value, source)
    for p in extra:
        cfg = config_lib._merge(cfg, config_lib._read_yaml(Path(p)), str(p))
    for text_ in overrides:
        key, value = config_lib.parse_override(text_)
        if key == "model":
            cfg = config_lib.apply_zoo_model(cfg, value, f"override {text_!r}")
        else:
            cfg = config_lib.set_key(cfg, key, value, f"override {text_!r}")
    rows = _table(written, mp)
    if placeholders == "error":
        _check_placeholders(cfg, rows, source)
    _check_num_classes(cfg, msg, source)
    return Imported(config_lib.check(cfg, source), rows, source, desc)


def _table(written, mp: _Mapper) -> tuple:
    seen: dict = {}
    for path, value in written:
        seen.setdefault(path, []).append(_unquote(value))
    rows = []
    for path, values in seen.items():
        value = ", ".join(values)
        row = mp.rows.get(path) or next(
            (Row(path, "", "ignored", "", why) for frag, why in _IGNORED if frag in path),
            Row(path, "", "ignored", "", "no counterpart in od's config (Model Garden default)"))
        if PLACEHOLDER in value and row.target:
            row = replace(row, note=f"placeholder: set {row.target.split('=')[0]}=... "
                                    "as an override")
        rows.append(replace(row, value=value))
    return tuple(rows) + tuple(mp.absent)


def _check_placeholders(cfg, rows, source: str) -> None:
    left = []
    for key in ("data.train", "data.val", "data.label_map", "train.fine_tune_checkpoint"):
        section, name = key.split(".")
        if PLACEHOLDER in getattr(getattr(cfg, section), name):
            field = next((r.field for r in rows if r.target.startswith(key + "=")), key)
            left.append(f"{field} ({key}=...)")
    if left:
        raise ConfigError(f"{source}: the OD API placeholder {PLACEHOLDER} is still in "
                          f"{'; '.join(left)}. Give real paths as overrides, e.g. "
                          "data.train=DATA_DIR_OR_GLOB data.val= data.label_map=label_map.pbtxt "
                          "train.fine_tune_checkpoint= (empty: random init), or edit the file.")


def _check_num_classes(cfg, msg, source: str) -> None:
    from od import label_map as label_map_lib

    lm_path = cfg.data.label_map
    if not cfg.model.num_classes or not lm_path or not os.path.isfile(lm_path):
        return
    lm = label_map_lib.read(lm_path)
    if cfg.model.num_classes != lm.max_id + 1:
        raise ConfigError(
            f"{source}: num_classes = {cfg.model.num_classes - 1} but the label map {lm_path} has "
            f"{len(lm.items)} classes with ids up to {lm.max_id}: set num_classes: {lm.max_id} "
            "in the file, or the override model.num_classes=0 to take it from the label map.")


def write_yaml(imported: Imported, out: str | os.PathLike) -> Path:
    """Write the imported config as an od YAML (refusing to overwrite) and the table beside it
    as ``<out stem>.mapping.txt`` and ``.mapping.json``. Raises ConfigError if any of the three
    exists."""
    out = Path(out)
    table = out.parent / (out.stem + ".mapping.txt")
    for path in (out, table, table.with_suffix(".json")):
        if os.path.lexists(path):
            raise ConfigError(f"{path} exists; od config import does not overwrite files. "
                              "Choose another --out or remove it.")
    config_lib.save(imported.cfg, out)
    imported.save_table(out.parent, out.stem + ".mapping.txt")
    return out
