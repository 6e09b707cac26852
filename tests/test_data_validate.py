"""Validation with a named reason per item, and images that training must see correctly."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from od.data import images
from od.data.convert import InvalidDataError, convert
from od.errors import ImageError
from test_data_formats import beside, make_image, write_voc


def _convert(src, out, **kw):
    kw.setdefault("split", "1,0,0")
    kw.setdefault("workers", 1)
    return convert(src, out, **kw)


def _reasons(out):
    return json.loads((out / "summary.json").read_text())["skipped_by_reason"]


def test_image_without_boxes_is_kept_and_counted(tmp_path):
    make_image(tmp_path / "a.jpg")
    make_image(tmp_path / "n.jpg")
    write_voc(tmp_path, "a.jpg", objects=[("cat", 64, 64, 192, 192, 0, 0)])
    write_voc(tmp_path, "n.jpg")
    s = _convert(tmp_path, beside(tmp_path))
    assert s.images == {"train": 2} and s.negatives == 1
    assert json.loads((beside(tmp_path) / "summary.json").read_text())["negative_images"] == 1


def test_unknown_class_names_the_file_and_the_class(tmp_path):
    make_image(tmp_path / "a.jpg")
    xml = write_voc(tmp_path, "a.jpg", objects=[("zebra", 64, 64, 192, 192, 0, 0)])
    (tmp_path / "lm.pbtxt").write_text("item { id: 1 name: 'cat' }\n")
    with pytest.raises(InvalidDataError) as e:
        _convert(tmp_path, beside(tmp_path), label_map=tmp_path / "lm.pbtxt")
    assert str(xml) in str(e.value) and "'zebra'" in str(e.value)
    assert not (beside(tmp_path)).exists()  # nothing half-written


@pytest.mark.parametrize("case,reason", [
    ("missing", "missing_image"), ("corrupt", "undecodable_image"), ("size", "size_mismatch"),
    ("outside", "box_outside_image"), ("degenerate", "degenerate_box"),
    ("unknown", "unknown_class")])
def test_each_problem_has_a_named_reason(tmp_path, case, reason):
    make_image(tmp_path / "ok.jpg")
    write_voc(tmp_path, "ok.jpg", objects=[("cat", 64, 64, 192, 192, 0, 0)])
    box = {"outside": (-20, 0, 100, 100), "degenerate": (50, 50, 50, 90)}.get(case, (1, 1, 9, 9))
    label = "dog" if case == "unknown" else "cat"
    if case != "missing":
        make_image(tmp_path / "bad.jpg")
    if case == "corrupt":
        (tmp_path / "bad.jpg").write_bytes(b"not an image at all")
    write_voc(tmp_path, "bad.jpg", 300 if case == "size" else 256, 256,
              [(label, *box, 0, 0)])
    kw = {"label_map": tmp_path / "lm.pbtxt"} if case == "unknown" else {}
    (tmp_path / "lm.pbtxt").write_text("item { id: 1 name: 'cat' }\n")
    with pytest.raises(InvalidDataError, match="bad"):
        _convert(tmp_path, beside(tmp_path), **kw)
    s = _convert(tmp_path, beside(tmp_path), skip_invalid=True, **kw)
    assert s.images == {"train": 1}
    assert _reasons(beside(tmp_path)) == {reason: 1}


def test_clip_boxes_is_the_users_choice(tmp_path):
    make_image(tmp_path / "a.jpg")
    write_voc(tmp_path, "a.jpg", objects=[("cat", -64, 64, 192, 300, 0, 0),
                                          ("cat", 300, 10, 400, 20, 0, 0)])
    s = _convert(tmp_path, beside(tmp_path), box_policy="clip")
    assert s.fixes["clipped_boxes"] == 1 and s.fixes["dropped_boxes"] == 1
    from od.data.tfrecord import read
    (ex,) = read(beside(tmp_path))
    assert ex.record.boxes[0].yxyx == (0.25, 0.0, 1.0, 0.75)


def test_one_pixel_overshoot_is_tolerated(tmp_path):
    make_image(tmp_path / "a.jpg")
    write_voc(tmp_path, "a.jpg", objects=[("cat", 0, 0, 257, 256, 0, 0)])
    s = _convert(tmp_path, beside(tmp_path))
    assert s.images == {"train": 1}


# ---- images: the pixels training sees --------------------------------------------------------
def _decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_grayscale_jpeg_is_kept_byte_for_byte(tmp_path):
    p = make_image(tmp_path / "g.jpg", (40, 30), mode="L")
    enc = images.encode_for_training(p)
    assert enc.data == p.read_bytes() and (enc.width, enc.height) == (40, 30)
    assert not enc.reencoded


def test_grayscale_jpeg_converts(tmp_path):
    make_image(tmp_path / "g.jpg", mode="L")
    write_voc(tmp_path, "g.jpg", objects=[("cat", 64, 64, 192, 192, 0, 0)])
    s = _convert(tmp_path, beside(tmp_path))
    assert s.images == {"train": 1}


def test_png_with_alpha_is_composited_and_stored_as_jpeg(tmp_path):
    p = make_image(tmp_path / "a.png", (20, 10), mode="RGBA", fmt="PNG", color=(255, 0, 0, 0))
    enc = images.encode_for_training(p)
    img = _decoded(enc.data)
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (20, 10)
    assert max(img.getpixel((5, 5))) < 10  # transparent → black, not red
    assert enc.reencoded == "PNG image"


def test_cmyk_jpeg_is_stored_as_rgb(tmp_path):
    p = make_image(tmp_path / "c.jpg", (16, 16), mode="CMYK", color=(0, 255, 255, 0))
    enc = images.encode_for_training(p)
    img = _decoded(enc.data)
    assert img.mode == "RGB" and enc.reencoded == "CMYK JPEG"
    r, g, b = img.getpixel((8, 8))
    assert r > 200 and g < 60 and b < 60


def test_exif_rotated_jpeg_is_stored_upright(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(tmp_path / "r.jpg", exif=exif.tobytes())
    assert images.probe(tmp_path / "r.jpg") == (20, 40)
    enc = images.encode_for_training(tmp_path / "r.jpg")
    assert (enc.width, enc.height) == (20, 40) and _decoded(enc.data).size == (20, 40)


def test_jpg_that_is_really_a_png(tmp_path):
    p = make_image(tmp_path / "fake.jpg", (8, 8), fmt="PNG")
    enc = images.encode_for_training(p)
    assert enc.reencoded == "PNG image" and _decoded(enc.data).format == "JPEG"


def test_truncated_jpeg_is_reported_by_name(tmp_path):
    p = tmp_path / "cut.jpg"
    buf = io.BytesIO()
    Image.effect_noise((200, 200), 60).convert("RGB").save(buf, format="JPEG")
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="cut.jpg.*truncated or corrupt"):
        images.encode_for_training(p)
    write_voc(tmp_path, "cut.jpg", 200, 200, [("cat", 1, 1, 9, 9, 0, 0)])
    with pytest.raises(InvalidDataError, match="cut.jpg"):
        _convert(tmp_path, beside(tmp_path))


def test_corrupt_inside_jpeg_found_with_full_verify(tmp_path):
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buf, format="JPEG")
    data = buf.getvalue()
    i = data.find(b"\xff\xc4") + 5  # inside the first Huffman table; the file still ends in EOI
    p = tmp_path / "bad.jpg"
    p.write_bytes(data[:i] + b"\xff" * 20 + data[i + 20:])
    with pytest.raises(ImageError, match="bad.jpg"):
        images.encode_for_training(p, verify="full")


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    p = make_image(tmp_path / "big.png", (200, 200), fmt="PNG")
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ImageError, match="big.png.*too large to decode safely"):
        images.encode_for_training(p)
    with pytest.raises(ImageError, match="decompression bomb"):
        images.probe(p)
