"""The ``model`` half of the OD API import (:mod:`od.odapi`): architecture, resizer, anchors,
FPN, box predictor, loss and post-processing of ``model { ssd | faster_rcnn | center_net }``.

Each function reads part of the parsed ``TrainEvalPipelineConfig`` and records od keys and
mapping-table rows on the mapper (``set``: a key from a field; ``note``: a row only;
``implied``: a key implied by a field's absence).
"""
from __future__ import annotations

from od import odapi_schema
from od.errors import ConfigError

#: Feature-extractor name fragments → od backbone (Model Garden type, model_id).
_BACKBONES = (("mobilenet_v3_large", ("mobilenet", "MobileNetV3Large")),
              ("mobilenet_v3_small", ("mobilenet", "MobileNetV3Small")),
              ("mobilenet_v2", ("mobilenet", "MobileNetV2")),
              ("mobilenet_v1", ("mobilenet", "MobileNetV1")),
              ("resnet152", ("resnet", "152")), ("resnet101", ("resnet", "101")),
              ("resnet50", ("resnet", "50")))
_ACTIVATIONS = {"RELU": "relu", "RELU_6": "relu6", "SWISH": "swish"}


def _backbone(fe_type: str):
    t = fe_type.replace("resnet_v1_", "resnet").replace("resnet_v2_", "resnet")
    for frag, bb in _BACKBONES:
        if frag in t:
            return bb
    return None


def _architecture(msg, mp, nearest: bool):
    """Set the backbone/decoder keys; return (meta name, meta message, description)."""
    model = msg.model
    meta = next((m for m in ("ssd", "faster_rcnn", "center_net") if model.HasField(m)), None)
    if meta is None:
        raise ConfigError(f"{mp.source}: no model {{ ssd {{...}} }} (or faster_rcnn, center_net) "
                          "block; od imports those meta-architectures of the Object Detection "
                          "API.")
    arch = getattr(model, meta)
    fe = arch.feature_extractor
    bb = _backbone(fe.type)
    fpn = meta == "ssd" and (fe.HasField("fpn") or "fpn" in fe.type) and not fe.HasField("bifpn")
    path = f"model.{meta}.feature_extractor.type"
    if fpn and bb:
        mp.set(path, "model.backbone", bb[0], note="an SSD with FPN is RetinaNet")
        mp.set(path, "model.backbone_id", bb[1])
        mp.set(path, "model.decoder", "fpn")
        return meta, arch, f"{meta} {fe.type} = RetinaNet"
    if meta == "faster_rcnn" and (bb or nearest):
        fpn = "fpn" in fe.type and bb is not None
        if bb is None:  # --nearest: an unknown backbone → ResNet-50
            mp.note(f"model.{meta}.feature_extractor", "approximated",
                    f"--nearest: backbone {fe.type!r} → ResNet-50")
            bb = ("resnet", "50")
        note = "Faster R-CNN = Model Garden's maskrcnn task without masks" + (
            "" if fpn else "; the OD API's single-stride (16 px) features → an FPN, levels 2-6")
        status = "mapped" if fpn else "approximated"
        mp.set(path, "model.architecture", "faster_rcnn", status, note)
        for key, value in (("backbone", bb[0]), ("backbone_id", bb[1]), ("decoder", "fpn")):
            mp.set(path, f"model.{key}", value, status)
        for key, value in (("min_level", 2), ("max_level", 6), ("fpn_filters", 256),
                           ("head_filters", 256), ("head_convs", 0)):
            mp.implied(f"Faster R-CNN {key}", f"model.{key}", value,
                       "Model Garden's fasterrcnn_resnetfpn_coco")
        return meta, arch, f"{meta} {fe.type} = Faster R-CNN" + ("" if fpn else " with FPN")
    why = {"faster_rcnn": "Faster R-CNN on a backbone od has not",
           "center_net": "CenterNet (keypoint-based; not in Model Garden)"}.get(meta) or (
        "EfficientDet's BiFPN (no Model Garden counterpart)" if fe.HasField("bifpn") or
        "bifpn" in fe.type or "efficientdet" in fe.type else
        "SSD without FPN (no Model Garden counterpart)" if bb else
        f"backbone {fe.type!r} (not one of od's: MobileNet V1/V2/V3, ResNet-50/101/152)")
    near = bb or ("resnet", "50")
    label = f"RetinaNet {near[0]} {near[1]} with an FPN (levels 3-7)"
    if not nearest:
        raise ConfigError(
            f"{mp.source}: model.{meta} with feature extractor {fe.type!r} is {why}. Choices: "
            f"pass --nearest (nearest=True) to map it to the nearest od detector, {label}, "
            f"with every approximation listed in the mapping table; or start from an od config "
            "(configs/*.yaml, `od zoo list`) and keep the file's data paths as overrides.")
    note = f"--nearest: {why} → {label}"
    mp.set(path, "model.backbone", near[0], "approximated", note)
    mp.set(path, "model.backbone_id", near[1], "approximated")
    mp.set(path, "model.decoder", "fpn", "approximated")
    return meta, arch, f"{meta} {fe.type} ≈ {label} (--nearest)"


