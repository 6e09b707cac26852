"""Audit of od/tiling.py (``od detect --tile``): window geometry, boxes mapped back exactly,
fragments of objects cut by tile borders joined, option errors, cost; a fake detector that knows
where every object is (each pixel encodes its own position), and the tiny model where needed."""
import json
import time

import numpy as np
import pytest

from od import tiling
from od.detections import Detections
from od.errors import OdError


def encoded(width: int, height: int) -> np.ndarray:
    """uint8 [H, W, 3] whose pixel (x, y) holds x | y << bx in its 24 bits (bx bits for x)."""
    bx = max(1, int(np.ceil(np.log2(width))))
    v = np.arange(width, dtype=np.uint32)[None] | (np.arange(height, dtype=np.uint32)[:, None]
                                                  << bx)
    return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], -1).astype(np.uint8)


class FakeDetector:
    """Finds ``objects`` (x0, y0, x1, y1, class, score in image px) in any window of an
    ``encoded`` image: the visible part of each, clipped to the window as a real detector clips
    a cut object, if its short side is >= ``min_px`` at a ``input_size`` model input; score
    ``score`` (with ``partial``: times 0.8 + 0.2 * the visible share). ``calls``: the windows it
    saw (x0, y0, w, h)."""

    def __init__(self, objects, width, height, input_size=256, min_px=4.0, partial=False):
        self.o = np.asarray(objects, float).reshape(-1, 6)
        self.bx = max(1, int(np.ceil(np.log2(width))))
        self.input_size, self.min_px, self.partial, self.calls = input_size, min_px, partial, []

    def __call__(self, img):
        h, w = img.shape[:2]
        v = (int(img[0, 0, 0]) << 16) | (int(img[0, 0, 1]) << 8) | int(img[0, 0, 2])
        x0, y0 = v & ((1 << self.bx) - 1), v >> self.bx
        self.calls.append((x0, y0, w, h))
        o, s = self.o, self.input_size / max(h, w)
        vx0, vy0 = np.maximum(o[:, 0], x0), np.maximum(o[:, 1], y0)
        vx1, vy1 = np.minimum(o[:, 2], x0 + w), np.minimum(o[:, 3], y0 + h)
        ok = np.minimum(vx1 - vx0, vy1 - vy0) * s >= self.min_px
        vis = (vx1 - vx0) * (vy1 - vy0) / ((o[:, 2] - o[:, 0]) * (o[:, 3] - o[:, 1]))
        boxes = np.stack([(vy0 - y0) / h, (vx0 - x0) / w, (vy1 - y0) / h, (vx1 - x0) / w], 1)
        score = o[:, 5] * (0.8 + 0.2 * vis) if self.partial else o[:, 5]
        order = np.argsort(-score[ok], kind="stable")
        return Detections.make(boxes[ok][order], score[ok][order], o[ok, 4][order], w, h)


def truth(objects, width, height):
    o = np.asarray(objects, float).reshape(-1, 6)
    return (np.stack([o[:, 1] / height, o[:, 0] / width, o[:, 3] / height, o[:, 2] / width], 1),
            o[:, 4].astype(int), o[:, 5])


def assert_found_once(det, objects, width, height):
    """Each object exactly once, exact box (normalised to the image), its class, its score."""
    boxes, classes, scores = truth(objects, width, height)
    assert len(det) == len(objects), (det.boxes * [height, width, height, width]).round(1)
    order = np.lexsort((boxes[:, 1], boxes[:, 0], classes))
    got = np.lexsort((det.boxes[:, 1], det.boxes[:, 0], det.class_ids))
    np.testing.assert_allclose(det.boxes[got], boxes[order], atol=1e-5)
    assert det.class_ids[got].tolist() == classes[order].tolist()
    np.testing.assert_allclose(det.scores[got], scores[order], atol=1e-6)
    assert np.all(np.diff(det.scores) <= 0) and (det.width, det.height) == (width, height)


