"""The part of the Object Detection API's ``TrainEvalPipelineConfig`` schema that `od` reads.

The OD API's ``pipeline.config`` is protobuf text format (``object_detection/protos/
pipeline.proto`` and the files it imports). `od` defines the subset of those messages that maps
to its own config (field names and types as in the API's protos; field numbers are private here,
text format does not use them), builds the message classes from a descriptor at import time (no
``protoc`` step, as :mod:`od.label_map` does) and parses files with
``google.protobuf.text_format`` with ``allow_unknown_field=True``: fields outside the subset are
skipped by the parser and listed as ``ignored`` in the mapping table (:mod:`od.odapi`).
"""
from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_PACKAGE = "object_detection.protos"

# message name → fields as "name:type" ("*" prefix: repeated); a capitalised type is a message or
# enum of this file, a lower-case one a scalar (int32, float, string, bool).
_MESSAGES = {
    "TrainEvalPipelineConfig": ["model:DetectionModel", "train_config:TrainConfig",
                                "train_input_reader:InputReader", "eval_config:EvalConfig",
                                "*eval_input_reader:InputReader"],
    "DetectionModel": ["ssd:Ssd", "faster_rcnn:FasterRcnn", "center_net:CenterNet"],
    "Ssd": ["num_classes:int32", "image_resizer:ImageResizer",
            "feature_extractor:FeatureExtractor", "anchor_generator:AnchorGenerator",
            "box_predictor:BoxPredictor", "loss:Loss", "post_processing:PostProcessing"],
    "FasterRcnn": ["num_classes:int32", "image_resizer:ImageResizer",
                   "feature_extractor:FeatureExtractor",
                   "first_stage_anchor_generator:AnchorGenerator",
                   "second_stage_post_processing:PostProcessing"],
    "CenterNet": ["num_classes:int32", "image_resizer:ImageResizer",
                  "feature_extractor:FeatureExtractor"],
    "ImageResizer": ["fixed_shape_resizer:FixedShapeResizer",
                     "keep_aspect_ratio_resizer:KeepAspectRatioResizer"],
    "FixedShapeResizer": ["height:int32", "width:int32"],
    "KeepAspectRatioResizer": ["min_dimension:int32", "max_dimension:int32",
                               "pad_to_max_dimension:bool"],
    "FeatureExtractor": ["type:string", "depth_multiplier:float", "conv_hyperparams:Hyperparams",
                         "fpn:Fpn", "bifpn:BiFpn"],
    "Fpn": ["min_level:int32", "max_level:int32", "additional_layer_depth:int32"],
    "BiFpn": ["min_level:int32", "max_level:int32", "num_iterations:int32", "num_filters:int32"],
    "Hyperparams": ["activation:Activation", "regularizer:Regularizer"],
    "Regularizer": ["l2_regularizer:L2Regularizer"],
    "L2Regularizer": ["weight:float"],
    "AnchorGenerator": ["multiscale_anchor_generator:MultiscaleAnchorGenerator",
                        "ssd_anchor_generator:SsdAnchorGenerator",
                        "grid_anchor_generator:GridAnchorGenerator"],
    "MultiscaleAnchorGenerator": ["min_level:int32", "max_level:int32", "anchor_scale:float",
                                  "*aspect_ratios:float", "scales_per_octave:int32"],
    "SsdAnchorGenerator": ["num_layers:int32", "min_scale:float", "max_scale:float",
                           "*aspect_ratios:float"],
    "GridAnchorGenerator": ["*scales:float", "*aspect_ratios:float", "height_stride:int32",
                            "width_stride:int32"],
    "BoxPredictor": ["convolutional_box_predictor:ConvBoxPredictor",
                     "weight_shared_convolutional_box_predictor:SharedBoxPredictor"],
    "ConvBoxPredictor": ["num_layers_before_predictor:int32", "min_depth:int32",
                         "max_depth:int32", "conv_hyperparams:Hyperparams",
                         "use_depthwise:bool"],
    "SharedBoxPredictor": ["num_layers_before_predictor:int32", "depth:int32",
                           "conv_hyperparams:Hyperparams", "use_depthwise:bool"],
    "Loss": ["classification_loss:ClassificationLoss"],
    "ClassificationLoss": ["weighted_sigmoid_focal:SigmoidFocal", "weighted_sigmoid:Empty",
                           "weighted_softmax:Empty"],
    "SigmoidFocal": ["alpha:float", "gamma:float"],
    "Empty": [],
    "PostProcessing": ["batch_non_max_suppression:BatchNms", "score_converter:ScoreConverter"],
    "BatchNms": ["score_threshold:float", "iou_threshold:float",
                 "max_detections_per_class:int32", "max_total_detections:int32"],
    "TrainConfig": ["batch_size:int32", "num_steps:int32", "optimizer:Optimizer",
                    "fine_tune_checkpoint:string", "fine_tune_checkpoint_type:string",
                    "*data_augmentation_options:PreprocessingStep",
                    "gradient_clipping_by_norm:float"],
    "Optimizer": ["momentum_optimizer:MomentumOptimizer", "adam_optimizer:PlainOptimizer",
                  "rms_prop_optimizer:MomentumOptimizer", "use_moving_average:bool",
                  "moving_average_decay:float"],
    "MomentumOptimizer": ["learning_rate:LearningRate", "momentum_optimizer_value:float"],
    "PlainOptimizer": ["learning_rate:LearningRate"],
    "LearningRate": ["constant_learning_rate:ConstantLr",
                     "exponential_decay_learning_rate:ExponentialLr",
                     "manual_step_learning_rate:ManualStepLr",
                     "cosine_decay_learning_rate:CosineLr"],
    "ConstantLr": ["learning_rate:float"],
    "ExponentialLr": ["initial_learning_rate:float", "decay_steps:int32", "decay_factor:float",
                      "staircase:bool", "burnin_learning_rate:float", "burnin_steps:int32"],
    "ManualStepLr": ["initial_learning_rate:float", "*schedule:LrStep", "warmup:bool"],
    "LrStep": ["step:int32", "learning_rate:float"],
    "CosineLr": ["learning_rate_base:float", "total_steps:int32", "warmup_learning_rate:float",
                 "warmup_steps:int32", "hold_base_rate_steps:int32"],
    "PreprocessingStep": ["random_horizontal_flip:Empty", "ssd_random_crop:Empty",
                          "random_crop_image:RandomCrop", "random_image_scale:RandomScale",
                          "random_scale_crop_and_pad_to_square:ScaleCropPad"],
    "RandomCrop": ["min_area:float", "max_area:float"],
    "RandomScale": ["min_scale_ratio:float", "max_scale_ratio:float"],
    "ScaleCropPad": ["output_size:int32", "scale_min:float", "scale_max:float"],
    "InputReader": ["label_map_path:string", "tf_record_input_reader:TfRecordReader"],
    "TfRecordReader": ["*input_path:string"],
    "EvalConfig": ["num_examples:int32"],
}
_ENUMS = {
    "Activation": ["NONE", "RELU", "RELU_6", "SWISH"],
    "ScoreConverter": ["IDENTITY", "SIGMOID", "SOFTMAX"],
}
_SCALARS = {"int32": "TYPE_INT32", "float": "TYPE_FLOAT", "string": "TYPE_STRING",
            "bool": "TYPE_BOOL"}


