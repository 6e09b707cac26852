"""Scaling out and recipe options of `od train` (issue 11 parts 5 and 6): two workers of
MultiWorkerMirroredStrategy as two local processes, mixed_bfloat16 end to end on CPU, and the
optimizer / augmentation / epochs options, each for a few steps of the tiny model."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from od import evaluate, export, train
from tests.conftest import CONFIGS, ROOT, TINY
from tests.test_train_control import data  # noqa: F401  (the shared tiny dataset fixture)

QUICK = str(CONFIGS / "quickstart_shapes_128.yaml")


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.slow
def test_two_workers_on_localhost_train_one_checkpoint(data, tmp_path):  # noqa: F811
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    run = tmp_path / "run"
    procs = []
    for index in range(2):
        env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
                   TF_CONFIG=json.dumps({"cluster": cluster,
                                         "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "od.cli", "train", "--config", QUICK, "--model-dir", str(run),
             "--no-progress", f"data.train={data}", *TINY, "runtime.strategy=multi_worker"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = []
    try:
        for p in procs:
            outs.append(p.communicate(timeout=1500))  # ~10 min on a busy 2-core machine
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
        assert "trained to step 4" in out  # both workers ran the same number of steps
    import tensorflow as tf

    assert tf.train.latest_checkpoint(str(run)).endswith("ckpt-4")  # the chief's, consistent
    assert json.loads((run / "train_result.json").read_text())["step"] == 4
    names = {n for n, _ in tf.train.list_variables(str(run / "ckpt-4"))}
    assert any(n.startswith("head/") for n in names)


@pytest.mark.slow
def test_mixed_bfloat16_train_evaluate_export_float32(data, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    r = train.fine_tune(QUICK, run, progress=False, overrides=[
        f"data.train={data}", *TINY, "train.steps=2", "runtime.mixed_precision=mixed_bfloat16",
        "train.optimizer=adamw", "data.aug_type=randaug"])
    assert r.step == 2 and np.isfinite(r.losses["total_loss"])
    report = evaluate.evaluate(run, str(data / "test-*.tfrecord"), progress=False)
    assert 0.0 <= report["coco"]["AP50"] <= 1.0
    check = export.export(run, tmp_path / "exp")
    assert all(c["ok"] for c in check["checks"])
    import tensorflow as tf

    loaded = tf.saved_model.load(str(tmp_path / "exp" / "saved_model"))
    out = loaded.signatures["serving_default"](tf.zeros([1, 64, 80, 3], tf.uint8))
    assert out["detection_boxes"].dtype == tf.float32
    assert out["detection_scores"].dtype == tf.float32


@pytest.mark.slow
def test_adam_autoaug_and_epochs(data, tmp_path):  # noqa: F811
    notes = []
    r = train.fine_tune(QUICK, tmp_path / "run", progress=False, log=notes.append, overrides=[
        f"data.train={data}", *TINY, "train.optimizer=adam", "data.aug_type=autoaug",
        "train.epochs=1", "train.learning_rate=0.001"])
    assert r.step == 2 and np.isfinite(r.losses["total_loss"])  # 1 epoch = 8 images / batch 4
    assert any("train.steps = 2" in n for n in notes)
    saved = (tmp_path / "run" / "pipeline.yaml").read_text()
    assert "optimizer: adam" in saved and "aug_type: autoaug" in saved and "steps: 2" in saved
