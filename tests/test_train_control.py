"""Training a person can leave running (issue 11) and training's crash safety (issue 8): a quiet
console, best checkpoint + early stop + history, stops by SIGTERM / SIGKILL and resume, extending
the schedule, config errors before training, recipe options. Real `od train` subprocesses on a
tiny generated dataset (64 px model, a few steps)."""
import json
import re
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from od import config as config_lib, experiment
from od import train
from od.errors import AnnotationError, ConfigError
from tests.conftest import CONFIGS, ROOT, TINY

QUICK = str(CONFIGS / "quickstart_shapes_128.yaml")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """16 generated 80x64 images converted with a 0.5/0.25/0.25 split."""
    from od import synthetic
    from od.data.convert import convert

    root = tmp_path_factory.mktemp("ctl")
    synthetic.generate(root / "raw", 16, size=(80, 64), seed=5)
    convert(root / "raw" / "annotations", root / "data", format="voc",
            images=root / "raw" / "images", split=(0.5, 0.25, 0.25), workers=1)
    return root / "data"


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


def _od(*args, **kw):
    return subprocess.run([sys.executable, "-m", "od.cli", *map(str, args)], cwd=ROOT,
                          env=kw.pop("env", _env()), capture_output=True, text=True,
                          timeout=kw.pop("timeout", 600), **kw)


def _train_args(data, run, *more):
    return ["train", "--config", QUICK, "--model-dir", run, "--no-progress",
            f"data.train={data}", *TINY, *more]


