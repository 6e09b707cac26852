"""TFLite export (float32 / float16 / int8) of a tiny trained run, checked against the checkpoint,
plus the pieces that need no training (box mapping back to the image, detection matching, errors).
The slow part exports the shared tiny run (tests/conftest.py) once: about 1.5 minutes on 2 cores.

After 4 steps every score is about 0.01, under both the model's NMS score threshold and the 0.3 of
the export check, so here the checks run but compare no detection; how closely the .tflite files
agree with the SavedModel on a trained model is measured by bench/bench_tflite.py (README)."""
import json

import numpy as np
import pytest

from od import detect, export, tflite
from od.config import PipelineConfig, load, save, set_key
from od.data import tfrecord
from od.detections import Detections
from od.errors import ExportError
from od.evaluate import decode_image

@pytest.fixture(scope="module")
def exported(tiny_run):
    root, _ = tiny_run
    report = export.export(root / "run", root / "export_tflite", formats=tuple(tflite.FILES),
                           calibration_images=8)
    return root, report


@pytest.mark.slow
def test_export_writes_and_checks_every_tflite_format(exported):
    root, report = exported
    checks = {c["format"]: c for c in report["checks"]}
    assert {"saved_model", *tflite.FILES} <= set(checks)
    assert all(c["ok"] for c in checks.values()), report
    sizes = {}
    for fmt, name in tflite.FILES.items():
        sizes[fmt] = (root / "export_tflite" / name).stat().st_size
        assert checks[fmt]["file"] == name and checks[fmt]["bytes"] == sizes[fmt]
        assert checks[fmt]["tolerance"]["max_score_diff"] == tflite.TOLERANCES[fmt][0]
        assert checks[fmt]["min_score"] == tflite.CHECK_MIN_SCORE
    assert sizes["tflite_int8"] < sizes["tflite_fp16"] < sizes["tflite"]
    assert json.loads((root / "export_tflite" / "export_check.json").read_text()) == report
    hidden = [p.name for p in (root / "export_tflite").glob(".*") if p.name != ".od-output.json"]
    assert not hidden, f"no temporary SavedModel left behind: {hidden}"  # (the marker is od's)


@pytest.mark.slow
def test_tflite_signature(exported):
    root, _ = exported
    k = load(root / "run" / "pipeline.yaml").model.max_detections
    for name in tflite.FILES.values():
        model = tflite.TFLiteModel(root / "export_tflite" / name)
        assert model.input_size == 64
        x, _ = tflite.preprocess(np.full((40, 80, 3), 128, np.uint8), 64)
        assert x.shape == (1, 64, 64, 3) and x.dtype == np.float32
        out = model.raw(x)
        assert out["detection_boxes"].shape == (1, k, 4)
        assert out["detection_scores"].shape == out["detection_classes"].shape == (1, k)
        assert out["num_detections"].shape == (1,)
        assert all(v.dtype == np.float32 for v in out.values())


@pytest.mark.slow
def test_detector_runs_an_export_folders_tflite(exported):
    root, _ = exported
    image = decode_image(tfrecord.read(root / "data")[0].encoded)
    for fmt in ("saved_model", *tflite.FILES):
        det = detect.Detector(root / "export_tflite", format=fmt)
        got = det(image)
        assert (got.width, got.height) == (image.shape[1], image.shape[0])
        assert ((got.boxes >= 0) & (got.boxes <= 1)).all() and (got.class_ids >= 1).all()
        assert det.label_map is not None
    with pytest.raises(ExportError, match="unknown detector format 'onnx'"):
        detect.Detector(root / "export_tflite", format="onnx")


