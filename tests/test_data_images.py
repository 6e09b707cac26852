"""od/data/images.py: the image bytes a TFRecord stores and the pixels training sees.

Through ``od data convert``: tests/test_data_validate.py; every Pillow mode: tests/test_hostile_data.py.
"""
import io

import numpy as np
import pytest
from PIL import Image

from od.data import images
from od.errors import ImageError, MissingImageError


def _save(path, img, fmt, **kw):
    img.save(path, format=fmt, **kw)
    return path


def test_upright_rgb_jpeg_bytes_are_kept_and_a_png_is_reencoded(tmp_path):
    jpg = _save(tmp_path / "a.jpg", Image.new("RGB", (40, 30), (200, 10, 10)), "JPEG")
    enc = images.encode_for_training(jpg)
    assert enc.data == jpg.read_bytes() and (enc.width, enc.height) == (40, 30)
    assert enc.reencoded == "" and enc.orientation == 1
    png = _save(tmp_path / "b.png", Image.new("RGBA", (8, 6), (255, 255, 255, 0)), "PNG")
    enc = images.encode_for_training(png)
    assert enc.reencoded == "PNG image" and enc.data[:2] == b"\xff\xd8"
    rgb = Image.open(io.BytesIO(enc.data))
    assert rgb.mode == "RGB" and np.asarray(rgb).max() < 8  # transparent -> black


def test_exif_orientation_turns_size_and_pixels(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown turned 90 degrees
    path = _save(tmp_path / "r.jpg", Image.new("RGB", (40, 30)), "JPEG", exif=exif)
    assert images.probe(path) == (30, 40) and images.probe(path, upright=False) == (40, 30)
    enc = images.encode_for_training(path)
    assert (enc.width, enc.height, enc.orientation) == (30, 40, 6)
    assert enc.stored_size == (40, 30) and enc.reencoded == "EXIF-rotated JPEG"


def test_same_pixels_give_the_same_md5_whatever_the_file_format(tmp_path):
    img = Image.effect_noise((16, 12), 40).convert("RGB")
    a = _save(tmp_path / "a.png", img, "PNG")
    b = _save(tmp_path / "b.bmp", img, "BMP")
    assert images.pixel_md5(a) == images.pixel_md5(b)
    assert images.decode_rgb(b).size == (16, 12)
    assert images.pixel_md5(a, images.encode_jpeg(img)) != images.pixel_md5(a)


def test_missing_truncated_and_unknown_files_are_named(tmp_path):
    with pytest.raises(MissingImageError, match=r"nope\.jpg: image file not found"):
        images.read_bytes(tmp_path / "nope.jpg")
    good = images.encode_jpeg(Image.effect_noise((64, 64), 60).convert("RGB"))
    (tmp_path / "cut.jpg").write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageError, match=r"cut\.jpg"):
        images.encode_for_training(tmp_path / "cut.jpg")
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(ImageError, match=r"text\.jpg"):
        images.probe(tmp_path / "text.jpg")


def test_sixteen_bit_grey_is_scaled_to_eight_bits():
    img = Image.fromarray(np.full((4, 4), 65535, np.uint16))
    assert img.mode.startswith("I;16")
    out = images.to_rgb(img)
    assert out.mode == "RGB" and np.asarray(out).min() == 255
