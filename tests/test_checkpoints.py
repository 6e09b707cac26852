"""od/checkpoints.py: every kind of checkpoint source (folder, prefix, tarball, URL) becomes one
prefix."""
import tarfile

import pytest

from od import checkpoints
from od.errors import CheckpointError

from test_layout import _save


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


def test_prefix_in_reads_the_state_file_else_the_single_index(tmp_path):
    sub = tmp_path / "m" / "sub"
    sub.mkdir(parents=True)
    for name in ("ckpt-1.index", "ckpt-2.index"):
        (sub / name).write_bytes(b"")
    with pytest.raises(CheckpointError, match="cannot tell the checkpoint"):
        checkpoints.prefix_in(tmp_path / "m")
    (sub / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    assert checkpoints.prefix_in(tmp_path / "m") == str(sub / "ckpt-1")  # searched recursively
    assert checkpoints.prefix_in(sub / "ckpt-2") == str(sub / "ckpt-2")  # a prefix as given
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "model.ckpt.index").write_bytes(b"")
    assert checkpoints.prefix_in(tmp_path / "one") == str(tmp_path / "one" / "model.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoints.prefix_in(tmp_path / "nope")
