"""Building, restoring and running a trained detector from a run folder.

A run folder (``--model-dir``) holds ``pipeline.yaml`` (the resolved pipeline config) and the
training checkpoints (``ckpt-N.*``, with TensorFlow's ``checkpoint`` state file). The model is Model
Garden's RetinaNet built by ``official.vision.modeling.factory`` and wrapped in Model Garden's
serving ``DetectionModule``, which resizes any input image to the model's input size (keeping the
aspect ratio), runs NMS and maps boxes back to the input image, normalised.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from od import config as config_lib
from od.experiment import to_experiment
from od import label_map as label_map_lib
from od.detections import Detections, detect_padded
from od.errors import CheckpointError, ConfigError, LabelMapError
from od.layout import PIPELINE_FILE, label_map_path, run_checkpoint



def load_run(model_dir: str | os.PathLike):
    """Read ``RUN/pipeline.yaml`` and the label map it names, and check they fit the checkpoint.

    Returns:
      (PipelineConfig, LabelMap).
    Raises:
      ConfigError: no pipeline.yaml (not a run folder written by ``od train``).
      LabelMapError: the label map's ids need another ``num_classes`` than pipeline.yaml, or than
        the class head of the newest checkpoint.
    """
    path = Path(model_dir) / PIPELINE_FILE
    if Path(model_dir).exists() and not Path(model_dir).is_dir():
        raise ConfigError(f"--model-dir {model_dir} is a file; give the run folder written by "
                          "`od train --model-dir ...`.")
    if not path.is_file():
        raise ConfigError(f"{model_dir}: no {PIPELINE_FILE}; is this a run folder written by "
                          "`od train --model-dir ...`?")
    cfg = config_lib.load(path)
    lm_copy = label_map_path(model_dir)
    lm_path = lm_copy if lm_copy.is_file() else Path(cfg.data.label_map)
    lm = label_map_lib.read(lm_path)
    fix = (f"Put back the label map the run was trained with as {lm_copy}, or train a new run "
           "for this label map (fine_tune_checkpoint_type=detector keeps backbone and FPN).")
    if cfg.model.num_classes and cfg.model.num_classes != lm.max_id + 1:
        raise LabelMapError(f"{lm_path}: ids up to {lm.max_id} need num_classes {lm.max_id + 1}, "
                            f"but {path} was trained with num_classes {cfg.model.num_classes}. "
                            + fix)
    import tensorflow as tf

    ckpt = tf.train.latest_checkpoint(str(model_dir))
    if ckpt:
        check_head(inspect_checkpoint(ckpt), lm, lm_path, fix)
    return cfg, lm


@dataclass(frozen=True)
class CheckpointInfo:
    """What a RetinaNet checkpoint holds, read from its index (no weights are loaded).

    ``modules``: the top-level parts with variables, of ``backbone``, ``decoder``, ``head``
    (Model Garden's trainer saves them as top-level objects; an ImageNet backbone checkpoint holds
    only ``backbone``). ``num_classes``: classes of the class head including background (label-map
    ids up to ``num_classes - 1``), None without a head. ``label_map``: the ``label_map.pbtxt``
    beside the checkpoint (od run folders), if any.
    """

    prefix: str
    modules: frozenset
    num_classes: int | None
    label_map: str | None


def inspect_checkpoint(prefix: str) -> CheckpointInfo:
    """Read a checkpoint's index: its top-level parts and its class-head size.

    The class head's last conv has ``num_classes * A`` outputs and the box head's ``4 * A``
    (A anchors per location), so ``num_classes = 4 * classifier_bias / box_regressor_bias``;
    a Faster R-CNN's ``detection_head`` classifier has ``num_classes`` outputs.
    Raises:
      CheckpointError: not a readable TensorFlow checkpoint.
    """
    import tensorflow as tf

    try:
        variables = dict(tf.train.list_variables(prefix))
    except (tf.errors.OpError, ValueError) as e:
        raise CheckpointError(f"{prefix}: not a readable TensorFlow checkpoint ({e}).") from None
    modules = frozenset(n.split("/")[0] for n in variables) & {"backbone", "decoder", "head"}
    suffix = "/bias/.ATTRIBUTES/VARIABLE_VALUE"
    cls = [s for n, s in variables.items() if n.endswith("_classifier" + suffix)]
    box = [s for n, s in variables.items() if n.endswith("_box_regressor" + suffix)]
    num_classes = 4 * cls[0][0] // box[0][0] if cls and box and box[0][0] else None
    two_stage = [s for n, s in variables.items()  # Faster R-CNN: one class score per class
                 if n.startswith("detection_head/") and n.endswith("_classifier" + suffix)]
    if two_stage:
        modules, num_classes = modules | {"head"}, two_stage[0][0]
    lm = label_map_path(Path(prefix).parent)
    return CheckpointInfo(prefix, modules, num_classes, str(lm) if lm.is_file() else None)


def check_head(info: CheckpointInfo, label_map, label_map_path, fix: str) -> None:
    """Raise LabelMapError when a checkpoint's class head does not fit ``label_map``.

    It fits when its ``num_classes`` equals the label map's max id + 1 and, where the checkpoint
    has its own ``label_map.pbtxt`` beside it, when both map the same ids to the same names.
    ``fix`` ends the message. A checkpoint without a head always fits.
    """
    if info.num_classes is None:
        return
    needed = label_map.max_id + 1
    if info.num_classes != needed:
        raise LabelMapError(
            f"{label_map_path} has ids up to {label_map.max_id} ({needed} classes with "
            f"background), but the class head of checkpoint {info.prefix} predicts "
            f"{info.num_classes} (ids up to {info.num_classes - 1}). {fix}")
    if info.label_map and Path(info.label_map).resolve() != Path(label_map_path).resolve():
        theirs = label_map_lib.read(info.label_map)
        ours_names = {i.id: i.name for i in label_map.items}
        their_names = {i.id: i.name for i in theirs.items}
        if ours_names != their_names:
            diff = sorted(f"id {k}: {their_names.get(k)!r} → {ours_names.get(k)!r}"
                          for k in set(ours_names) | set(their_names)
                          if ours_names.get(k) != their_names.get(k))
            raise LabelMapError(
                f"{label_map_path} names other classes than the label map {info.label_map} "
                f"that checkpoint {info.prefix} was trained with ({'; '.join(diff[:5])}). {fix}")


def build_model(cfg: config_lib.PipelineConfig, params=None):
    """Build the (untrained) Keras detector for a resolved config, input [None, S, S, 3].
    ``params``: the Model Garden ExperimentConfig of ``cfg`` when the caller has built it
    (a command builds it once and passes it on), else built here."""
    import tf_keras
    from official.vision.modeling import factory

    params = params or to_experiment(cfg)
    if cfg.model.architecture == "faster_rcnn":
        from od import fasterrcnn
        return fasterrcnn.build_model(cfg, params)
    specs = tf_keras.layers.InputSpec(shape=[None, cfg.model.input_size, cfg.model.input_size, 3])
    return factory.build_retinanet(input_specs=specs, model_config=params.task.model)


def freeze_early_layers(backbone, freeze_at: int) -> int:
    """Keep the backbone's first layers as they are (``train.freeze_at``, Detectron2's
    ``FREEZE_AT``): every layer before the first whose output is coarser than stride
    ``2**freeze_at`` (pixels of the input per output cell) gets ``trainable = False``, so its
    weights take no gradient and its BatchNorm layers keep the checkpoint's statistics (Keras
    runs a non-trainable BatchNormalization in inference mode). Nothing below a frozen layer
    needs a backward pass, which is where the time is saved. Call before the first training step
    (Model Garden reads ``model.trainable_variables`` when it traces the step).

    Args:
      backbone: a Keras functional backbone (``model.backbone`` of a Model Garden detector), its
        layers in order and its input ``[None, H, W, 3]``.
      freeze_at: 0 (nothing frozen) to 5.
    Returns:
      the number of layers with weights that were frozen.
    """
    if freeze_at <= 0:
        return 0
    height = backbone.input_shape[1]
    frozen = 0
    for layer in backbone.layers:
        shape = layer.output_shape
        if isinstance(shape, list) and len(shape) == 1:  # an InputLayer's
            shape = shape[0]
        # stop at the first layer coarser than the stride, or whose stride cannot be read
        # (several outputs, a size unknown until run)
        if not (isinstance(shape, tuple) and len(shape) == 4 and shape[1] and height) or \
                height / shape[1] > 2 ** freeze_at:
            break
        if layer.weights:
            layer.trainable = False
            frozen += 1
    return frozen


#: The checkpoint key ending of an ExponentialMovingAverage slot (the trainer's ``optimizer``).
_AVERAGE_SLOT = "/.OPTIMIZER_SLOT/optimizer/average/.ATTRIBUTES/VARIABLE_VALUE"


def restore(model, checkpoint: str) -> bool:
    """Load the model weights of a training checkpoint (written by Model Garden's trainer).

    Where the run kept a moving average of its weights (``train.ema_decay``: Model Garden's
    ``ExponentialMovingAverage`` optimizer, whose ``average`` slots the checkpoint holds), each
    variable that has an average gets the average instead of its last raw value, as Model
    Garden's own evaluation swaps them in. Returns True when averages were loaded. Raises
    :class:`CheckpointError` when the checkpoint does not fit the model.
    """
    import tensorflow as tf
    import tf_keras
    from official.modeling.optimization import ema_optimizer

    parts = {"model": model}
    try:
        if any(k.endswith(_AVERAGE_SLOT) for k, _ in tf.train.list_variables(checkpoint)):
            # restoring the optimizer creates its `average` slots from the checkpoint
            parts["optimizer"] = ema_optimizer.ExponentialMovingAverage(
                tf_keras.optimizers.legacy.SGD())
        tf.train.Checkpoint(**parts).read(checkpoint).expect_partial() \
            .assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise CheckpointError(f"{checkpoint}: does not fit the model in pipeline.yaml ({e}). Was "
                              "the run folder trained with another config?") from None
    holder = parts.get("optimizer")
    if holder is None:
        return False
    loaded = 0
    for var in model.variables:
        try:
            average = holder.get_slot(var, "average")
        except KeyError:
            continue
        var.assign(average)
        loaded += 1
    return loaded > 0


def detection_module(cfg: config_lib.PipelineConfig, model=None, batch_size: int | None = None,
                     params=None):
    """Model Garden's serving ``DetectionModule`` around ``model`` (built if None).

    Its ``serve(images)`` takes uint8 ``[N, H, W, 3]`` of any H, W and returns ``detection_boxes``
    float32 [N, K, 4] (ymin, xmin, ymax, xmax normalised to the input image), ``detection_scores``
    [N, K], ``detection_classes`` int [N, K] (label-map ids), ``num_detections`` int [N].
    ``params``: as in :func:`build_model`.
    """
    from official.vision.serving import detection

    params = params or to_experiment(cfg)
    size = cfg.model.input_size
    if cfg.model.architecture == "faster_rcnn":
        from od import fasterrcnn
        return fasterrcnn.serving_module(params, model, batch_size, size)
    return detection.DetectionModule(params, batch_size=batch_size, input_image_size=[size, size],
                                     model=model)


def save_serving(module, signatures: dict, path: str | os.PathLike) -> None:
    """Write ``module`` (a Model Garden serving module, weights already loaded) as a SavedModel
    at ``path`` holding its Keras model and the signatures Model Garden's
    ``get_inference_signatures`` traces: ``signatures`` maps input types to signature names
    (``{"image_tensor": "serving_default"}``). As ``official.core.export_base.export`` does,
    with two things left out, since serving, ``tf.saved_model.load`` and the TFLite converter
    use only the signatures:

    - the Keras layers' own call traces (tf_keras' ``save_traces=False``): 808 functions and
      10.9 s to load a RetinaNet-MobileNetV2 export with them, 20 and 4.5 s without;
    - the serving module's ``tf.function`` attributes, which ``tf.saved_model.save`` would trace
      once more (a second copy of every signature's graph): the saved object is a plain
      ``tf.Module`` holding the model. 12 functions (7,146 graph nodes) instead of 20 (11,399),
      and about 1 s less to load on a 2-core CPU (bench/bench_detect.py loads it).
    """
    import tensorflow as tf

    try:  # tf_keras' switch behind `model.save(save_traces=False)`; absent: save with traces
        from tf_keras.src.saving.legacy.saved_model.utils import keras_option_scope
        scope = keras_option_scope(save_traces=False)
    except ImportError:
        scope = contextlib.nullcontext()
    with scope:
        functions = module.get_inference_signatures(dict(signatures))
        root = tf.Module()
        root.model = module.model
        tf.saved_model.save(root, str(path), signatures=functions)


class Predictor:
    """Runs a model in memory on single images (used for evaluation during and after training).

    Call with a uint8 numpy image [H, W, 3] (RGB) → :class:`Detections` normalised to that image.
    ``cfg``, ``label_map`` and ``checkpoint`` say what runs (the last two set by ``from_run``).
    """

    def __init__(self, cfg: config_lib.PipelineConfig, model, label_map=None,
                 checkpoint: str = "", params=None):
        import tensorflow as tf

        self.cfg, self.label_map, self.checkpoint = cfg, label_map, checkpoint
        self._module = detection_module(cfg, model, batch_size=1, params=params)
        self._fn = tf.function(self._module.serve, input_signature=[
            tf.TensorSpec([1, None, None, 3], tf.uint8)], reduce_retracing=True)

    @classmethod
    def from_run(cls, model_dir: str | os.PathLike, checkpoint: str | None = None
                 ) -> "Predictor":
        """A run folder's checkpoint: ``checkpoint`` is best, latest, a path, or None (best when
        ``RUN/best/`` exists, else latest; see ``run_checkpoint``). ``load_run`` checks and
        errors."""
        cfg, lm = load_run(model_dir)
        checkpoint = run_checkpoint(model_dir, checkpoint)
        params = to_experiment(cfg)  # built once for the model and its module
        model = build_model(cfg, params)
        restore(model, checkpoint)
        return cls(cfg, model, lm, checkpoint, params)

    def __call__(self, image: np.ndarray) -> Detections:
        return detect_padded(self._detect, np.asarray(image, np.uint8))  # a 3x5000 strip

    def _detect(self, image: np.ndarray) -> Detections:
        return Detections.from_outputs(self._fn(image[None]), image.shape[1], image.shape[0])
