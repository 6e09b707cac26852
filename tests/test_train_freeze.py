"""``train.freeze_at``: the backbone's first layers keep the checkpoint's weights (Detectron2's
FREEZE_AT), only when a checkpoint gives them, and nothing below them takes a gradient."""
import numpy as np
import pytest

from od.errors import ConfigError
from tests.conftest import CONFIGS, TINY


def _backbone(size: int = 64):
    import tf_keras
    from official.vision.modeling.backbones import mobilenet
    return mobilenet.MobileNet(model_id="MobileNetV2",
                               input_specs=tf_keras.layers.InputSpec(shape=[None, size, size, 3]))


def test_freeze_at_stops_at_the_first_layer_coarser_than_the_stride():
    from od.model import freeze_early_layers

    for k, frozen_names in ((1, 2), (2, 4), (3, 7)):
        bb = _backbone()
        total = len(bb.trainable_variables)
        assert freeze_early_layers(bb, k) == frozen_names
        for layer in bb.layers:
            if layer.weights:
                stride = 64 / layer.output_shape[1]
                assert layer.trainable == (stride > 2 ** k), (k, layer.name, stride)
        assert 0 < len(bb.trainable_variables) < total
    bb = _backbone()
    assert freeze_early_layers(bb, 0) == 0 and all(layer.trainable for layer in bb.layers)


def test_freeze_at_is_a_range_checked_config_key():
    from od import config as config_lib
    with pytest.raises(ConfigError, match="train.freeze_at"):
        config_lib.load(CONFIGS / "retinanet_mobilenetv2_fpn_256.yaml",
                        overrides=["train.freeze_at=6"])


@pytest.mark.slow
def test_training_keeps_frozen_layers_as_the_checkpoint_has_them(tiny_run, tmp_path):
    """A run started from the tiny run's checkpoint with freeze_at=2: the stem and the stride-2/4
    blocks (BatchNorm statistics included) are bitwise the checkpoint's after training, the next
    block is not. Without a checkpoint the key is left out, with a note."""
    import tensorflow as tf

    from od import train

    root, _ = tiny_run
    source = tf.train.latest_checkpoint(str(root / "run"))
    notes: list = []
    run = train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "run",
                          progress=False, log=notes.append,
                          overrides=[f"data.train={root / 'data'}", *TINY, "train.steps=2",
                                     "train.learning_rate=0.5", "train.freeze_at=2",
                                     f"train.fine_tune_checkpoint={source}",
                                     "train.fine_tune_checkpoint_type=backbone"])
    assert any("train.freeze_at=2: the backbone's first 4 layers (to stride 4)" in n
               for n in notes), notes
    before = tf.train.load_checkpoint(source)
    after = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run.model_dir)))
    keys = [k for k, _ in tf.train.list_variables(source)
            if k.startswith("backbone/") and "OPTIMIZER_SLOT" not in k]
    same = {k: np.array_equal(before.get_tensor(k), after.get_tensor(k)) for k in keys}
    frozen = [k for k in keys if k.split("/")[1] in {f"layer_with_weights-{i}" for i in range(4)}]
    assert frozen and all(same[k] for k in frozen)
    assert not all(same[k] for k in keys if k not in frozen)

    notes.clear()
    train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", tmp_path / "scratch", progress=False,
                    log=notes.append, overrides=[f"data.train={root / 'data'}", *TINY,
                                                 "train.steps=2", "train.freeze_at=2"])
    assert any("train.freeze_at=2 left out" in n for n in notes), notes
