"""od.visualize (Pillow drawing); the PNG reports of od.plots: tests/test_plots.py."""
import numpy as np
import pytest
from PIL import Image

from od import visualize
from od.detections import Detections, GroundTruth
from od.errors import ImageError
from od.label_map import LabelMap

CATS = LabelMap.from_names(["cat", "dog"])
BOX = [0.2, 0.3, 0.6, 0.7]  # on 100x100: rows 20..59, columns 30..69


def changed(before: np.ndarray, after) -> np.ndarray:
    return np.any(np.asarray(after) != before, axis=2)


def outline(y0, x0, y1, x1, shape=(100, 100)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0:y1 + 1, x0:x1 + 1] = True
    m[y0 + 1:y1, x0 + 1:x1] = False
    return m


# ---- draw_boxes ----------------------------------------------------------------------------

def test_box_without_label_changes_exactly_its_outline():
    blank = np.zeros((100, 100, 3), np.uint8)
    out = visualize.draw_boxes(blank, [BOX], line_width=1)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (100, 100)
    assert np.array_equal(changed(blank, out), outline(20, 30, 59, 69))
    assert np.asarray(out)[20, 30].tolist() == list(visualize.DEFAULT_COLOR)
    assert not blank.any()  # the input is not drawn on


def test_labelled_box_stays_near_the_box_and_far_pixels_are_untouched():
    blank = np.zeros((100, 100, 3), np.uint8)
    out = visualize.draw_boxes(blank, [BOX], [2], [0.87], CATS)
    ys, xs = np.nonzero(changed(blank, out))
    assert ys.min() < 20  # the filled label 'dog: 87%' sits above the box
    assert ys.min() >= 20 - 16 and ys.max() == 59 and xs.min() == 30 and xs.max() <= 99
    assert np.asarray(out)[90, 5].tolist() == [0, 0, 0]
    assert np.asarray(out)[59, 69].tolist() == list(visualize.class_color(2))
    label = np.asarray(out)[ys.min():20, 30:40]  # text pixels differ from the fill
    assert len({tuple(p) for p in label.reshape(-1, 3)}) >= 2


def test_numpy_and_pil_inputs_draw_the_same():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 255, (64, 80, 3), dtype=np.uint8)
    args = ([BOX, [0.0, 0.0, 0.3, 0.3]], [1, 2], [0.9, 0.6], CATS)
    a = visualize.draw_boxes(arr, *args)
    b = visualize.draw_boxes(Image.fromarray(arr), *args)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), arr)


def test_grayscale_and_rgba_inputs_become_rgb():
    grey = Image.new("L", (50, 40), 128)
    out = visualize.draw_boxes(grey, [BOX], line_width=1)
    assert out.mode == "RGB" and out.size == (50, 40)
    assert np.asarray(out)[0, 0].tolist() == [128, 128, 128]
    assert visualize.draw_boxes(np.full((40, 50), 7, np.uint8), []).getpixel((0, 0)) == (7, 7, 7)
    rgba = Image.new("RGBA", (10, 10), (1, 2, 3, 255))
    assert visualize.show(rgba).getpixel((5, 5)) == (1, 2, 3)


def test_boxes_outside_the_image_are_clipped():
    blank = np.zeros((100, 100, 3), np.uint8)
    out = visualize.draw_boxes(blank, [[-0.5, -0.2, 1.5, 1.2]], line_width=1)
    assert np.array_equal(changed(blank, out), outline(0, 0, 99, 99))


def test_min_score_and_colours():
    blank = np.zeros((100, 100, 3), np.uint8)
    out = visualize.draw_boxes(blank, [BOX], [1], [0.4], CATS, min_score=0.5)
    assert not changed(blank, out).any()
    one = visualize.draw_boxes(blank, [BOX], [1], [0.4], CATS, color_by_class=False)
    assert np.asarray(one)[59, 69].tolist() == list(visualize.DEFAULT_COLOR)
    assert visualize.class_color(1) == visualize.class_color(1) != visualize.class_color(2)
    assert visualize.draw_boxes(blank, [BOX], line_width=3).getpixel((32, 22)) == \
        visualize.DEFAULT_COLOR  # a 3-pixel line grows inwards


def test_draw_detections_and_groundtruth():
    blank = np.zeros((100, 100, 3), np.uint8)
    dets = Detections.make([BOX, [0.0, 0.0, 0.1, 0.1]], [0.9, 0.2], [1, 2])
    out = visualize.draw_detections(blank, dets, CATS, min_score=0.5)
    assert np.asarray(out)[59, 69].tolist() == list(visualize.class_color(1))
    assert not changed(blank, out)[:10, :10].any()  # the 0.2 detection is not drawn
    g = GroundTruth.make(1, 100, 100, [BOX], [2])
    assert np.asarray(visualize.draw_groundtruth(blank, g, CATS))[59, 69].tolist() == \
        list(visualize.class_color(2))


def test_bad_inputs_raise_image_error():
    with pytest.raises(ImageError, match="uint8"):
        visualize.draw_boxes(np.zeros((10, 10, 3), np.float32), [BOX])
    with pytest.raises(ImageError, match=r"\[N, 4\]"):
        visualize.draw_boxes(np.zeros((10, 10, 3), np.uint8), [[0.1, 0.2, 0.3]])
    with pytest.raises(ImageError, match="2 scores"):
        visualize.draw_boxes(np.zeros((10, 10, 3), np.uint8), [BOX], scores=[0.1, 0.2])
    with pytest.raises(ImageError, match="PIL image or a numpy"):
        visualize.show("picture.jpg")
    with pytest.raises(ImageError, match="no images"):
        visualize.image_grid([], 2)


def test_image_grid_layout():
    ims = [np.full((20, 10, 3), v, np.uint8) for v in (10, 20, 30)]
    grid = visualize.image_grid(ims, 2, padding=4)
    assert grid.size == (2 * 10 + 3 * 4, 2 * 20 + 3 * 4)
    assert grid.getpixel((4, 4)) == (10, 10, 10) and grid.getpixel((18, 4)) == (20, 20, 20)
    assert grid.getpixel((4, 28)) == (30, 30, 30) and grid.getpixel((20, 30)) == (255, 255, 255)
    small = visualize.image_grid([Image.new("RGB", (100, 50))], 3, cell_size=20, padding=0)
    assert small.size == (20, 10)




