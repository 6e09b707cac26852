"""od/boxes.py: the one place pixel boxes become normalised [ymin, xmin, ymax, xmax] and back."""
import numpy as np
import pytest

from od import boxes


def test_xyxy_round_trip_and_order():
    px = [[10, 20, 110, 70]]                       # xmin, ymin, xmax, ymax in a 200x100 image
    n = boxes.normalize_xyxy(px, 200, 100)
    assert n.dtype == np.float32 and n.shape == (1, 4)
    np.testing.assert_allclose(n, [[0.2, 0.05, 0.7, 0.55]])
    np.testing.assert_allclose(boxes.denormalize_to_xyxy(n, 200, 100), px, atol=1e-4)
    assert boxes.normalize_xyxy([], 10, 10).shape == (0, 4)


def test_coco_round_trip():
    n = boxes.xywh_to_normalized([[10, 20, 100, 50]], 200, 100)
    np.testing.assert_allclose(n, [[0.2, 0.05, 0.7, 0.55]])
    np.testing.assert_allclose(boxes.normalized_to_xywh(n, 200, 100), [[10, 20, 100, 50]],
                               atol=1e-4)


def test_scalar_helpers_keep_float64():
    y0, x0, y1, x1 = boxes.from_pixels((1, 2, 3, 4), 3, 7)
    assert (y0, x0, y1, x1) == (2 / 7, 1 / 3, 4 / 7, 3 / 3)       # exact float64 division
    assert boxes.from_coco((1, 2, 2, 2), 3, 7) == (2 / 7, 1 / 3, 4 / 7, 3 / 3)
    assert boxes.to_pixels((0.25, 0.5, 0.75, 1.0), 200, 100) == (100.0, 25.0, 200.0, 75.0)
    assert boxes.pixel_tolerance(200, 100) == (0.01, 0.005)


def test_bad_shape():
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        boxes.normalize_xyxy([[1, 2, 3]], 10, 10)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_transform_keeps_boxes_valid(orientation):
    out = boxes.exif_transform([[0.1, 0.2, 0.3, 0.6]], orientation)
    assert out.shape == (1, 4) and (out[:, 0] <= out[:, 2]).all() and (out[:, 1] <= out[:, 3]).all()
    area = (out[0, 2] - out[0, 0]) * (out[0, 3] - out[0, 1])
    assert area == pytest.approx(0.2 * 0.4)
