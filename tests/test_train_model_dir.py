"""``od train --model-dir``: never the training data, never among a user's files; an od run
folder resumes, and a fresh folder holding only od's own log is a fresh run."""
import pytest

from od import config as config_lib, train
from od.outputs import OutputError
from tests.conftest import CONFIGS, TINY


def _cfg(data):
    return config_lib.load(CONFIGS / "quickstart_shapes_128.yaml",
                           overrides=[f"data.train={data}", *TINY])


@pytest.mark.parametrize("where, message", [
    (lambda data: data, "is the input"),
    (lambda data: data / "run", "lies inside the input"),
])
def test_the_data_folder_is_refused(tiny_run, where, message):
    root, _ = tiny_run
    data = root / "data"
    before = sorted(p.name for p in data.iterdir())
    with pytest.raises(OutputError, match=f"--model-dir .*{message}"):
        train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", where(data),
                        overrides=[f"data.train={data}", *TINY], progress=False)
    assert sorted(p.name for p in data.iterdir()) == before


def test_a_users_folder_is_refused_and_left_alone(tiny_run, tmp_path):
    root, _ = tiny_run
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "label_map.pbtxt").write_text("my own notes\n")
    (mine / "pipeline.yaml").write_text("model:\n  input_size: 64\n")  # a config of theirs
    with pytest.raises(OutputError, match="not a run of `od train`.*new or empty folder"):
        train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", mine,
                        overrides=[f"data.train={root / 'data'}", *TINY], progress=False)
    assert sorted(p.name for p in mine.iterdir()) == ["label_map.pbtxt", "pipeline.yaml"]
    assert (mine / "label_map.pbtxt").read_text() == "my own notes\n"


def test_an_od_run_empty_folder_or_own_log_are_accepted(tiny_run, tmp_path):
    root, _ = tiny_run
    cfg = _cfg(root / "data")
    train.check_model_dir(root / "run", cfg)  # a run of od train: resumed
    (tmp_path / "empty").mkdir()
    train.check_model_dir(tmp_path / "empty", cfg)
    (tmp_path / "failed").mkdir()  # a first attempt that failed after logging
    (tmp_path / "failed" / train.LOG_FILE).write_text("2026 INFO absl: ...\n")
    train.check_model_dir(tmp_path / "failed", cfg)
    train.check_model_dir(tmp_path / "new" / "run", cfg)


def test_a_non_chief_worker_checks_the_data_only(tiny_run, tmp_path):
    # in a multi-worker cluster the chief may be filling RUN while another worker starts
    root, _ = tiny_run
    cfg = _cfg(root / "data")
    (tmp_path / "filling").mkdir()
    (tmp_path / "filling" / "ckpt-0.index").write_text("the chief's")
    train.check_model_dir(tmp_path / "filling", cfg, writes=False)
    with pytest.raises(OutputError, match="not a run of `od train`"):
        train.check_model_dir(tmp_path / "filling", cfg)
    with pytest.raises(OutputError, match="is the input"):
        train.check_model_dir(root / "data", cfg, writes=False)