def _boxes(anchors: np.ndarray, share, aspect_ratios: int) -> np.ndarray:
    """The boxes ``construct_head(run, share)`` makes: each anchor scaled about its centre by its
    scale's share."""
    per_anchor = np.repeat(np.asarray(share, np.float64), aspect_ratios)
    centre, side = (anchors[:, :2] + anchors[:, 2:]) / 2, anchors[:, 2:] - anchors[:, :2]
    side = side * np.tile(per_anchor, len(anchors) // len(per_anchor))[:, None]
    return np.concatenate([centre - side / 2, centre + side / 2], axis=1)


def _ious(b: np.ndarray) -> np.ndarray:
    """IoU of every pair of boxes [N, 4] (Model Garden's ``box_ops.bbox_overlap``), 0 on the
    diagonal (a box with itself)."""
    from official.vision.ops import box_ops

    iou = box_ops.bbox_overlap(b[None].astype(np.float32), b[None].astype(np.float32)).numpy()[0]
    np.fill_diagonal(iou, 0.0)
    return iou


def _edge_design(cfg) -> tuple:
    """Box shares per anchor scale for which many boxes cross the input's edge, no pair of
    boxes has an IoU within 0.03 of the NMS threshold, clipped to the input or not (so no float
    noise can flip an NMS decision), and the most pairs overlap above it only once clipped:
    (share, number of such pairs). A grid search over 0.5-2.0 per scale."""
    import itertools

    from od.anchors import Anchors

    t, size = cfg.model.nms_iou_threshold, cfg.model.input_size
    anchors, best = Anchors.of(cfg.model).boxes().numpy().astype(np.float64), (0, ())
    for share in itertools.product(np.arange(0.5, 2.01, 0.15), repeat=cfg.model.num_scales):
        b = _boxes(anchors, share, len(cfg.model.aspect_ratios))
        unclipped, clipped = _ious(b), _ious(np.clip(b, 0, size))
        if min(np.abs(unclipped - t).min(), np.abs(clipped - t).min()) > 0.03:
            flips = int(((clipped > t) & (unclipped < t)).sum()) // 2
            best = max(best, (flips, tuple(float(v) for v in share)))
    return best[1], best[0]


@pytest.fixture(scope="module")
def edge_export(tiny_run, tmp_path_factory):
    """The tiny run with its heads set (conftest.construct_head, ``_edge_design``) so that many
    boxes cross the 64 px input's edge, exported as SavedModel, float and fp16 TFLite."""
    import shutil

    from tests.conftest import construct_head

    root, _ = tiny_run
    work = tmp_path_factory.mktemp("tflite_edge")
    shutil.copytree(root / "run", work / "run")
    cfg = load(work / "run" / "pipeline.yaml")  # every box NMS keeps comes out (others: 1e-13)
    for key, value in (("model.max_detections", 400), ("model.score_threshold", 0.01)):
        cfg = set_key(cfg, key, value)
    save(cfg, work / "run" / "pipeline.yaml")
    share, flips = _edge_design(cfg)
    assert flips >= 5, (share, flips)  # pairs NMS decides differently clipped and unclipped
    construct_head(work / "run", share)
    export.export(work / "run", work / "export",
                  formats=("saved_model", "tflite", "tflite_fp16"))
    return root, work


@pytest.mark.slow
def test_float_tflite_clips_boxes_before_nms_as_the_savedmodel_does(edge_export):
    """Model Garden's graph clips boxes to the S×S input before NMS, TFLite's op does not; the
    float files clip in the graph (od.tflite), so with boxes crossing the edge they return the
    SavedModel's detections, every one of them, in order."""
    root, work = edge_export
    saved_model = detect.Detector(work / "export")
    images = [decode_image(r.encoded) for r in tfrecord.read(root / "data")[:6]]
    compared = 0
    fp16 = detect.Detector(work / "export", format="tflite_fp16")
    model = detect.Detector(work / "export", format="tflite")
    for image in images:
        ref, got = saved_model(image), model(image)
        assert len(ref) == len(got) > 10, (len(ref), len(got))
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-4)
        np.testing.assert_allclose(got.boxes, ref.boxes, atol=1e-4)
        assert (got.class_ids == ref.class_ids).all()
        compared += len(ref)
        # float16 weights move scores by ~1e-3, which may swap two near-equal ones: pairs
        got = fp16(image)
        assert len(got) == len(ref)
        c = tflite.compare("tflite_fp16", ref, got, min_score=0.0)
        assert c["ok"] and c["suppressed_by_class_agnostic_nms"] == 0, c
    assert compared > 100


# ---- no training needed --------------------------------------------------------------------
def test_unknown_export_format_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match=r"unknown export format.*tflite_int4.*tflite_int8"):
        export.export(tmp_path / "run", tmp_path / "out", formats=("tflite_int4",))
    assert not (tmp_path / "out").exists()


def test_missing_or_broken_tflite_file_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="no such TFLite file"):
        tflite.TFLiteModel(tmp_path / "model.tflite")
    (tmp_path / "model.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ExportError, match="re-export it"):
        tflite.TFLiteModel(tmp_path / "model.tflite")


def test_int8_without_training_data_is_a_clear_error(tmp_path):
    cfg = set_key(PipelineConfig(), "data.train", str(tmp_path / "gone" / "train-*.tfrecord"))
    with pytest.raises(ExportError, match="restore that data folder or export without"):
        tflite.calibration_files(cfg)
    old_run = set_key(PipelineConfig(), "data.train", "gone/train-*.tfrecord")  # an older run
    with pytest.raises(ExportError, match="relative path .* folder training ran in"):
        tflite.calibration_files(old_run)


def test_boxes_map_back_from_the_padded_input_to_the_image():
    # 100x200 image into 64x64: scaled by 0.32 to 32x64, padded below; the input's top half is
    # the whole image.
    _, info = tflite.preprocess(np.zeros((100, 200, 3), np.uint8), 64)
    np.testing.assert_allclose(info[2], [0.32, 0.32], rtol=1e-6)
    boxes = tflite.to_image_boxes(np.array([[0.0, 0.0, 0.5, 1.0], [0.125, 0.25, 0.25, 0.5]]),
                                  info, 64)
    np.testing.assert_allclose(boxes, [[0, 0, 1, 1], [0.25, 0.25, 0.5, 0.5]], atol=1e-6)


def test_compare_matches_by_class_and_iou():
    ref = Detections.make([[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.52], [0.6, 0.6, 0.9, 0.9]],
                          [0.9, 0.8, 0.1], [1, 2, 1])
    same = tflite.compare("tflite", ref, ref)
    assert same["ok"] and same["min_matched_iou"] > 0.999 and same["max_score_diff"] == 0.0
    # TFLite's class-agnostic NMS keeps only the higher-scoring of two overlapping boxes
    agnostic = Detections.make(ref.boxes[[0, 2]], [0.9, 0.1], [1, 1])
    c = tflite.compare("tflite", ref, agnostic)
    assert c["ok"] and c["suppressed_by_class_agnostic_nms"] == 1
    moved = Detections.make([[0.2, 0.2, 0.6, 0.6], [0.1, 0.1, 0.5, 0.52]], [0.85, 0.8], [1, 2])
    c = tflite.compare("tflite", ref, moved)
    assert not c["ok"] and c["min_matched_iou"] < 0.6
    assert tflite.compare("tflite_int8", ref, moved, min_score=0.95)["ok"]  # nothing compared
    wrong_class = Detections.make(ref.boxes[:1], [0.9], [3])
    c = tflite.compare("tflite_int8", ref, wrong_class)
    assert not c["ok"] and c["min_matched_iou"] == 0.0