def _model(msg, mp, nearest: bool) -> str:
    meta, arch, desc = _architecture(msg, mp, nearest)
    p = f"model.{meta}"
    mp.values["model.name"] = f"odapi_{meta}_{arch.feature_extractor.type}"
    if arch.num_classes < 0:
        raise ConfigError(f"{mp.source}: {p}.num_classes = {arch.num_classes}; give the number of "
                          "classes (the label map's largest id), or leave it out to take it from "
                          "the label map.")
    if arch.num_classes:
        mp.set(f"{p}.num_classes", "model.num_classes", arch.num_classes + 1,
               note="+1 for od's background class 0; checked against the label map")
    elif arch.HasField("num_classes"):
        mp.set(f"{p}.num_classes", "model.num_classes", 0, "approximated",
               "0 classes cannot train: od takes the number from the label map")
    else:
        mp.implied("num_classes", "model.num_classes", 0, "from the label map (max id + 1)")
    fe = arch.feature_extractor
    levels = (2, 6) if mp.values.get("model.architecture") == "faster_rcnn" else (3, 7)
    if fe.HasField("fpn"):
        levels = (fe.fpn.min_level or 3, fe.fpn.max_level or 7)
        mp.set(f"{p}.feature_extractor.fpn.min_level", "model.min_level", levels[0])
        mp.set(f"{p}.feature_extractor.fpn.max_level", "model.max_level", levels[1])
        if fe.fpn.HasField("additional_layer_depth"):
            mp.set(f"{p}.feature_extractor.fpn.additional_layer_depth", "model.fpn_filters",
                   fe.fpn.additional_layer_depth)
    if fe.HasField("depth_multiplier") and fe.depth_multiplier != 1.0:
        mp.note(f"{p}.feature_extractor.depth_multiplier", "approximated",
                "od's MobileNet has depth multiplier 1.0")
    elif fe.HasField("depth_multiplier"):
        mp.note(f"{p}.feature_extractor.depth_multiplier", "mapped", "1.0, as od's backbones")
    _hyperparams(fe.conv_hyperparams, f"{p}.feature_extractor.conv_hyperparams", mp)
    _resizer(arch.image_resizer, f"{p}.image_resizer", levels[1], mp)
    anchors = arch.first_stage_anchor_generator if meta == "faster_rcnn" else \
        getattr(arch, "anchor_generator", None)
    if anchors is not None:
        _anchors(anchors, f"{p}.{'first_stage_' if meta == 'faster_rcnn' else ''}"
                          "anchor_generator", mp)
    if meta == "ssd":
        _box_predictor(arch.box_predictor, f"{p}.box_predictor", mp)
        cl = arch.loss.classification_loss
        q = f"{p}.loss.classification_loss"
        if cl.HasField("weighted_sigmoid_focal"):
            f = cl.weighted_sigmoid_focal
            if f.HasField("alpha"):
                mp.set(f"{q}.weighted_sigmoid_focal.alpha", "train.focal_loss_alpha", f.alpha)
            if f.HasField("gamma"):
                mp.set(f"{q}.weighted_sigmoid_focal.gamma", "train.focal_loss_gamma", f.gamma)
        for name in ("weighted_sigmoid", "weighted_softmax"):
            if cl.HasField(name):
                mp.set(f"{q}.{name}", "train.focal_loss_gamma", 0.0, "approximated",
                       "cross-entropy = focal loss with gamma 0 (RetinaNet's sigmoid)")
                mp.set(f"{q}.{name}", "train.focal_loss_alpha", 0.5, "approximated")
    post = arch.second_stage_post_processing if meta == "faster_rcnn" else \
        getattr(arch, "post_processing", None)
    if post is not None:
        _post_processing(post, f"{p}.{'second_stage_' if meta == 'faster_rcnn' else ''}"
                               "post_processing", mp)
    return desc


