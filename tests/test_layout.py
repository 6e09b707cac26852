"""od/layout.py: run and export folder names, which checkpoint of a run (checkpoint sources:
tests/test_checkpoints.py)."""
import pytest

from od import layout
from od.errors import CheckpointError


def _save(folder, n=1):
    import tensorflow as tf
    ckpt = tf.train.Checkpoint(v=tf.Variable([1.0, 2.0]))
    for _ in range(n):
        prefix = ckpt.save(str(folder / "ckpt"))
    return prefix


def test_names_and_run_detection(tmp_path):
    assert layout.label_map_path(tmp_path) == tmp_path / "label_map.pbtxt"
    assert not layout.is_run(tmp_path)
    (tmp_path / layout.PIPELINE_FILE).write_text("model: {}\n")
    assert layout.is_run(tmp_path)
    (tmp_path / layout.SAVED_MODEL_DIR).mkdir()       # an export folder also has pipeline.yaml
    assert not layout.is_run(tmp_path)


def test_run_checkpoint_best_latest_and_path(tmp_path):
    run = tmp_path / "run"
    latest = _save(run, 2)
    with pytest.raises(CheckpointError, match="no best checkpoint"):
        layout.run_checkpoint(run, "best")
    assert layout.run_checkpoint(run) == latest == layout.run_checkpoint(run, "latest")
    best = _save(run / layout.BEST_DIR)
    assert layout.run_checkpoint(run) == best          # default: best when RUN/best/ exists
    assert layout.run_checkpoint(run, "latest") == latest
    assert layout.run_checkpoint(run, str(run / layout.BEST_DIR)) == best
    assert layout.run_checkpoint(run, latest) == latest
    with pytest.raises(CheckpointError, match="not best, latest"):
        layout.run_checkpoint(run, str(tmp_path / "nope"))
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        layout.latest_checkpoint(tmp_path / "empty")


