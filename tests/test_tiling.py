"""od/tiling.py: tile windows, boxes mapped back from tiles and merged by per-class NMS."""
import numpy as np
import pytest

from od.detections import Detections


def test_tiles_cover_the_image_with_overlap():
    from od import tiling

    w = tiling.windows(1000, 600, 256, 0.2)
    assert w[0][:2] == (0, 0) and max(x1 for *_, x1, _ in w) == 1000
    assert max(y1 for *_, y1 in w) == 600
    assert all(x1 - x0 == 256 and y1 - y0 == 256 for x0, y0, x1, y1 in w)
    assert tiling.windows(200, 100, 256) == [(0, 0, 200, 100)]
    with pytest.raises(tiling.OdError, match="--tile 8"):
        tiling.windows(100, 100, 8)
    for size in ((1000, 600), (200, 100), (4000, 3000), (257, 1023)):
        for tile, overlap in ((256, 0.2), (128, 0.5), (300, 0.0)):
            assert tiling.check_count(*size, tile, overlap) == len(tiling.windows(*size, tile,
                                                                                  overlap))
    with pytest.raises(tiling.OdError, match="use --tile 128 or more"):
        tiling.check_count(8000, 8000, 64, 0.2)


def test_tiled_detection_maps_boxes_back_and_merges_duplicates():
    """A fake detector that finds one object (bright pixels) wherever it sees it: the tiles'
    boxes map back onto the object and NMS leaves one box per object."""
    from od import tiling

    image = np.zeros((400, 600, 3), np.uint8)
    image[190:210, 290:310] = 255  # a 20 px object in the middle, seen by several tiles

    def detector(img):
        ys, xs = np.nonzero(img[..., 0])
        h, w = img.shape[:2]
        if not len(ys):
            return Detections.make(np.zeros((0, 4)), [], [], w, h)
        box = [ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w]
        return Detections.make([box], [0.9], [2], w, h)

    det = tiling.detect_tiled(detector, image, 256, 0.25)
    assert len(det) == 1 and det.class_ids[0] == 2 and det.width == 600
    np.testing.assert_allclose(det.boxes[0], [190 / 400, 290 / 600, 210 / 400, 310 / 600],
                               atol=1e-5)


def test_detect_tile_on_a_tiny_run(tiny_run, tmp_path):
    """`od detect --tile` with a real exported model: one merged result per image, boxes inside
    the image, as many or more candidates than without tiles (before the score cut)."""
    from od import export
    from od.cli import main
    from od.detect import Detector, load_image
    from od import tiling

    root, _ = tiny_run
    export.export(root / "run", tmp_path / "export", formats=("saved_model",))
    img = sorted((root / "raw" / "images").iterdir())[0]
    det = Detector(tmp_path / "export")
    image = load_image(img)
    tiled = tiling.detect_tiled(det, image, 32, 0.2)
    assert tiled.width == image.shape[1]
    assert np.all((tiled.boxes >= -1e-6) & (tiled.boxes <= 1 + 1e-6))
    assert np.all(np.diff(tiled.scores) <= 1e-6)
    assert main(["detect", "--model", str(tmp_path / "export"), "--images", str(img),
                 "--out", str(tmp_path / "det"), "--tile", "32", "--min-score", "0"]) == 0
    assert (tmp_path / "det" / "detections.json").is_file()


def test_merge_keeps_one_box_per_object_and_class():
    from od import tiling

    a = Detections.make([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.9, 0.9]], [0.9, 0.4], [1, 1])
    b = Detections.make([[0.1, 0.1, 0.31, 0.3], [0.1, 0.1, 0.3, 0.3]], [0.6, 0.7], [1, 2])
    m = tiling.merge([a, b], 100, 50)
    assert (m.width, m.height) == (100, 50)
    assert sorted(zip(m.class_ids.tolist(), [round(float(s), 3) for s in m.scores])) == [
        (1, 0.4), (1, 0.9), (2, 0.7)]
    assert np.all(np.diff(m.scores) <= 0)
    empty = tiling.merge([Detections.make([], [], [])], 10, 10)
    assert len(empty) == 0 and empty.width == 10
    with pytest.raises(tiling.OdError, match="--tile-overlap 0.95"):
        tiling.windows(100, 100, 64, 0.95)