def _hyperparams(h, p: str, mp) -> None:
    if h.HasField("activation"):
        name = type(h).DESCRIPTOR.fields_by_name["activation"].enum_type.values[h.activation].name
        if name in _ACTIVATIONS:
            mp.set(f"{p}.activation", "model.activation", _ACTIVATIONS[name],
                   note="one activation for backbone, FPN and head")
        else:
            mp.note(f"{p}.activation", "approximated", "od's convs always have an activation")
    if h.regularizer.l2_regularizer.HasField("weight"):
        mp.set(f"{p}.regularizer.l2_regularizer.weight", "train.l2_weight_decay",
               h.regularizer.l2_regularizer.weight, "approximated",
               "Model Garden applies one L2 weight decay to all weights")


def _resizer(r, p: str, max_level: int, mp) -> None:
    if r.HasField("keep_aspect_ratio_resizer"):
        k, q = r.keep_aspect_ratio_resizer, f"{p}.keep_aspect_ratio_resizer"
        size = k.max_dimension if k.HasField("max_dimension") else 1024  # the API's default
        status = "mapped" if k.pad_to_max_dimension else "approximated"
        note = "Model Garden scales the longer side to input_size and pads to a square"
        mp.note(f"{q}.min_dimension", "approximated", "the longer side decides (max_dimension)")
        if k.HasField("pad_to_max_dimension"):
            mp.note(f"{q}.pad_to_max_dimension", "mapped", "Model Garden always pads")
        path = f"{q}.max_dimension"
        written = [f for f in ("max_dimension",) if k.HasField(f)]
    elif r.HasField("fixed_shape_resizer"):
        f, q = r.fixed_shape_resizer, f"{p}.fixed_shape_resizer"
        sides = [getattr(f, s) if f.HasField(s) else 300 for s in ("height", "width")]  # default
        if min(sides) < 1:
            raise ConfigError(f"{mp.source}: {q} height x width = {sides[0]} x {sides[1]} px; "
                              "both must be >= 1.")
        size, status = max(sides), "approximated"
        written = [s for s in ("height", "width") if f.HasField(s)]
        path = f"{q}.{written[0] if written else 'height'}"
        note = ("od keeps the aspect ratio and pads to a square; the OD API stretches to "
                "height x width")
        if path != f"{q}.width":
            mp.note(f"{q}.width", "approximated", "input_size is the larger of height and width")
    else:
        return
    if size < 1:
        raise ConfigError(f"{mp.source}: {path} = {size} px must be >= 1.")
    stride = 2 ** max_level
    if size % stride:
        rounded = max(1, round(size / stride)) * stride
        note += f"; {size} rounded to {rounded}, a multiple of 2**max_level = {stride}"
        size, status = rounded, "approximated"
    if path.rsplit(".", 1)[1] in written:
        mp.set(path, "model.input_size", size, status, note)
    else:  # the API's default size: a row of its own, as the file has no field to show it
        mp.implied(path.split("image_resizer.", 1)[1], "model.input_size", size,
                   f"the OD API's default; {note}")


