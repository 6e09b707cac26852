"""The run and export folder layout: file names, and which checkpoint of a run to use.

A run folder (``od train --model-dir RUN``)::

    RUN/pipeline.yaml          the resolved pipeline config (PIPELINE_FILE)
    RUN/label_map.pbtxt        the label map it was trained with (LABEL_MAP_FILE)
    RUN/ckpt-N.*, checkpoint   TensorFlow checkpoints and their state file
    RUN/best/                  the best evaluation's checkpoint and metrics.json (BEST_DIR)
    RUN/schedule.json          a learning-rate schedule extended on resume (SCHEDULE_FILE)
    RUN/train/, RUN/eval/      TensorBoard events, history.jsonl, evaluation outputs
    RUN/train.log              library logs (od.logs)

An export folder (``od export --out EXPORT``)::

    EXPORT/saved_model/        SavedModel (SAVED_MODEL_DIR), EXPORT/frozen_inference_graph.pb,
    EXPORT/model*.tflite       TFLite files (od.tflite.FILES), EXPORT/label_map.pbtxt

Every module that reads or writes these names takes them from here.
"""
from __future__ import annotations

import os
from pathlib import Path

from od.errors import CheckpointError

PIPELINE_FILE = "pipeline.yaml"
LABEL_MAP_FILE = "label_map.pbtxt"
BEST_DIR = "best"
SCHEDULE_FILE = "schedule.json"
EVAL_DIR = "eval"
SAVED_MODEL_DIR = "saved_model"
FROZEN_GRAPH_FILE = "frozen_inference_graph.pb"  # the OD API's name


def label_map_path(folder: str | os.PathLike) -> Path:
    """``FOLDER/label_map.pbtxt`` (a run, an export, or a converted data folder)."""
    return Path(folder) / LABEL_MAP_FILE


def is_run(folder: str | os.PathLike) -> bool:
    """True for a run folder of ``od train`` (it has ``pipeline.yaml``) that is not an export."""
    folder = Path(folder)
    return (folder / PIPELINE_FILE).is_file() and not (folder / SAVED_MODEL_DIR).is_dir()


def latest_checkpoint(model_dir: str | os.PathLike) -> str:
    """The newest checkpoint prefix in ``model_dir``. Raises CheckpointError if there is none."""
    import tensorflow as tf

    ckpt = tf.train.latest_checkpoint(str(model_dir))
    if not ckpt:
        raise CheckpointError(f"{model_dir}: no checkpoint found; train first (`od train "
                              f"--model-dir {model_dir}`).")
    return ckpt


def run_checkpoint(model_dir: str | os.PathLike, which: str | None = None) -> str:
    """The checkpoint of a run folder that ``which`` names.

    ``best``: ``RUN/best/`` (the best evaluation of ``od train``, see ``eval.best_metric``);
    ``latest``: the newest checkpoint in ``RUN``; a checkpoint prefix or folder: that one;
    None or '': best when ``RUN/best/`` exists, else latest.
    Raises:
      CheckpointError: the named checkpoint does not exist.
    """
    import tensorflow as tf

    best = Path(model_dir) / BEST_DIR
    if not which:
        which = "best" if tf.train.latest_checkpoint(str(best)) else "latest"
    if which == "latest":
        return latest_checkpoint(model_dir)
    if which == "best":
        ckpt = tf.train.latest_checkpoint(str(best))
        if not ckpt:
            raise CheckpointError(f"{model_dir}: no best checkpoint ({best} is missing); it is "
                                  "written when training evaluates (train.eval_every > 0). Use "
                                  "--checkpoint latest.")
        return ckpt
    if Path(which).is_dir() and tf.train.latest_checkpoint(which):
        return tf.train.latest_checkpoint(which)
    if not tf.io.gfile.exists(which + ".index"):
        raise CheckpointError(f"--checkpoint {which!r}: not best, latest, a checkpoint prefix "
                              "(PREFIX.index) or a folder with a 'checkpoint' file.")
    return which
