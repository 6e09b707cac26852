"""The model zoo: Model Garden's published checkpoints as a table of frozen records.

``ZOO`` lists the pretrained checkpoints Model Garden publishes that fit the detectors `od` builds
(RetinaNet and Faster R-CNN), with the published figures (COCO box AP on val2017, ImageNet top-1,
params, GFLOPs) copied from the Model Garden docs named in each entry's ``source``. Model Garden
publishes no Faster R-CNN (nor Mask R-CNN) COCO checkpoint: the Faster R-CNN entries are
architectures whose checkpoint is an ImageNet backbone (``arch_only``), and their AP, where there is
one, is a related model's figure that ``ap_note`` names. Speed is never copied: it is
measured by :func:`od.zoo_bench.benchmark`, and speed records, selection by speed/AP and the
`od zoo list` table live in :mod:`od.zoo_select`. Downloads live in :mod:`od.download`. Nothing
here imports TensorFlow.
"""
from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Sequence

from od.errors import ZooError

MG = "https://storage.googleapis.com/tf_model_garden/vision/"
#: Model Garden's own ImageNet ResNet-50 init of RetinaNet, Mask R-CNN and Faster R-CNN (a prefix).
RESNET50_INIT = "gs://cloud-tpu-checkpoints/vision-2.0/resnet50_imagenet/ckpt-28080"
MOBILENETV2_INIT = "gs://tf_model_garden/vision/mobilenet/v2_1.0_float/ckpt-180648"
#: The detector architectures (``model.architecture``) zoo entries build.
ARCHITECTURES = ("retinanet", "faster_rcnn")
_MG_DOC = "official/vision/MODEL_GARDEN.md"
_QAT_DOC = "official/projects/qat/vision/README.md"



@dataclass(frozen=True)
class ZooEntry:
    """One published checkpoint.

    ``input_size`` is in pixels (square), ``params_m`` in millions, ``gflops`` in GFLOPs per image
    (None where the source publishes none), ``coco_ap`` is COCO val2017 box AP in percent (None for
    backbone checkpoints), ``imagenet_top1`` ImageNet top-1 accuracy in percent (backbones only).
    ``sha256`` is None when Model Garden publishes no checksum: :func:`od.download.download` then
    verifies nothing but still records the hash it computed in the cache marker.
    ``experiment`` is the Model Garden experiment the checkpoint was trained with (for reference);
    ``config`` is the pipeline config in ``configs/`` whose ``model`` section builds the
    checkpoint's architecture, with ``config_override`` (``(model field, value)`` pairs) on top:
    ``od train ... model=NAME`` and ``od zoo benchmark`` both build from it. ``init`` says what the
    checkpoint initialises ('detector' or 'backbone') and ``init_checkpoint_modules`` is the
    Model Garden task setting that restores all of it ('all' or 'backbone'); fine-tuning on new
    classes restores backbone and FPN of a detector and makes a new head.
    ``model_architecture`` is the ``model.architecture`` its config builds ('retinanet' or
    'faster_rcnn'). ``arch_only`` marks a detector architecture offered without a COCO checkpoint
    of its own: ``url`` is the ImageNet backbone it fine-tunes from (``init`` 'backbone'), and
    ``coco_ap``, when not None, is a published figure of a related model that ``ap_note`` names
    (never a checkpoint's own AP).
    """

    name: str
    architecture: str
    backbone: str
    input_size: int
    coco_ap: float | None
    imagenet_top1: float | None
    params_m: float | None
    gflops: float | None
    url: str
    sha256: str | None
    experiment: str
    init: str
    init_checkpoint_modules: str
    source: str
    config: str = ""
    config_override: tuple[tuple[str, object], ...] = ()
    note: str = ""
    model_architecture: str = "retinanet"
    arch_only: bool = False
    ap_note: str = ""

    @property
    def is_detector(self) -> bool:
        """True for a detector entry (built by `od zoo benchmark`, ranked by
        :func:`od.zoo_select.select`): a COCO detector checkpoint, or a detector architecture
        with only a backbone checkpoint."""
        return self.init == "detector" or self.arch_only

    @property
    def has_coco_checkpoint(self) -> bool:
        """True when ``url`` is a COCO-trained detector, so ``coco_ap`` is that checkpoint's AP."""
        return self.init == "detector"

    @property
    def ap_label(self) -> str:
        """``'36.8 AP'``, ``'42.3 AP, no COCO checkpoint'`` or ``'no published AP'``."""
        if self.coco_ap is None:
            return "no published AP"
        return f"{self.coco_ap} AP" + ("" if self.has_coco_checkpoint else ", no COCO checkpoint")


