"""od/layout.py (run and export folder names, which checkpoint of a run) and od/checkpoints.py
(every kind of checkpoint source becomes one prefix)."""
import tarfile

import pytest

from od import checkpoints, layout
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


def test_checkpoint_sources(tmp_path):
    prefix = _save(tmp_path / "run", 2)
    assert checkpoints.resolve("") == ""
    assert checkpoints.resolve(tmp_path / "run") == prefix          # folder → its state file
    assert checkpoints.resolve(prefix) == prefix                    # prefix as given
    with pytest.raises(CheckpointError, match="neither a checkpoint folder"):
        checkpoints.resolve(tmp_path / "missing", what="train.fine_tune_checkpoint")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no TensorFlow checkpoint"):
        checkpoints.resolve(tmp_path / "empty")


def test_checkpoint_source_tarball_and_file_url(tmp_path, monkeypatch):
    monkeypatch.setenv("OD_CACHE_DIR", str(tmp_path / "cache"))
    prefix = _save(tmp_path / "src" / "model", 1)
    tar = tmp_path / "model.tar.gz"
    with tarfile.open(tar, "w:gz") as t:
        t.add(tmp_path / "src" / "model", arcname="model")
    got = checkpoints.resolve(tar, progress=False)
    assert got.endswith("model/ckpt-1") and str(tmp_path / "cache") in got
    assert checkpoints.resolve(tar.as_uri(), progress=False).endswith("model/ckpt-1")
    assert prefix.endswith("ckpt-1")