def _anchors(a, p: str, mp) -> None:
    if a.HasField("multiscale_anchor_generator"):
        m, q = a.multiscale_anchor_generator, f"{p}.multiscale_anchor_generator"
        for field, key in (("min_level", "model.min_level"), ("max_level", "model.max_level"),
                           ("anchor_scale", "model.anchor_size"),
                           ("scales_per_octave", "model.num_scales")):
            if m.HasField(field):
                mp.set(f"{q}.{field}", key, getattr(m, field))
        if m.aspect_ratios:
            mp.set(f"{q}.aspect_ratios", "model.aspect_ratios", list(m.aspect_ratios))
        return
    for kind in ("ssd_anchor_generator", "grid_anchor_generator"):
        if a.HasField(kind):
            g, q = getattr(a, kind), f"{p}.{kind}"
            if g.aspect_ratios:
                mp.set(f"{q}.aspect_ratios", "model.aspect_ratios",
                       list(g.aspect_ratios))
            note = ("RetinaNet anchors: model.num_scales=3 sizes per level of anchor_size=4 "
                    "strides on the FPN levels")
            if kind == "grid_anchor_generator":
                mp.implied("RPN anchor scales", "model.num_scales", 1, "Model Garden's RPN")
                mp.implied("RPN anchor size", "model.anchor_size", 8.0, "Model Garden's RPN")
                note = ("Model Garden's RPN anchors: one size per FPN level, anchor_size=8 "
                        "strides (32-512 px on levels 2-6)")
            for field in g.DESCRIPTOR.fields_by_name:
                if field != "aspect_ratios":
                    mp.note(f"{q}.{field}", "approximated", note)


def _box_predictor(b, p: str, mp) -> None:
    if b.HasField("weight_shared_convolutional_box_predictor"):
        w, q = b.weight_shared_convolutional_box_predictor, \
            f"{p}.weight_shared_convolutional_box_predictor"
        if w.HasField("depth"):
            mp.set(f"{q}.depth", "model.head_filters", w.depth)
        if w.HasField("num_layers_before_predictor"):
            mp.set(f"{q}.num_layers_before_predictor", "model.head_convs",
                   w.num_layers_before_predictor)
        if w.HasField("use_depthwise"):
            mp.set(f"{q}.use_depthwise", "model.separable_conv", w.use_depthwise)
        _hyperparams(w.conv_hyperparams, f"{q}.conv_hyperparams", mp)
    elif b.HasField("convolutional_box_predictor"):
        c, q = b.convolutional_box_predictor, f"{p}.convolutional_box_predictor"
        mp.set(f"{q}.num_layers_before_predictor", "model.head_convs",
               c.num_layers_before_predictor, "approximated",
               "SSD's per-layer heads → RetinaNet's head shared by all levels")
        if c.HasField("use_depthwise"):
            mp.set(f"{q}.use_depthwise", "model.separable_conv", c.use_depthwise)
        _hyperparams(c.conv_hyperparams, f"{q}.conv_hyperparams", mp)


def _post_processing(post, p: str, mp) -> None:
    n, q = post.batch_non_max_suppression, f"{p}.batch_non_max_suppression"
    for field, key in (("score_threshold", "model.score_threshold"),
                       ("iou_threshold", "model.nms_iou_threshold"),
                       ("max_total_detections", "model.max_detections")):
        if n.HasField(field):
            value = getattr(n, field)
            mp.set(f"{q}.{field}", key, value)
    if post.HasField("score_converter"):
        name = odapi_schema.TrainEvalPipelineConfig.DESCRIPTOR.file.enum_types_by_name[
            "ScoreConverter"].values[post.score_converter].name
        if name == "SIGMOID" and "second_stage" not in p:
            mp.note(f"{p}.score_converter", "mapped", "RetinaNet's scores are sigmoids")
        elif name == "SOFTMAX" and "second_stage" in p:
            mp.note(f"{p}.score_converter", "mapped", "Model Garden's Faster R-CNN: softmax")
        else:
            mp.note(f"{p}.score_converter", "approximated",
                    f"{name} → sigmoid per class (RetinaNet's)")
