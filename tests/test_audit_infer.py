"""Inference-side audit: `od detect`, `od evaluate` and `od serve` on images and requests a new
user sends (a 3x500 strip, stems that collide, TIFF, a second run into the same --out, wrapped or
URL-safe base64, bad option values). The detector tests share one export of the tiny run."""
import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from od import detect, detect_files, detections, outputs
from od.detections import Detections
from od.errors import OdError


def _photo(tiny_run, k=0) -> Image.Image:
    root, _ = tiny_run
    return Image.open(sorted((root / "raw" / "images").iterdir())[k]).convert("RGB")


# ---- extreme aspect ratios: padded, not a crash ------------------------------------------------
def test_pad_aspect_pads_only_strips_and_unpad_maps_boxes_back():
    wide = detections.pad_aspect(np.zeros((3, 500, 3), np.uint8))
    assert wide.shape == (16, 500, 3) and (wide[:3] == 0).all()
    assert (wide[3:] == detections.PAD_RGB).all()
    assert detections.pad_aspect(np.zeros((500, 3, 3), np.uint8)).shape == (500, 16, 3)
    normal = np.zeros((40, 600, 3), np.uint8)
    assert detections.pad_aspect(normal) is normal
    det = Detections.make([[0.0, 0.1, 3 / 16, 0.5], [0.5, 0.0, 1.0, 1.0], [0.1, 0.2, 0.5, 0.3]],
                          [0.9, 0.8, 0.7], [1, 2, 3], 500, 16)
    back = detections.unpad(det, 500, 3)
    assert (back.width, back.height) == (500, 3)
    np.testing.assert_allclose(back.boxes, [[0, 0.1, 1, 0.5], [1.6 / 3, 0.2, 1, 0.3]],
                               atol=1e-6)
    assert back.class_ids.tolist() == [1, 3]  # the box wholly in the padding is dropped


def test_a_3x500_strip_is_detected_by_detect_and_serve(export_dir, tiny_run, tmp_path):
    """The model scales the long side to its input size (64 here): the short side rounded to 0 px
    and TensorFlow failed (`od: internal error`, HTTP 500)."""
    from od.serve import BatchModel

    photo = np.asarray(_photo(tiny_run))
    strip = np.ascontiguousarray(np.resize(photo, (3, 500, 3)))
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(strip).save(folder / "strip.png")
    Image.fromarray(strip.transpose(1, 0, 2).copy()).save(folder / "tall.png")
    r = detect.detect_folder(export_dir, folder, tmp_path / "out", min_score=0.0, crops=True,
                             progress=False)
    assert [(i["width"], i["height"]) for i in r["images"]] == [(500, 3), (3, 500)]
    assert r["skipped"] == []  # (a 4-step model may find nothing on a strip: no count asserted)
    for i in r["images"]:
        px = np.array([d["box_pixels"] for d in i["detections"]]).reshape(-1, 4)
        assert (px >= 0).all() and (px[:, [0, 2]] <= i["width"]).all()
        assert (px[:, [1, 3]] <= i["height"]).all()
    model = BatchModel(export_dir)
    dets = model.run([strip, photo, strip])
    assert dets[0].height == 3 and dets[0].width == 500
    np.testing.assert_array_equal(dets[0].boxes, dets[2].boxes)
    np.testing.assert_array_equal(dets[1].boxes, detect.Detector(export_dir)(photo).boxes)


def test_every_model_class_takes_a_strip_itself(export_dir, tiny_run):
    """Padding lives in each model class's own call (od.detections.detect_padded), so a caller
    that holds a run's Predictor or a bare .tflite needs nothing more than a Detector does."""
    from od.model import Predictor
    from od.tflite import TFLiteModel

    root, _ = tiny_run
    strip = np.ascontiguousarray(np.resize(np.asarray(_photo(tiny_run)), (3, 500, 3)))
    for model in (Predictor.from_run(root / "run"), TFLiteModel(export_dir / "model_int8.tflite"),
                  detect.Detector(export_dir), detect.Detector(export_dir, "tflite_int8")):
        det = model(strip)
        assert (det.width, det.height) == (500, 3)
        assert ((det.boxes >= 0) & (det.boxes <= 1)).all()


# ---- output names, TIFF, entries not read, a second run into the same --out ----------------------
def test_output_stems_are_unique():
    files = [Path(n) for n in ("a.jpg", "a.png", "a_png.jpg", "b.JPG", "b.jpg", "c.gif")]
    stems = detect_files.output_stems(files)
    assert stems[Path("c.gif")] == "c" and stems[Path("a_png.jpg")] == "a_png"
    assert stems[Path("a.jpg")] == "a_jpg" and stems[Path("b.JPG")] == "b_JPG"
    assert stems[Path("a.png")] == "a_png_2"  # a_png is another file's own stem
    assert len(set(stems.values())) == len(files)