ZOO: tuple[ZooEntry, ...] = (
    ZooEntry("retinanet_resnet50_fpn_coco", "RetinaNet ResNet-50 FPN", "resnet:50", 640,
             36.8, None, 34.0, 97.0, MG + "retinanet/retinanet-resnet50fpn.tar.gz", None,
             "retinanet_resnetfpn_coco", "detector", "all", _MG_DOC,
             config="retinanet_resnet50_fpn_coco.yaml",
             note="72 epochs; the 12-epoch ImageNet-init run (34.3 AP) has no checkpoint"),
    ZooEntry("retinanet_spinenet49_coco", "RetinaNet SpineNet-49", "spinenet:49", 640,
             44.2, None, 28.5, 85.4, MG + "spinenet/spinenet-49-i640.tar.gz", None,
             "retinanet_spinenet_coco", "detector", "all",
             _MG_DOC + "; config retinanet/coco_spinenet49_tpu.yaml (beta path)",
             config="retinanet_spinenet49_coco.yaml",
             note="trained from scratch, 500 epochs"),
    ZooEntry("retinanet_spinenet96_coco", "RetinaNet SpineNet-96", "spinenet:96", 1024,
             48.5, None, 43.0, 265.4, MG + "spinenet/spinenet-96-i1024.tar.gz", None,
             "retinanet_spinenet_coco", "detector", "all",
             _MG_DOC + "; config retinanet/coco_spinenet96_tpu.yaml (beta path)",
             config="retinanet_spinenet96_coco.yaml",
             note="trained from scratch, 500 epochs"),
    ZooEntry("retinanet_spinenet143_coco", "RetinaNet SpineNet-143", "spinenet:143", 1280,
             50.0, None, 67.0, 524.0, MG + "spinenet/spinenet-143-i1280.tar.gz", None,
             "retinanet_spinenet_coco", "detector", "all",
             _MG_DOC + "; config retinanet/coco_spinenet143_tpu.yaml (beta path)",
             config="retinanet_spinenet143_coco.yaml",
             note="trained from scratch, 500 epochs"),
    ZooEntry("retinanet_mobile_spinenet49_coco", "RetinaNet Mobile SpineNet-49",
             "spinenet_mobile:49", 384, 28.1, None, 2.32, 1.0,
             MG + "retinanet/spinenet49mobile.tar.gz", None,
             "retinanet_mobile_coco", "detector", "all",
             _MG_DOC + "; config retinanet/coco_spinenet49_mobile_tpu.yaml",
             config="retinanet_mobile_spinenet49_coco.yaml",
             note="the yaml comment says 27.6 AP; MODEL_GARDEN.md says 28.1"),
    ZooEntry("retinanet_mobilenetv2_coco", "RetinaNet MobileNetV2 FPN", "mobilenet:MobileNetV2",
             256, 23.3, None, 2.27, None,
             MG + "qat/mobilenetv2_ssd_coco/mobilenetv2_ssd_i256_ckpt.tar.gz",
             None, "retinanet_mobile_coco", "detector", "all",
             _QAT_DOC + "; config retinanet/coco_mobilenetv2_tpu.yaml (23.5 AP in its comment)",
             config="retinanet_mobilenetv2_coco.yaml",
             note="the float checkpoint QAT starts from; not listed in MODEL_GARDEN.md"),
    ZooEntry("resnet50_imagenet", "ResNet-50 (ImageNet)", "resnet:50", 224,
             None, 77.1, None, None, MG + "resnet/resnet-50-i224.tar.gz", None,
             "retinanet_resnetfpn_coco", "backbone", "backbone", _MG_DOC,
             config="retinanet_resnet50_fpn_coco.yaml",
             note="200 epochs; Model Garden's own RetinaNet default init is "
                  "gs://cloud-tpu-checkpoints/vision-2.0/resnet50_imagenet/ckpt-28080"),
    ZooEntry("resnet101_imagenet", "ResNet-101 (ImageNet)", "resnet:101", 224,
             None, 78.3, None, None, MG + "resnet/resnet-101-i224.tar.gz", None,
             "retinanet_resnetfpn_coco", "backbone", "backbone", _MG_DOC,
             config="retinanet_resnet50_fpn_coco.yaml", config_override=(("backbone_id", "101"),)),
    ZooEntry("resnet152_imagenet", "ResNet-152 (ImageNet)", "resnet:152", 224,
             None, 78.7, None, None, MG + "resnet/resnet-152-i224.tar.gz", None,
             "retinanet_resnetfpn_coco", "backbone", "backbone", _MG_DOC,
             config="retinanet_resnet50_fpn_coco.yaml", config_override=(("backbone_id", "152"),)),
    ZooEntry("mobilenetv2_imagenet", "MobileNetV2 1.0 (ImageNet)", "mobilenet:MobileNetV2", 224,
             None, 72.78, None, None,
             MOBILENETV2_INIT, None,
             "retinanet_mobile_coco", "backbone", "backbone",
             "docs/vision/instance_segmentation.ipynb; top-1 from " + _QAT_DOC,
             config="retinanet_mobilenetv2_fpn_256.yaml",
             note="a checkpoint prefix, not a tarball; offline stand-in: "
                  "../shared/weights/mobilenet_v2_1.0_imagenet"),
    # Faster R-CNN: no COCO checkpoint is published, so the checkpoint is the ImageNet backbone
    # (`model=NAME` fine-tunes from it) and the AP is a related model's figure (ap_note).
    ZooEntry("fasterrcnn_resnet50_fpn_imagenet", "Faster R-CNN ResNet-50 FPN", "resnet:50", 640,
             42.3, None, None, None, RESNET50_INIT, None,
             "fasterrcnn_resnetfpn_coco", "backbone", "backbone",
             _MG_DOC + " (AP: Mask R-CNN R50-FPN row); checkpoint: the init_checkpoint of "
             "fasterrcnn_resnetfpn_coco in official/vision/configs/maskrcnn.py",
             config="fasterrcnn_resnet50_fpn_coco.yaml",
             note="a checkpoint prefix, not a tarball: Model Garden's ImageNet ResNet-50 init "
                  "(top-1 undocumented); no COCO checkpoint published",
             model_architecture="faster_rcnn", arch_only=True,
             ap_note="box AP of Model Garden's Mask R-CNN R50-FPN (640 px, trained from scratch "
                     "for 350 epochs, with a mask head; no checkpoint published), the nearest "
                     "published figure: Model Garden publishes no Faster R-CNN COCO result"),
    ZooEntry("fasterrcnn_mobilenetv2_fpn_imagenet", "Faster R-CNN MobileNetV2 FPN (CPU)",
             "mobilenet:MobileNetV2", 256, None, None, None, None, MOBILENETV2_INIT, None,
             "maskrcnn_mobilenet_coco", "backbone", "backbone",
             "configs/fasterrcnn_mobilenetv2_fpn_256.yaml (od's CPU variant); checkpoint: "
             "docs/vision/instance_segmentation.ipynb",
             config="fasterrcnn_mobilenetv2_fpn_256.yaml",
             note="a checkpoint prefix, not a tarball; offline stand-in: "
                  "../shared/weights/mobilenet_v2_1.0_imagenet; no COCO checkpoint published",
             model_architecture="faster_rcnn", arch_only=True,
             ap_note="no COCO AP published for a MobileNetV2 Faster R-CNN (or Mask R-CNN)"),
)