def _build():
    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="od/odapi_pipeline_subset.proto",
                                             package=_PACKAGE, syntax="proto2")
    for name, values in _ENUMS.items():
        enum = fdp.enum_type.add(name=name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    for name, spec in _MESSAGES.items():
        msg = fdp.message_type.add(name=name)
        for number, item in enumerate(spec, start=1):
            fname, ftype = item.lstrip("*").split(":")
            label = F.LABEL_REPEATED if item.startswith("*") else F.LABEL_OPTIONAL
            if ftype in _SCALARS:
                msg.field.add(name=fname, number=number, label=label,
                              type=getattr(F, _SCALARS[ftype]))
            else:
                kind = F.TYPE_ENUM if ftype in _ENUMS else F.TYPE_MESSAGE
                msg.field.add(name=fname, number=number, label=label, type=kind,
                              type_name=f".{_PACKAGE}.{ftype}")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(f"{_PACKAGE}.TrainEvalPipelineConfig"))


TrainEvalPipelineConfig = _build()


def parse(text: str):
    """Parse ``pipeline.config`` text into the subset message; unknown fields are skipped.

    Raises:
      google.protobuf.text_format.ParseError: the text is not protobuf text format, or a known
        field has a value of the wrong type.
    """
    msg = TrainEvalPipelineConfig()
    text_format.Parse(text, msg, allow_unknown_field=True)
    return msg


def field_paths(text: str) -> list[tuple[str, str]]:
    """Every field the text sets, in order, as ``(dotted path, value as written)``; a repeated
    field appears once per value, an empty message block (``random_horizontal_flip {}``) with
    value ``'{}'``. Tokenised by protobuf's own text-format tokenizer; call after ``parse``.
    """
    tok = text_format.Tokenizer(text.splitlines())
    out: list[tuple[str, str]] = []

    def value() -> str:
        sign = "-" if tok.TryConsume("-") else ""
        v = sign + tok.token
        tok.NextToken()
        while v[:1] in ("'", '"') and tok.token[:1] in ("'", '"'):  # "a" "b" is one string
            v = v[:-1] + tok.token[1:-1] + v[-1]
            tok.NextToken()
        return v

    def block(prefix: str, end: str | None) -> int:
        count = 0
        while not tok.AtEnd():
            if end and tok.TryConsume(end):
                return count
            name = tok.ConsumeIdentifierOrNumber()
            path = f"{prefix}.{name}" if prefix else name
            tok.TryConsume(":")
            if tok.TryConsume("["):
                while not tok.TryConsume("]"):
                    fill(path)
                    tok.TryConsume(",")
            else:
                fill(path)
            if not tok.TryConsume(","):
                tok.TryConsume(";")
            count += 1
        return count

    def fill(path: str) -> None:
        for opening, closing in (("{", "}"), ("<", ">")):
            if tok.TryConsume(opening):
                if block(path, closing) == 0:
                    out.append((path, "{}"))
                return
        out.append((path, value()))

    block("", None)
    return out