def test_collisions_tiff_notes_and_a_second_run_remove_only_its_own_stale_files(
        export_dir, tiny_run, tmp_path, capsys):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    _photo(tiny_run, 0).save(folder / "a.jpg")
    _photo(tiny_run, 1).resize((50, 70)).save(folder / "a.png")
    _photo(tiny_run, 2).save(folder / "scan.tiff")
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    r = detect.detect_folder(export_dir, folder, out, min_score=0.0, voc=True, crops=True)
    note = capsys.readouterr().out
    assert "2 entries" in note and "notes.txt, sub/" in note
    assert [(i["image"], i.get("output")) for i in r["images"]] == [
        ("a.jpg", "a_jpg.jpg"), ("a.png", "a_png.jpg"), ("scan.tiff", None)]
    assert Image.open(out / "a_jpg.jpg").size == _photo(tiny_run, 0).size
    assert Image.open(out / "a_png.jpg").size == (50, 70)
    assert "<filename>a.png</filename>" in (out / "voc" / "a_png.xml").read_text()
    assert (out / "scan.jpg").is_file() and (out / "voc" / "scan.xml").is_file()
    crops = sorted(p.name for p in out.glob("crops/*"))  # (a 4-step model may find nothing)
    want = []
    for i in r["images"]:
        stem = Path(i.get("output", Path(i["image"]).stem)).stem
        want += [n for n, _ in detect_files.crop_names(stem, i["detections"])]
    assert crops == sorted(want)  # a_jpg_*, a_png_*: each image's own
    (out / "mine.txt").write_text("the user's")
    (out / "voc" / "mine.xml").write_text("the user's")
    (folder / "a.png").unlink()  # a second run: a.jpg alone keeps its own stem, no --voc/--crops
    r2 = detect.detect_folder(export_dir, folder, out, min_score=0.0, progress=False)
    assert [i["image"] for i in r2["images"]] == ["a.jpg", "scan.tiff"]
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert left == [".od-output.json", "a.jpg", "detections.csv", "detections.json", "mine.txt",
                    "scan.jpg", "voc", "voc/mine.xml"]
    marker = outputs.read_marker(out)
    assert sorted(marker["files"]) == ["a.jpg", "scan.jpg"] and "crops" not in marker["entries"]


def test_remove_stale_removes_only_plain_files_inside(tmp_path):
    out = tmp_path / "o"
    (out / "voc").mkdir(parents=True)
    (out / "voc" / "x.xml").write_text("od")
    (tmp_path / "outside.txt").write_text("keep")
    (out / "link.jpg").symlink_to(tmp_path / "outside.txt")
    (out / "voc" / "edited.xml").write_text("od")
    files = outputs.stamps(out, ["voc/x.xml", "voc/edited.xml", "link.jpg", "missing.jpg"])
    assert sorted(files) == ["voc/edited.xml", "voc/x.xml"]  # plain files only
    outputs.write_marker(out, "detect", ["voc", "link.jpg"], files=files)
    assert outputs.written_files(out, "detect") == files
    assert outputs.written_files(out, "evaluate") == {}
    (out / "voc" / "edited.xml").write_text("reviewed in LabelImg")  # the user's change
    stale = {**files, **{n: [2, 0] for n in ("../outside.txt", "link.jpg", "/etc/hosts",
                                              outputs.MARKER)}}
    removed = outputs.remove_stale(out, stale)
    assert removed == ["voc/x.xml"] and (out / "voc" / "edited.xml").read_text() == (
        "reviewed in LabelImg")
    assert (tmp_path / "outside.txt").read_text() == "keep" and (out / "link.jpg").is_symlink()
    assert outputs.read_marker(out)["entries"] == ["link.jpg", "voc"]  # left for the caller
    (out / "voc" / "edited.xml").unlink()  # voc/ gone: the next marker, pruned, drops it
    (out / "voc").rmdir()
    outputs.write_marker(out, "detect", ["new.jpg"], files={}, prune=True)
    assert outputs.read_marker(out)["entries"] == ["link.jpg", "new.jpg"]


# ---- od evaluate: option values and a glob matching nothing --------------------------------------
@pytest.mark.parametrize("kw, match", [({"min_score": float("nan")}, "--min-score nan"),
                                       ({"min_score": 1.5}, "--min-score 1.5"),
                                       ({"max_images": -1}, "--max-images -1")])
def test_evaluate_refuses_bad_options_before_loading_anything(tmp_path, kw, match):
    """--max-images -1 scored all images but the last; --min-score nan wrote NaN to
    metrics.json."""
    from od.evaluate import evaluate

    with pytest.raises(OdError, match=match):
        evaluate(tmp_path / "no_model", str(tmp_path / "no_data"), tmp_path / "out", **kw)
    assert not (tmp_path / "out").exists()


def test_evaluate_data_glob_matching_nothing_says_so(tmp_path):
    from od.errors import AnnotationError
    from od.eval_inputs import detect_format

    with pytest.raises(AnnotationError, match="matches no file"):
        detect_format(str(tmp_path / "test-*.tfrecord"))


# ---- od serve bodies ---------------------------------------------------------------------------
def _png(shape=(4, 6, 3), value=7) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full(shape, value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_serve_reads_wrapped_url_safe_and_unpadded_base64():
    from od.serve_io import parse_predict

    data = _png((9, 13, 3))
    forms = [base64.encodebytes(data).decode(),  # `base64 photo.png`: lines of 76
             base64.urlsafe_b64encode(data).decode(),
             base64.b64encode(data).decode().rstrip("=")]
    p = parse_predict(json.dumps({"instances": [{"b64": f} for f in forms]}).encode())
    assert [im.shape for im in p.images] == [(9, 13, 3)] * 3


@pytest.mark.parametrize("body, match", [
    ({"instances": [{"b64": "ab+_cd=="}]}, "mixes the standard"),
    ({"instances": [{"b64": "abcde"}]}, "invalid base64"),
    ({"instances": [[[[1, 2, 3]]]], "min_score": True}, "min_score True"),
    ({"instances": [[[[1, 2, 3]]]], "signature_name": "other"}, "signature_name 'other'"),
])
def test_serve_bad_bodies_get_their_error(body, match):
    from od.serve_io import BadRequest, parse_predict

    with pytest.raises(BadRequest, match=match):
        parse_predict(json.dumps(body).encode())
    ok = parse_predict(json.dumps({"instances": [[[[1, 2, 3]]]],
                                   "signature_name": "serving_default"}).encode())
    assert ok.images[0].shape == (1, 1, 3)
