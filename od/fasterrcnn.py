"""Faster R-CNN: the second architecture, Model Garden's ``maskrcnn`` task without masks.

``model.architecture: faster_rcnn`` selects it. The model is Model Garden's
``fasterrcnn_resnetfpn_coco`` form (``official/vision/configs/maskrcnn.py``: a backbone, an FPN,
a region-proposal head, a multilevel ROI aligner and a box head; ``include_mask=False``) built
from the same `od` keys as RetinaNet:

- ``backbone``/``backbone_id``/``decoder``/``fpn_filters``: as for RetinaNet (the RPN head has
  ``fpn_filters`` channels);
- ``min_level``/``max_level``: FPN levels (Model Garden's Faster R-CNN uses 2..6);
- ``num_scales``/``aspect_ratios``/``anchor_size``: the RPN anchors (Model Garden: 1 scale,
  anchor_size 8 strides);
- ``head_convs``/``head_filters``: convs of the box head before its FC layer (Model Garden's
  ``fasterrcnn_resnetfpn_coco`` has 0 convs and one FC of 1024; the FC width here is
  ``max(64, 4 * head_filters)``, 1024 for 256 filters);
- ``max_detections``/``nms_iou_threshold``/``score_threshold``/``nms_version``: the second-stage
  detection generator.

Training, evaluation, SavedModel and frozen-graph export go through the same code as RetinaNet;
the serving module normalises the boxes as RetinaNet's does, so the outputs (names, dtypes, boxes
normalised to the input image) are the same. TFLite export is refused (:data:`TFLITE_BLOCKER`).
"""
from __future__ import annotations

from dataclasses import replace

from od.errors import ExportError

#: Why there is no TFLite export of a Faster R-CNN run.
TFLITE_BLOCKER = (
    "the op tf.CombinedNonMaxSuppression (Faster R-CNN's second-stage NMS, nms_version batched) "
    "is not a TFLite builtin: converting the model as it is fails on it (TFLiteConverter, "
    "TFLITE_BUILTINS). Model Garden's TFLite detection ending (nms_version 'tflite', TFLite's "
    "TFLite_Detection_PostProcess op, which od's TFLite export uses) exists only for RetinaNet's "
    "single-stage detection generator. Export saved_model / frozen_graph, or train a RetinaNet "
    "config for TFLite.")


def to_experiment(cfg):
    """The Model Garden ``ExperimentConfig`` (maskrcnn task, no masks) of a resolved config.

    Trainer, optimiser, runtime and data settings are those RetinaNet gets from the same config.
    """
    from official.core import config_definitions as cfg_lib
    from official.vision.configs import common, decoders
    from official.vision.configs import maskrcnn as mr

    from od import config as config_lib
    from od import experiment

    base = experiment.to_experiment(replace(cfg, model=replace(cfg.model,
                                                               architecture="retinanet")))
    m, d, t = cfg.model, cfg.data, cfg.train
    decoder = (decoders.Decoder(type="fpn", fpn=decoders.FPN(
        num_filters=m.fpn_filters, use_separable_conv=m.separable_conv))
        if m.decoder == "fpn" else decoders.Decoder(type="identity", identity=decoders.Identity()))
    model = mr.MaskRCNN(
        num_classes=m.num_classes, input_size=[m.input_size, m.input_size, 3],
        min_level=m.min_level, max_level=m.max_level,
        anchor=mr.Anchor(num_scales=m.num_scales, aspect_ratios=list(m.aspect_ratios),
                         anchor_size=m.anchor_size),
        include_mask=False, mask_head=None, mask_sampler=None, mask_roi_aligner=None,
        backbone=experiment.backbone_config(m), decoder=decoder,
        rpn_head=mr.RPNHead(num_filters=m.fpn_filters, use_separable_conv=m.separable_conv),
        detection_head=mr.DetectionHead(num_convs=m.head_convs, num_filters=m.head_filters,
                                        use_separable_conv=m.separable_conv,
                                        fc_dims=max(64, 4 * m.head_filters)),
        detection_generator=mr.DetectionGenerator(
            max_num_detections=m.max_detections, nms_iou_threshold=m.nms_iou_threshold,
            pre_nms_score_threshold=m.score_threshold, nms_version=m.nms_version),
        norm_activation=common.NormActivation(activation=m.activation, use_sync_bn=False))
    parts = config_lib.FINE_TUNE_PARTS[t.fine_tune_checkpoint_type]
    rn_task = base.task
    parser = mr.Parser(aug_rand_hflip=d.hflip, aug_scale_min=d.scale_min,
                       aug_scale_max=d.scale_max)
    task = mr.MaskRCNNTask(
        model=model,
        train_data=mr.DataConfig(input_path=d.train, is_training=True,
                                 global_batch_size=t.batch_size, dtype=rn_task.train_data.dtype,
                                 parser=parser, shuffle_buffer_size=d.shuffle_buffer,
                                 seed=t.seed or None),
        validation_data=mr.DataConfig(input_path=d.val or d.train, is_training=False,
                                      global_batch_size=1, dtype=rn_task.train_data.dtype,
                                      drop_remainder=False),
        losses=mr.Losses(l2_weight_decay=t.l2_weight_decay),
        init_checkpoint=None if t.fine_tune_checkpoint in ("", "none") else t.fine_tune_checkpoint,
        init_checkpoint_modules="all" if "head" in parts else list(parts),
        use_coco_metrics=False, freeze_backbone=t.freeze_backbone)
    return cfg_lib.ExperimentConfig(task=task, trainer=base.trainer, runtime=base.runtime)


def build_model(cfg, params):
    """The Keras Faster R-CNN (Model Garden ``MaskRCNNModel`` without a mask head)."""
    import tf_keras
    from official.vision.modeling import factory

    specs = tf_keras.layers.InputSpec(shape=[None, cfg.model.input_size, cfg.model.input_size, 3])
    return factory.build_maskrcnn(input_specs=specs, model_config=params.task.model)


def serving_module(params, model, batch_size, size: int):
    """Model Garden's ``DetectionModule`` with boxes normalised to the input image, as od's
    RetinaNet export has them (Model Garden normalises only RetinaNet's)."""
    from official.vision.serving import detection

    class _Module(detection.DetectionModule):
        def preprocess(self, images):
            out = super().preprocess(images)
            self._od_image_info = out[2]
            return out

        def serve(self, images):
            outputs = dict(super().serve(images))
            return self._normalize_coordinates(outputs, ["detection_boxes"], self._od_image_info)

    return _Module(params, batch_size=batch_size, input_image_size=[size, size], model=model)


def refuse_tflite(cfg, formats) -> None:
    """Raise ExportError naming what blocks TFLite when a Faster R-CNN run asks for it."""
    asked = [f for f in formats if f.startswith("tflite")]
    if asked and cfg.model.architecture == "faster_rcnn":
        raise ExportError(f"cannot export {', '.join(asked)} for model.architecture = "
                          f"faster_rcnn: {TFLITE_BLOCKER}")
