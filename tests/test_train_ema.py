"""A moving average of the weights (``train.ema_decay``): Model Garden's ExponentialMovingAverage
keeps it during training, and every path that runs the trained model (periodic evaluation, `od
evaluate`, `od export`, `od detect`) uses the averages, not the last raw weights."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import CONFIGS, TINY


def test_evaluation_swaps_the_averages_in_and_back():
    """PeriodicEval's swap on a real EMA optimizer: averages inside, raw weights after."""
    import tensorflow as tf
    import tf_keras
    from official.modeling.optimization import ema_optimizer

    from od.train_actions import PeriodicEval

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")  # what od train uses on a CPU
    with strategy.scope():
        model = tf_keras.Sequential([tf_keras.layers.Dense(3, input_shape=(2,))])
        opt = ema_optimizer.ExponentialMovingAverage(tf_keras.optimizers.legacy.SGD(0.05),
                                                     average_decay=0.9)
        opt.shadow_copy(model)
    x = tf.ones([4, 2])

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(x) ** 2)
        opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                model.trainable_variables))

    for _ in range(3):
        strategy.run(step)
    raw = [v.numpy() for v in model.trainable_variables]
    avg = [opt.get_slot(v, "average").numpy() for v in model.trainable_variables]
    assert max(np.abs(r - a).max() for r, a in zip(raw, avg)) > 1e-3
    holder = SimpleNamespace(trainer=SimpleNamespace(optimizer=opt,
                                                     strategy=strategy))
    with PeriodicEval._averaged(holder):
        for v, a in zip(model.trainable_variables, avg):
            np.testing.assert_allclose(v.numpy(), a, rtol=1e-5, atol=1e-6)  # a+b-b rounding
    for v, r in zip(model.trainable_variables, raw):
        np.testing.assert_allclose(v.numpy(), r, rtol=1e-5, atol=1e-6)
    plain = SimpleNamespace(trainer=SimpleNamespace(optimizer=tf_keras.optimizers.legacy.SGD()))
    with PeriodicEval._averaged(plain):  # no moving average: nothing to swap
        pass


@pytest.mark.slow
def test_run_with_ema_keeps_averages_and_evaluate_export_use_them(tmp_path):
    import tensorflow as tf

    from od import export, synthetic, train
    from od.data.convert import convert
    from od.model import Predictor, build_model, load_run, restore

    synthetic.generate(tmp_path / "raw", 16, size=(80, 64), seed=11)
    convert(tmp_path / "raw" / "annotations", tmp_path / "data", format="voc",
            images=tmp_path / "raw" / "images", split=(0.5, 0.25, 0.25), workers=1)
    run = tmp_path / "run"
    train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", run, progress=False,
                    overrides=[f"data.train={tmp_path / 'data'}", *TINY, "train.ema_decay=0.5",
                               "train.eval_every=2"])
    ckpt = tf.train.latest_checkpoint(str(run))
    reader = tf.train.load_checkpoint(ckpt)
    averages = [k for k, _ in tf.train.list_variables(ckpt) if "/optimizer/average/" in k]
    assert averages, "the checkpoint keeps Model Garden's average slots"
    raw_key = averages[0].replace("/.OPTIMIZER_SLOT/optimizer/average", "")
    assert np.abs(reader.get_tensor(raw_key) - reader.get_tensor(averages[0])).max() > 0

    cfg, _ = load_run(run)
    model = build_model(cfg)
    assert restore(model, ckpt) is True
    plain = build_model(cfg)  # the same model with the raw weights
    tf.train.Checkpoint(model=plain).read(ckpt).expect_partial()
    differ = [v.name for v, w in zip(plain.variables, model.variables)
              if np.abs(v.numpy() - w.numpy()).max() > 0]
    assert differ, "restore() loads the averages, not the raw weights"

    # the periodic evaluation at the last step saw what `od evaluate` sees (the averages)
    history = [json.loads(x) for x in (run / "eval" / "history.jsonl").read_text().splitlines()]
    predictor = Predictor.from_run(run, "latest")
    from od import evaluate
    metrics = evaluate.coco_on_records(predictor, cfg.data.val,
                                       predictor.label_map)
    assert history[-1]["step"] == 4
    for k in ("AP", "AP50"):
        assert history[-1][k] == pytest.approx(metrics[k], abs=1e-6)

    # the export carries the averages: its SavedModel answers as the restored model does
    out = tmp_path / "export"
    export.export(run, out, checkpoint="latest", formats=("saved_model",))
    image = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    sm = tf.saved_model.load(str(out / "saved_model"))
    got = sm.signatures["serving_default"](tf.constant(image[None]))
    want = predictor._fn(image[None])
    np.testing.assert_allclose(got["detection_scores"].numpy(),
                               want["detection_scores"].numpy(), atol=1e-5)

    # resume keeps the averages going; switching them off (or on) on resume is refused
    from od.errors import ConfigError
    with pytest.raises(ConfigError, match="moving averages"):
        train.fine_tune(run / "pipeline.yaml", run, overrides=["train.ema_decay=0"],
                        progress=False)
    more = train.fine_tune(run / "pipeline.yaml", run, overrides=["train.steps=6"],
                           progress=False)
    assert more.step == 6
    assert restore(build_model(cfg), tf.train.latest_checkpoint(str(run))) is True