def _wait_for(path, proc, seconds=400):
    end = time.time() + seconds
    while time.time() < end and proc.poll() is None:
        if path.exists():
            return True
        time.sleep(0.5)
    return path.exists()


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_quiet_console_best_checkpoint_history_and_export(data, tmp_path):
    run = tmp_path / "run"
    t = _od(*_train_args(data, run, "train.eval_every=2"))
    assert t.returncode == 0, t.stderr[-2000:]
    x = _od("export", "--model-dir", run, "--out", tmp_path / "exp", "--checkpoint", "best")
    assert x.returncode == 0, x.stderr[-2000:]
    for out in (t.stdout + t.stderr, x.stdout + x.stderr):
        assert "WARNING:tensorflow" not in out and "np.float32(" not in out
        assert "Skipping full serialization" not in out and "train | step" not in out
    assert "[eval @ step 2]" in t.stdout and "[eval @ step 4]" in t.stdout
    assert "train | step" in (run / "train.log").read_text()  # Model Garden's lines kept there
    history = _rows(run / "eval" / "history.jsonl")
    assert [r["step"] for r in history] == [2, 4] and "AP50" in history[0]
    assert (run / "eval" / "history.png").stat().st_size > 1000
    best = json.loads((run / "best" / "metrics.json").read_text())
    assert best["metric"] == "AP50" and best["step"] in (2, 4)
    assert (run / "best" / f"ckpt-{best['step']}.index").is_file()
    check = json.loads((tmp_path / "exp" / "export_check.json").read_text())
    assert "/best/ckpt-" in check["checkpoint"]
    assert [r["step"] for r in _rows(run / "train" / "history.jsonl")] == [2, 4]


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_and_cleans_temp(data, tmp_path):
    run = tmp_path / "run"
    args = _train_args(data, run, "train.steps=12")
    proc = subprocess.Popen([sys.executable, "-m", "od.cli", *map(str, args)], cwd=ROOT,
                            env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _wait_for(run / "checkpoint", proc), "no first checkpoint"  # state file: last
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    import tensorflow as tf

    killed_at = int(tf.train.latest_checkpoint(str(run)).rsplit("-", 1)[1])
    assert 2 <= killed_at < 12 and proc.returncode == -signal.SIGKILL
    (run / "ckpt-99_temp").mkdir()  # what a kill during a save leaves (TensorFlow's name)
    (run / "notes_temp").mkdir()  # a user's folder: not ours, kept
    again = _od(*args)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "ckpt-99_temp" in again.stdout and not (run / "ckpt-99_temp").exists()
    assert (run / "notes_temp").is_dir()
    assert json.loads((run / "train_result.json").read_text())["step"] == 12
    steps = [r["step"] for r in _rows(run / "train" / "history.jsonl")]
    assert steps == list(range(2, 13, 2)), steps  # resumed after killed_at, no step twice


@pytest.mark.slow
def test_sigterm_saves_exits_143_and_more_steps_continue_the_learning_rate(data, tmp_path):
    run = tmp_path / "run"
    args = _train_args(data, run, "train.steps=30", "train.checkpoint_every=10",
                       "train.warmup_steps=2")
    proc = subprocess.Popen([sys.executable, "-m", "od.cli", *map(str, args)], cwd=ROOT,
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_for(run / "train" / "history.jsonl", proc), "no first loop"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM at step" in err and "Resume with the same command" in err
    stopped = int(err.split("at step ")[1].split(";")[0])
    assert 2 <= stopped < 30 and stopped % 2 == 0
    assert (run / f"ckpt-{stopped}.index").is_file()  # saved at the step it stopped
    before = {r["step"]: r["learning_rate"] for r in _rows(run / "train" / "history.jsonl")}
    new_end = stopped + 6
    again = _od(*args[:-3], f"train.steps={new_end}", "train.checkpoint_every=10",
                "train.warmup_steps=2")
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"continuing from step {stopped}" in again.stdout
    rows = _rows(run / "train" / "history.jsonl")
    after = {r["step"]: r["learning_rate"] for r in rows if r["step"] > stopped}
    assert sorted(after) == list(range(stopped + 2, new_end + 1, 2))
    lr0 = before[stopped]
    assert lr0 > 0
    for step, lr in after.items():  # cosine from lr0 at the resume step to 0 at the new end
        expected = lr0 * 0.5 * (1 + np.cos(np.pi * (step - stopped) / (new_end - stopped)))
        assert lr == pytest.approx(expected, rel=1e-4, abs=1e-7), (step, lr, expected)
    assert after[stopped + 2] < lr0 and after[new_end] == pytest.approx(0, abs=1e-7)


def _abort(message):
    raise _Abort(message)


class _Abort(Exception):
    pass


@pytest.mark.parametrize("override, match", [
    ("eval.best_metric=mAP", "eval.best_metric = 'mAP'; choose one of AP, AP50"),
    ("train.early_stop_patience=3", "needs periodic evaluations: set train.eval_every"),
    ("runtime.strategy=multi_worker", "needs the TF_CONFIG environment variable"),
])
def test_bad_training_configs_are_config_errors_before_training(data, tmp_path, override, match,
                                                                monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match=match):
        train.fine_tune(QUICK, tmp_path / "r", overrides=[f"data.train={data}", *TINY, override],
                        progress=False, log=_abort)
    assert not (tmp_path / "r").exists()


def test_override_errors_name_the_override():
    with pytest.raises(ConfigError, match=r"^override 'train.steps=-5': train.steps = -5"):
        config_lib.load(QUICK, overrides=["train.steps=-5"])


def test_corrupt_training_shard_is_named_before_training(data, tmp_path):
    import shutil

    bad = tmp_path / "data"
    shutil.copytree(data, bad)
    shard = next(bad.glob("train-*.tfrecord"))
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(AnnotationError, match=re.escape(str(shard)) + ".*corrupt"):
        train.fine_tune(QUICK, tmp_path / "r", overrides=[f"data.train={bad}", *TINY],
                        progress=False, log=_abort)


def test_empty_fine_tune_checkpoint_says_random_weights(data, tmp_path):
    def abort_on_the_note(message):  # other notes (e.g. the anchor fit) come first
        if "random weights" in message:
            raise _Abort(message)

    with pytest.raises(_Abort, match="training from random weights"):
        train.fine_tune(QUICK, tmp_path / "r", progress=False, log=abort_on_the_note,
                        overrides=[f"data.train={data}", *TINY, "train.fine_tune_checkpoint="])


def test_epochs_give_steps_from_the_number_of_images(data):
    cfg, _ = experiment.resolve(config_lib.load(QUICK, overrides=[
        f"data.train={data}", "train.epochs=2.5", "train.batch_size=4"]))
    notes = []
    images = train.check_shards(cfg).images
    assert images == 8
    assert train.steps_from_epochs(cfg, images, notes.append).train.steps == 5  # 2.5 * 8 / 4
    assert "train.steps = 5" in notes[0]
