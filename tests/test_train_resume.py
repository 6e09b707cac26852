"""od/train_resume.py: a killed run's temporaries are cleaned, and more steps continue the
learning-rate schedule (end to end: tests/test_train_control.py)."""
import pytest

from od import config as config_lib, experiment
from od import train_resume
from tests.conftest import CONFIGS


def test_clean_temp_removes_only_od_temporaries(tmp_path):
    (tmp_path / "ckpt-4_temp").mkdir()
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / ".best.tmp-123").write_text("x")
    for keep in ("ckpt-4.index", "notes.txt", "ckpt-4_temp.txt"):
        (tmp_path / keep).write_text("x")
    assert sorted(train_resume.clean_temp(tmp_path)) == [".best.tmp-123", "ckpt-4_temp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-4.index", "ckpt-4_temp.txt",
                                                          "eval", "notes.txt"]
    assert train_resume.clean_temp(tmp_path / "missing") == []


def test_checkpoint_step():
    assert train_resume.checkpoint_step("/r/ckpt-120") == 120
    assert train_resume.checkpoint_step(None) == 0 and train_resume.checkpoint_step("/r/x") == 0


def test_more_steps_continue_from_the_learning_rate_reached(tmp_path):
    def cfg(steps):
        return config_lib.load(CONFIGS / "quickstart_shapes_128.yaml",
                               overrides=[f"train.steps={steps}", "train.warmup_steps=0"])
    old, new = cfg(100), cfg(300)
    lines = []
    assert train_resume.extend_schedule(old, old, tmp_path, 50, log=lines.append) is None
    s = train_resume.extend_schedule(old, new, tmp_path, 50, log=lines.append)
    assert (s["offset"], s["decay_steps"], s["previous_steps"]) == (50, 250, 100)
    assert 0 < s["initial_learning_rate"] < old.train.learning_rate
    assert train_resume.read_schedule(tmp_path) == s and "continuing from step 50" in lines[0]
    params = train_resume.apply_schedule(experiment.to_experiment(new), s)
    assert train_resume.learning_rate_at(params, 50) == pytest.approx(s["initial_learning_rate"],
                                                                      rel=1e-5)
    assert train_resume.learning_rate_at(params, 300) == pytest.approx(0.0, abs=1e-9)
    ended = train_resume.extend_schedule(old, new, tmp_path / "b", 100, log=lines.append,
                                         write=False)
    assert ended["initial_learning_rate"] == pytest.approx(0.0, abs=1e-9)
    assert "change nothing" in lines[-1] and not (tmp_path / "b").exists()
