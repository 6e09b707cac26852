"""Building, restoring and running a trained detector from a run folder.

A run folder (``--model-dir``) holds ``pipeline.yaml`` (the resolved pipeline config) and the
training checkpoints (``ckpt-N.*``, with TensorFlow's ``checkpoint`` state file). The model is Model
Garden's RetinaNet built by ``official.vision.modeling.factory`` and wrapped in Model Garden's
serving ``DetectionModule``, which resizes any input image to the model's input size (keeping the
aspect ratio), runs NMS and maps boxes back to the input image, normalised.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from od import config as config_lib
from od import label_map as label_map_lib
from od.detections import Detections
from od.errors import CheckpointError, ConfigError

PIPELINE_FILE = "pipeline.yaml"


def load_run(model_dir: str | os.PathLike):
    """Read ``RUN/pipeline.yaml`` and the label map it names.

    Returns:
      (PipelineConfig, LabelMap).
    Raises:
      ConfigError: no pipeline.yaml (not a run folder written by ``od train``).
    """
    path = Path(model_dir) / PIPELINE_FILE
    if not path.is_file():
        raise ConfigError(f"{model_dir}: no {PIPELINE_FILE}; is this a run folder written by "
                          "`od train --model-dir ...`?")
    cfg = config_lib.load(path)
    lm_copy = Path(model_dir) / "label_map.pbtxt"
    lm = label_map_lib.read(lm_copy if lm_copy.is_file() else cfg.data.label_map)
    return cfg, lm


def latest_checkpoint(model_dir: str | os.PathLike) -> str:
    """The newest checkpoint prefix in ``model_dir``. Raises CheckpointError if there is none."""
    import tensorflow as tf

    ckpt = tf.train.latest_checkpoint(str(model_dir))
    if not ckpt:
        raise CheckpointError(f"{model_dir}: no checkpoint found; train first (`od train "
                              f"--model-dir {model_dir}`).")
    return ckpt


def build_model(cfg: config_lib.PipelineConfig):
    """Build the (untrained) Keras RetinaNet for a resolved config, input [None, S, S, 3]."""
    import tf_keras
    from official.vision.modeling import factory

    params = config_lib.to_experiment(cfg)
    specs = tf_keras.layers.InputSpec(shape=[None, cfg.model.input_size, cfg.model.input_size, 3])
    return factory.build_retinanet(input_specs=specs, model_config=params.task.model)


def restore(model, checkpoint: str) -> None:
    """Load the model weights of a training checkpoint (written by Model Garden's trainer)."""
    import tensorflow as tf

    try:
        tf.train.Checkpoint(model=model).read(checkpoint).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise CheckpointError(f"{checkpoint}: does not fit the model in pipeline.yaml ({e}). Was "
                              "the run folder trained with another config?") from None


def detection_module(cfg: config_lib.PipelineConfig, model=None, batch_size: int | None = None):
    """Model Garden's serving ``DetectionModule`` around ``model`` (built if None).

    Its ``serve(images)`` takes uint8 ``[N, H, W, 3]`` of any H, W and returns ``detection_boxes``
    float32 [N, K, 4] (ymin, xmin, ymax, xmax normalised to the input image), ``detection_scores``
    [N, K], ``detection_classes`` int [N, K] (label-map ids), ``num_detections`` int [N].
    """
    from official.vision.serving import detection

    params = config_lib.to_experiment(cfg)
    size = cfg.model.input_size
    return detection.DetectionModule(params, batch_size=batch_size, input_image_size=[size, size],
                                     model=model)


class Predictor:
    """Runs a model in memory on single images (used for evaluation during and after training).

    Call with a uint8 numpy image [H, W, 3] (RGB) → :class:`Detections` normalised to that image.
    """

    def __init__(self, cfg: config_lib.PipelineConfig, model):
        import tensorflow as tf

        self._module = detection_module(cfg, model, batch_size=1)
        self._fn = tf.function(self._module.serve, input_signature=[
            tf.TensorSpec([1, None, None, 3], tf.uint8)], reduce_retracing=True)

    @classmethod
    def from_run(cls, model_dir: str | os.PathLike) -> "Predictor":
        cfg, _ = load_run(model_dir)
        model = build_model(cfg)
        restore(model, latest_checkpoint(model_dir))
        return cls(cfg, model)

    def __call__(self, image: np.ndarray) -> Detections:
        out = self._fn(np.asarray(image, np.uint8)[None])
        n = int(out["num_detections"][0])
        h, w = image.shape[:2]
        return Detections.make(out["detection_boxes"][0, :n].numpy(),
                               out["detection_scores"][0, :n].numpy(),
                               out["detection_classes"][0, :n].numpy(), w, h)