def get(name: str, table: Sequence[ZooEntry] = ZOO) -> ZooEntry:
    """The entry called ``name``. Raises ZooError naming the nearest names when there is none."""
    for e in table:
        if e.name == name:
            return e
    names = [e.name for e in table]
    lower = {n.lower(): n for n in names}  # RETINANET_... and ' name ' find their entry too
    near = [lower[m] for m in difflib.get_close_matches(str(name).strip().lower(), list(lower),
                                                        n=3, cutoff=0.4)]
    hint = f"did you mean {', '.join(near)}? " if near else ""
    raise ZooError(f"no zoo entry named {name!r}; {hint}`od zoo list` shows all "
                   f"{len(names)}: {', '.join(names)}")


def ap_source(entry: ZooEntry) -> str:
    """Where ``entry``'s COCO AP comes from, e.g. ``'COCO AP 36.8 (of its downloadable COCO
    checkpoint)'`` or, for a Faster R-CNN entry, ``'COCO AP 42.3 (no COCO checkpoint published;
    the AP is box AP of ...)'``."""
    if entry.has_coco_checkpoint:
        return f"COCO AP {entry.coco_ap} (of its downloadable COCO checkpoint)"
    what = "no COCO checkpoint published, fine-tunes from an ImageNet backbone"
    if entry.coco_ap is None:
        return f"no COCO AP ({what}; {entry.ap_note or 'none published'})"
    return f"COCO AP {entry.coco_ap} ({what}; the AP is the {entry.ap_note})"


def to_dict(entry: ZooEntry) -> dict:
    """``entry`` as a JSON-ready dict (the config override pairs as a dict)."""
    d = dataclasses.asdict(entry)
    d["config_override"] = dict(entry.config_override)
    return d