@pytest.mark.parametrize("size", [(1000, 600), (256, 256), (257, 256), (255, 300), (5000, 40),
                                  (40, 5000), (333, 777), (1, 1), (2592, 1944)])
@pytest.mark.parametrize("tile,overlap", [(256, 0.2), (100, 0.25), (32, 0.5), (64, 0.0),
                                          (128, 0.9)])
def test_windows_cover_every_pixel_with_the_documented_overlap(size, tile, overlap):
    width, height = size
    step = max(1, int(tile * (1 - overlap)))
    per_side = [1 if n <= tile else -(-(n - tile) // step) + 1 for n in size]
    if per_side[0] * per_side[1] > tiling.MAX_TILES:
        with pytest.raises(OdError, match=f"needs {per_side[0] * per_side[1]} tiles"):
            tiling.windows(width, height, tile, overlap)
        return
    wins = tiling.windows(width, height, tile, overlap)
    seen = np.zeros((height, width), np.int32)
    for x0, y0, x1, y1 in wins:
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
        assert (x1 - x0, y1 - y0) == (min(tile, width), min(tile, height))
        seen[y0:y1, x0:x1] += 1
    assert seen.min() >= 1
    for axis, n in ((0, width), (1, height)):
        starts = sorted({w[axis] for w in wins})
        assert starts[0] == 0 and starts[-1] == max(0, n - tile)  # the last flush with the edge
        assert all(0 < b - a <= step for a, b in zip(starts, starts[1:]))  # overlap >= documented
        assert len(starts) == per_side[axis]  # the fewest
    assert len(wins) == len(set(wins))


def test_tile_count_is_bounded_with_a_message_naming_the_fix():
    assert len(tiling.windows(10_000, 10_000, 256, 0.2)) == 49 * 49
    with pytest.raises(OdError) as e:
        tiling.windows(9000, 9000, 32, 0.9)  # 2,991² windows: days of model calls
    msg = str(e.value)
    assert "\n" not in msg and "--tile 32" in msg and "9000x9000" in msg and "8946081" in msg
    fit = int(msg.split("use --tile ")[1].split()[0])
    assert len(tiling.windows(9000, 9000, fit, 0.9)) <= tiling.MAX_TILES


@pytest.mark.parametrize("tile,overlap,named", [
    (-5, 0.2, "--tile -5"), (31, 0.2, "--tile 31"), (0, 0.2, "--tile 0"),
    (32.5, 0.2, "--tile 32.5"), ("256", 0.2, "--tile '256'"), (True, 0.2, "--tile True"),
    (float("nan"), 0.2, "--tile nan"), (256, 0.95, "--tile-overlap 0.95"),
    (256, -0.1, "--tile-overlap -0.1"), (256, float("nan"), "--tile-overlap nan")])
def test_bad_tile_options_are_one_line_od_errors(tile, overlap, named):
    with pytest.raises(OdError) as e:
        tiling.windows(1000, 1000, tile, overlap)
    assert str(e.value).startswith(named) and "\n" not in str(e.value)


def test_a_whole_float_tile_is_a_tile():
    assert tiling.windows(1000, 1000, 256.0, 0)[0] == (0, 0, 256, 256)


def test_cli_refuses_a_bad_tile_before_loading_any_model(tmp_path, capsys):
    from PIL import Image

    from od.cli import main

    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(tmp_path / "a.png")
    for bad, named in (("-5", "--tile -5"), ("8", "--tile 8")):
        code = main(["detect", "--model", str(tmp_path / "no_model"), "--images",
                     str(tmp_path / "a.png"), "--out", str(tmp_path / f"o{bad}"), "--tile", bad])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith(f"od: error: {named}") and "Traceback" not in err
    code = main(["detect", "--model", str(tmp_path / "m"), "--images", str(tmp_path / "a.png"),
                 "--out", str(tmp_path / "o2"), "--tile", "256", "--tile-overlap", "1.5"])
    assert code == 2 and "--tile-overlap 1.5" in capsys.readouterr().err
    code = main(["detect", "--model", str(tmp_path / "m"), "--images", str(tmp_path / "a.png"),
                 "--out", str(tmp_path / "o3"), "--tile-overlap", "5"])  # was ignored silently
    assert code == 2 and "--tile-overlap 5" in capsys.readouterr().err


def test_boxes_map_back_exactly_on_non_square_images():
    """Objects inside one tile, on tile borders, at tile corners and at the image edges of a
    1000x420 image: each comes back once with its exact box, class and score."""
    w, h = 1000, 420
    objects = [(10, 10, 40, 30, 1, 0.9), (190, 60, 230, 100, 2, 0.8),  # 2nd crosses x=204
               (395, 150, 430, 190, 1, 0.7),  # across two borders (x=408, y=164)
               (960, 380, 1000, 420, 3, 0.95), (600, 0, 640, 15, 1, 0.6),
               (0, 300, 25, 420, 2, 0.85)]
    det = tiling.detect_tiled(FakeDetector(objects, w, h), encoded(w, h), 256, 0.2)
    assert_found_once(det, objects, w, h)


def test_objects_larger_than_the_overlap_are_joined_from_their_fragments():
    """Objects no tile sees whole (wider than the 51 px overlap, cut in every tile) and too small
    to be found in the whole image: the NMS-only merge before this audit returned 14 partial
    boxes for these 4 objects, none exact (and 43 for the large one below); now each is one box
    with its exact extent."""
    w, h = 2000, 1500
    objects = [(180, 30, 300, 110, 1, 0.9),  # across x=204/256
               (390, 390, 510, 510, 1, 0.8),  # across a tile corner
               (700, 600, 1290, 700, 2, 0.7),  # 590 px long: through 3 tiles
               (1600, 1000, 1700, 1400, 1, 0.9)]  # 400 px tall
    fake = FakeDetector(objects, w, h, min_px=16)  # not found in the whole image (s = 0.128)
    det = tiling.detect_tiled(fake, encoded(w, h), 256, 0.2)
    assert_found_once(det, objects, w, h)
    big = FakeDetector([(300, 200, 1500, 1100, 3, 0.9)], w, h)  # the whole image finds it
    assert_found_once(tiling.detect_tiled(big, encoded(w, h), 256, 0.2),
                      [(300, 200, 1500, 1100, 3, 0.9)], w, h)


def test_crowded_and_multi_class_objects_on_borders_all_stay():
    """Same-class objects that overlap each other across a tile border (IoU 0.3, one half
    inside the other), and two classes at one place, stay separate objects."""
    w, h = 700, 500
    objects = [(180, 40, 260, 120, 1, 0.9), (215, 60, 295, 140, 1, 0.8),  # IoU ~0.3
               (380, 200, 480, 300, 1, 0.9), (395, 220, 445, 270, 1, 0.6),  # one inside
               (100, 380, 160, 440, 1, 0.9), (100, 380, 160, 440, 2, 0.7)]  # two classes
    fake = FakeDetector(objects, w, h, min_px=40)  # not in the whole image: the hard case
    assert_found_once(tiling.detect_tiled(fake, encoded(w, h), 256, 0.2), objects, w, h)


def test_random_scenes_give_one_exact_box_per_object():
    """Generated scenes (objects 8-400 px, any position, two classes, no two overlapping),
    several tile sizes and overlaps, non-square images and 5000x40 / 40x3000 strips: every
    object once, exactly. The NMS-only merge before this audit returned 51, 112 and 69 boxes
    for the 25 objects of the first three."""
    rng = np.random.default_rng(7)
    for w, h, tile, overlap in ((1500, 900, 256, 0.2), (900, 1300, 128, 0.5),
                                (3000, 300, 200, 0.25), (5000, 40, 256, 0.2),
                                (40, 3000, 256, 0.2)):
        objects = []
        while len(objects) < 25:
            s = float(rng.choice([8, 20, 60, 120, 250, 400]))
            bw, bh = min(s * rng.uniform(0.6, 1.6), w - 1), min(s, h - 1)
            x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            b = (x0, y0, x0 + bw, y0 + bh, int(rng.integers(1, 3)), rng.uniform(0.5, 0.99))
            if not any(b[0] < o[2] and o[0] < b[2] and b[1] < o[3] and o[1] < b[3]
                       for o in objects):
                objects.append(b)
        fake = FakeDetector(objects, w, h, min_px=2)
        det = tiling.detect_tiled(fake, encoded(w, h), tile, overlap)
        assert_found_once(det, objects, w, h)


def test_whole_image_is_detected_once_and_every_tile_once():
    w, h = 1000, 600
    fake = FakeDetector([(400, 300, 900, 580, 1, 0.9)], w, h)
    tiling.detect_tiled(fake, encoded(w, h), 256, 0.2)
    wins = tiling.windows(w, h, 256, 0.2)
    assert fake.calls == [(0, 0, w, h)] + [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in wins]
    one = FakeDetector([(10, 10, 50, 50, 1, 0.9)], 200, 100)  # one window: as without tiles
    det = tiling.detect_tiled(one, encoded(200, 100), 256, 0.2)
    assert one.calls == [(0, 0, 200, 100)] and len(det) == 1


def test_scores_max_detections_and_zero_scores():
    """Scores are the detector's own, bit for bit, sorted; ``max_detections`` keeps the best;
    a score of exactly 0 survives the merge (the old one dropped it)."""
    a = Detections.make([[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.6, 0.6], [0.7, 0.7, 0.8, 0.8]],
                        [0.3, 0.0, 0.123456789], [1, 1, 2])
    b = Detections.make([[0.1, 0.3, 0.2, 0.4]], [0.9], [5])
    m = tiling.merge([a, b], 640, 480, windows=[(0, 0, 640, 480), (0, 0, 640, 480)])
    assert m.scores.tolist() == np.float32([0.9, 0.3, 0.123456789, 0.0]).tolist()
    assert m.class_ids.tolist() == [5, 1, 2, 1]
    top = tiling.merge([a, b], 640, 480, max_detections=2)
    assert top.scores.tolist() == np.float32([0.9, 0.3]).tolist()
    w, h = 1200, 500
    objects = [(20 + 60 * k, 20 + (k % 5) * 90, 50 + 60 * k, 50 + (k % 5) * 90, 1,
                0.5 + k / 100) for k in range(19)]
    det = tiling.detect_tiled(FakeDetector(objects, w, h), encoded(w, h), 256, 0.2,
                              max_detections=7)
    assert len(det) == 7 and np.allclose(det.scores, sorted((o[5] for o in objects))[-7:][::-1])
    for bad in ({"max_detections": 0}, {"iou_threshold": 0.0}, {"max_detections": 2.5}):
        with pytest.raises(OdError):
            tiling.detect_tiled(FakeDetector(objects, w, h), encoded(w, h), 256, **bad)


def test_merge_time_is_linear_in_the_tiles():
    """Merging 4x the tiles (20 overlapping boxes each, a quarter of them cut) takes about 4x
    the time, not 16x (every box is compared only with boxes of neighbouring windows)."""
    rng = np.random.default_rng(0)

    def parts_for(side):
        wins = [(0, 0, side, side), *tiling.windows(side, side, 256, 0.2)]
        parts = []
        for x0, y0, x1, y1 in wins:
            yx = rng.random((20, 2)) * 0.9
            b = np.concatenate([yx, np.minimum(yx + 0.02 + rng.random((20, 2)) * 0.3, 1)], 1)
            b[:5, 3] = 1.0
            b = b * ([(y1 - y0) / side, (x1 - x0) / side] * 2) + [y0 / side, x0 / side] * 2
            parts.append(Detections.make(b, rng.random(20), rng.integers(1, 6, 20)))
        return parts, wins

    times = []
    for side in (2000, 4000):  # 100 and 400 tiles
        parts, wins = parts_for(side)
        tiling.merge(parts[:3], side, side, windows=wins[:3])  # TensorFlow warmed up
        t = time.perf_counter()
        tiling.merge(parts, side, side, windows=wins)
        times.append(time.perf_counter() - t)
    assert times[1] < 10 * times[0] + 0.5, times


def test_tiled_real_model_saved_model_and_tflite(export_dir, tmp_path):
    """The tiny model (score threshold 0: 50 boxes a call, the merge's worst case) through the
    SavedModel and its int8 TFLite file (which finds nothing with 4 training steps: the tiles
    still go through it), tiled: one call per window, boxes in the image, sorted, capped;
    ``--min-score`` applied after the merge; an image of one tile gives the untiled result."""
    from PIL import Image

    from od.detect import Detector, detect_folder

    image = np.random.default_rng(0).integers(0, 255, (300, 500, 3), np.uint8)
    found = {}
    for fmt in ("saved_model", "tflite_int8"):
        model, calls = Detector(export_dir, fmt), []

        def counted(im):
            calls.append(im.shape)
            return model(im)

        det = found[fmt] = tiling.detect_tiled(counted, image, 128, 0.2)
        assert len(calls) == 1 + len(tiling.windows(500, 300, 128, 0.2))
        assert det.width == 500 and det.height == 300 and len(det) <= 300
        assert len(det) > 0 or fmt == "tflite_int8"
        assert np.all((det.boxes >= -1e-6) & (det.boxes <= 1 + 1e-6))
        assert np.all(np.diff(det.scores) <= 0)
        small = image[:120, :100]
        np.testing.assert_array_equal(tiling.detect_tiled(model, small, 128).boxes,
                                      model(small).boxes)
    (tmp_path / "im").mkdir()
    Image.fromarray(image).save(tmp_path / "im" / "a.png")
    cut = float(np.median(found["saved_model"].scores))
    doc = detect_folder(export_dir, tmp_path / "im", tmp_path / "out", min_score=cut,
                        tile=128, progress=False)
    (only,) = doc["images"]
    assert len(only["detections"]) == int((found["saved_model"].scores >= cut).sum())
    assert (only["width"], only["height"]) == (500, 300)


def test_evaluate_with_tiles_scores_what_od_detect_tile_finds(tiny_run, tmp_path):
    """od evaluate --tile N scores the tiled detections (to measure what tiling gains on
    labelled photos); a bad --tile is refused before the model loads."""
    from od.cli import main
    from od.evaluate import evaluate

    root, _ = tiny_run
    r = evaluate(root / "run", str(root / "data"), tmp_path / "ev", tile=40, progress=False,
                 html=False)
    assert r["tiles"] == {"tile": 40, "overlap": 0.2} and r["coco"]["num_images"] == 6
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["tiles"]["tile"] == 40
    code = main(["evaluate", "--model", str(tmp_path / "no_model"), "--data", str(root / "data"),
                 "--out", str(tmp_path / "ev2"), "--tile", "8"])
    assert code == 2


def test_detect_folder_skips_a_photo_over_the_tile_limit_and_does_the_rest(tiny_run, tmp_path,
                                                                            monkeypatch):
    """A photo needing more than MAX_TILES windows used to stop the whole folder run (no
    detections.json); it is now listed under skipped with the message, the others detected."""
    from PIL import Image

    from od.detect import detect_folder

    root, _ = tiny_run
    monkeypatch.setattr(tiling, "MAX_TILES", 4)
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGB", (80, 64), (90, 120, 200)).save(pics / "big.png")   # 3 x 2 = 6 windows
    Image.new("RGB", (40, 32), (90, 120, 200)).save(pics / "small.png")  # 2 x 1 = 2 windows
    detect_folder(root / "run", pics, tmp_path / "out", tile=32, progress=False)
    doc = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert [e["image"] for e in doc["images"]] == ["small.png"]
    assert doc["skipped"][0]["image"] == "big.png" and "--tile" in doc["skipped"][0]["reason"]
