"""Hostile and broken data inputs through the CLI (``od.cli.main`` in-process), built at test time.

Each refused case must exit 2 with one ``od: error:`` line naming the file and the bad value (no
traceback); the accepted cases check that the data arrives right (16-bit pixels, EXIF boxes, a
0x0 VOC size, a duplicated row, a COCO width written ``2048.0``).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from od.cli import main
from od.data import images as images_lib
from od.data import tfrecord

HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


def _img(path: Path, size=(32, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path, "JPEG")


def _voc_xml(w="32", h="32", box=("2", "2", "20", "20"), name="cat", filename="a.jpg",
             size=True) -> str:
    s = f"<size><width>{w}</width><height>{h}</height></size>" if size else ""
    x0, y0, x1, y1 = box
    return (f"<annotation><filename>{filename}</filename>{s}<object><name>{name}</name><bndbox>"
            f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>"
            "</object></annotation>")


def voc(tmp: Path, **kw) -> list[str]:
    d = tmp / "voc"
    _img(d / "a.jpg")
    (d / "a.xml").write_text(_voc_xml(**kw))
    return ["--format", "voc", "--annotations", str(d)]


def csv(tmp: Path, rows: str | bytes, header: str = HEADER) -> list[str]:
    d = tmp / "csv"
    _img(d / "a.jpg")
    data = rows if isinstance(rows, bytes) else (header + rows).encode()
    (d / "a.csv").write_bytes(data)
    return ["--format", "csv", "--annotations", str(d / "a.csv")]


def automl(tmp: Path, row: str) -> list[str]:
    d = tmp / "automl"
    _img(d / "a.jpg")
    (d / "a.csv").write_text(row + "\n")
    return ["--format", "automl", "--annotations", str(d / "a.csv")]


def coco(tmp: Path, *, bbox="[2, 2, 10, 10]", width="32", height="32", image_id="1",
         cat_id="1", ann_cat="1", images=True, annotations=True) -> list[str]:
    d = tmp / "coco"
    _img(d / "a.jpg")
    ims = (f'[{{"id": {image_id}, "file_name": "a.jpg", "width": {width}, "height": {height}}}]'
           if images else "[]")
    anns = (f'[{{"id": 1, "image_id": {image_id}, "category_id": {ann_cat}, "bbox": {bbox}}}]'
            if annotations else "[]")
    (d / "a.json").write_text(f'{{"images": {ims}, "annotations": {anns}, '
                              f'"categories": [{{"id": {cat_id}, "name": "cat"}}]}}')
    return ["--format", "coco", "--annotations", str(d / "a.json")]


def label_map(tmp: Path, text: str | bytes) -> list[str]:
    args = voc(tmp)
    p = tmp / "label_map.pbtxt"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return args + ["--label-map", str(p)]


def mode_image(tmp: Path, img: Image.Image, fmt: str, suffix: str) -> list[str]:
    d = tmp / "modes"
    d.mkdir(parents=True, exist_ok=True)
    img.save(d / f"a{suffix}", fmt)
    (d / "a.xml").write_text(_voc_xml(filename=f"a{suffix}", w=img.width, h=img.height))
    return ["--format", "voc", "--annotations", str(d)]


def empty_tfrecord(tmp: Path) -> list[str]:
    (tmp / "rec").mkdir()
    tfrecord.write_shard(tmp / "rec" / "train.tfrecord", [])
    return ["--format", "tfrecord", "--annotations", str(tmp / "rec")]


def _f_image():
    return Image.fromarray(np.full((32, 32), 1000.0, np.float32), "F")


# (case id, builder(tmp) -> argv, extra convert options, substrings the error must contain)
REFUSED = [
    ("voc-xmin-nan", lambda t: voc(t, box=("nan", "2", "20", "20")), [], ["a.xml", "<xmin>", "nan"]),
    ("voc-xmax-inf", lambda t: voc(t, box=("2", "2", "inf", "20")), [], ["a.xml", "<xmax>", "inf"]),
    ("voc-ymin-neg-inf", lambda t: voc(t, box=("2", "-inf", "20", "20")), [], ["a.xml", "-inf"]),
    ("voc-size-nan", lambda t: voc(t, w="NaN"), [], ["a.xml", "<size>", "nan"]),
    ("voc-size-inf", lambda t: voc(t, h="inf"), [], ["a.xml", "<size>", "inf"]),
    ("voc-size-negative", lambda t: voc(t, w="-5"), [], ["a.xml", "-5"]),
    ("voc-size-fraction", lambda t: voc(t, w="32.5"), [], ["a.xml", "32.5"]),
    ("voc-size-huge", lambda t: voc(t, w="1000000000"), [], ["a.xml", "1,000,000,000"]),
    ("voc-box-negative", lambda t: voc(t, box=("-50", "2", "20", "20")), [], ["a.xml", "-50"]),
    ("voc-box-inverted", lambda t: voc(t, box=("20", "2", "5", "20")), [],
     ["a.xml", "zero or negative size"]),
    ("voc-case-clash", lambda t: voc(t, name="Cat") + _second_voc(t, "cat"), [],
     ["'Cat'", "'cat'", "a.xml", "b.xml", "letter case"]),
    ("csv-width-nan", lambda t: csv(t, "a.jpg,nan,32,cat,2,2,20,20\n"), [], ["a.csv:2", "nan"]),
    ("csv-height-inf", lambda t: csv(t, "a.jpg,32,inf,cat,2,2,20,20\n"), [], ["a.csv:2", "inf"]),
    ("csv-width-zero", lambda t: csv(t, "a.jpg,0,32,cat,2,2,20,20\n"), [], ["a.csv:2", "width is 0"]),
    ("csv-width-negative", lambda t: csv(t, "a.jpg,-3,32,cat,2,2,20,20\n"), [], ["a.csv:2", "-3"]),
    ("csv-xmin-nan", lambda t: csv(t, "a.jpg,32,32,cat,NaN,2,20,20\n"), [], ["a.csv:2", "xmin", "nan"]),
    ("csv-ymax-inf", lambda t: csv(t, "a.jpg,32,32,cat,2,2,20,Infinity\n"), [],
     ["a.csv:2", "ymax", "inf"]),
    ("csv-not-utf8", lambda t: csv(t, (HEADER + "caf\xe9.jpg,32,32,cat,2,2,20,20\n").encode("latin-1")),
     [], ["a.csv:2", "not UTF-8", "xe9"]),
    ("csv-no-rows", lambda t: csv(t, ""), [], ["a.csv", "no rows"]),
    ("csv-unicode-form-clash", lambda t: csv(t, "a.jpg,32,32,caf\u00e9,2,2,20,20\n"
                                                "a.jpg,32,32,cafe\u0301,4,4,20,20\n"), [],
     ["a.csv:2", "letter case or Unicode form"]),
    ("csv-case-clash", lambda t: csv(t, "a.jpg,32,32,Raccoon,2,2,20,20\n"
                                        "a.jpg,32,32,raccoon,4,4,20,20\n"), [],
     ["'Raccoon'", "'raccoon'", "a.csv:2", "letter case"]),
    ("automl-xmin-nan", lambda t: automl(t, "TRAIN,a.jpg,cat,nan,0.1,,,0.5,0.5,,"), [],
     ["a.csv:1", "nan"]),
    ("automl-ymax-inf", lambda t: automl(t, "TRAIN,a.jpg,cat,0.1,0.1,,,0.5,inf,,"), [],
     ["a.csv:1", "inf"]),
    ("coco-bbox-nan", lambda t: coco(t, bbox="[NaN, 2, 10, 10]"), [], ["a.json", "annotation 1", "nan"]),
    ("coco-bbox-inf", lambda t: coco(t, bbox="[2, 2, Infinity, 10]"), [], ["a.json", "inf"]),
    ("coco-bbox-negative-size", lambda t: coco(t, bbox="[2, 2, -5, 10]"), [],
     ["a.json", "annotation 1", "-5"]),
    ("coco-width-nan", lambda t: coco(t, width="NaN"), [], ["a.json", "image 1", "nan"]),
    ("coco-width-zero", lambda t: coco(t, width="0"), [], ["a.json", "image 1", "width is 0"]),
    ("coco-height-huge", lambda t: coco(t, height="1e12"), [], ["a.json", "1,000,000,000,000"]),
    ("coco-width-fraction", lambda t: coco(t, width="2048.5"), [], ["a.json", "2048.5"]),
    ("coco-category-id-huge", lambda t: coco(t, cat_id="2000000000", ann_cat="2000000000"), [],
     ["a.json", "2,000,000,000"]),
    ("coco-image-id-negative", lambda t: coco(t, image_id="-1"), [], ["a.json", "-1"]),
    ("coco-empty", lambda t: coco(t, images=False, annotations=False), [],
     ["a.json", "'images' is empty"]),
    ("coco-no-annotations", lambda t: coco(t, annotations=False), [], ["a.json", "not one box"]),
    ("label-map-id-huge", lambda t: label_map(t, "item { id: 2000000000 name: 'cat' }"), [],
     ["label_map.pbtxt", "2,000,000,000"]),
    ("label-map-id-zero", lambda t: label_map(t, "item { id: 0 name: 'cat' }"), [],
     ["label_map.pbtxt", "id 0"]),
    ("label-map-not-utf8", lambda t: label_map(t, "item { id: 1 name: 'caf\xe9' }".encode("latin-1")),
     [], ["label_map.pbtxt", "not UTF-8"]),
    ("tfrecord-empty", empty_tfrecord, [], ["train.tfrecord", "no examples"]),
    ("image-mode-lab", lambda t: mode_image(t, Image.new("LAB", (32, 32)), "TIFF", ".tif"), [],
     ["a.tif", "'LAB'"]),
    ("image-float-out-of-range", lambda t: mode_image(t, _f_image(), "TIFF", ".tif"), [],
     ["a.tif", "'F'", "1000"]),
    ("shard-mb-zero", voc, ["--shard-mb", "0"], ["--shard-mb 0"]),
    ("shard-mb-negative", voc, ["--shard-mb", "-5"], ["--shard-mb -5"]),
    ("shard-mb-nan", voc, ["--shard-mb", "nan"], ["--shard-mb nan"]),
    ("workers-zero", voc, ["--workers", "0"], ["workers=0"]),
    ("workers-negative", voc, ["--workers", "-2"], ["workers=-2"]),
    ("split-bad-sum", voc, ["--split", "0.5,0.6"], ["0.5,0.6", "sum to 1"]),
    ("split-not-numbers", voc, ["--split", "a,b,c"], ["a,b,c", "not numbers"]),
    ("split-nan", voc, ["--split", "nan,0,0"], ["nan,0,0", "sum to 1"]),
    ("coco-iscrowd-text", lambda t: _coco_patch(t, '"iscrowd": "yes"'), [],
     ["a.json", "annotation 1", "'yes'"]),
    ("coco-empty-category-name", lambda t: _coco_patch(t, None, '"name": " "'), [],
     ["a.json", "empty name"]),
    ("tfrecord-nan-box", lambda t: _tfrecord_with(t, float("nan")), [],
     ["train.tfrecord", "not finite"]),
    ("tfrecord-box-outside", lambda t: _tfrecord_with(t, -0.5), [],
     ["train.tfrecord", "outside"]),
    ("tfrecord-huge-width", lambda t: _tfrecord_with(t, 0.5, width=10**9), [],
     ["train.tfrecord", "1,000,000,000"]),
]


def _coco_patch(tmp: Path, ann_extra: str | None, cat_name: str | None = None) -> list[str]:
    args = coco(tmp)
    p = Path(args[-1])
    text = p.read_text()
    if ann_extra:
        text = text.replace('"bbox": [2, 2, 10, 10]', f'"bbox": [2, 2, 10, 10], {ann_extra}')
    if cat_name:
        text = text.replace('"name": "cat"', cat_name)
    p.write_text(text)
    return args


def _tfrecord_with(tmp: Path, ymin: float, width: int = 32) -> list[str]:
    from od.data.records import ImageAnnotation, ObjectBox
    _img(tmp / "a.jpg")
    rec = ImageAnnotation(tmp / "a.jpg", width, 32, (ObjectBox(0.1, 0.1, 0.6, 0.6, "cat"),))
    ex = tfrecord.make_example(rec, (tmp / "a.jpg").read_bytes(), "jpeg", [1], 1, "a.jpg")
    ex.features.feature[tfrecord.YMIN].float_list.value[0] = ymin  # as a foreign tool wrote it
    (tmp / "rec").mkdir()
    tfrecord.write_shard(tmp / "rec" / "train.tfrecord", [ex])
    return ["--format", "tfrecord", "--annotations", str(tmp / "rec")]


def _second_voc(tmp: Path, name: str) -> list[str]:
    d = tmp / "voc"
    _img(d / "b.jpg")
    (d / "b.xml").write_text(_voc_xml(name=name, filename="b.jpg"))
    return []


@pytest.mark.parametrize("build,options,expected", [c[1:] for c in REFUSED],
                         ids=[c[0] for c in REFUSED])
def test_bad_data_is_refused_by_name(tmp_path, capsys, build, options, expected):
    argv = ["data", "convert", *build(tmp_path), "--out", str(tmp_path / "out"),
            "--workers", "1", "--split", "1,0,0", *options]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("od: error: ") and "Traceback" not in err
    for text in expected:
        assert text in err, f"{text!r} not in: {err}"
    assert not (tmp_path / "out").exists()


# ---- accepted, and arriving right -----------------------------------------------------------
def _convert(tmp_path, args, capsys=None, *extra) -> tuple[dict, list]:
    out = tmp_path / "out"
    assert main(["data", "convert", *args, "--out", str(out), "--workers", "1",
                 "--split", "1,0,0", *extra]) == 0
    summary = json.loads((out / "summary.json").read_text())
    return summary, tfrecord.read(out)


def test_coco_integral_float_width_is_accepted(tmp_path):
    summary, examples = _convert(tmp_path, coco(tmp_path, width="32.0", height="32.0"))
    assert summary["images"] == {"train": 1} and examples[0].record.width == 32


def test_duplicated_csv_row_is_dropped_counted_and_said_once(tmp_path, capsys):
    summary, examples = _convert(tmp_path, csv(tmp_path, "a.jpg,32,32,cat,2,2,20,20\n" * 3
                                               + "a.jpg,32,32,cat,4,4,20,20\n"))
    assert summary["fixes"]["duplicate_boxes"] == 2
    assert len(examples[0].record.boxes) == 2
    assert capsys.readouterr().out.count("duplicate box") == 1


def test_voc_size_zero_or_missing_is_taken_from_the_image_and_reported_once(tmp_path, capsys):
    d = tmp_path / "voc"
    for k, xml in enumerate([_voc_xml(w="0", h="0", filename="a.jpg"),
                             _voc_xml(size=False, filename="b.jpg"),
                             _voc_xml(filename="c.jpg")]):
        _img(d / f"{'abc'[k]}.jpg", (32, 32))
        (d / f"{'abc'[k]}.xml").write_text(xml)
    summary, examples = _convert(tmp_path, ["--annotations", str(d)])
    assert summary["fixes"]["size_from_image"] == 2 and summary["images"] == {"train": 3}
    assert {(e.record.width, e.record.height) for e in examples} == {(32, 32)}
    assert capsys.readouterr().out.count("had no image size") == 1


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_csv_with_a_byte_order_mark_is_read(tmp_path, encoding):
    args = csv(tmp_path, (HEADER + "a.jpg,32,32,café,2,2,20,20\n").encode(encoding))
    summary, _ = _convert(tmp_path, args)
    assert summary["boxes_per_class"] == {"café": {"train": 1}}


def test_case_clash_is_accepted_when_the_label_map_lists_both(tmp_path):
    args = csv(tmp_path, "a.jpg,32,32,Raccoon,2,2,20,20\na.jpg,32,32,raccoon,4,4,20,20\n")
    (tmp_path / "lm.pbtxt").write_text("item { id: 1 name: 'Raccoon' } item { id: 2 name: 'raccoon' }")
    summary, _ = _convert(tmp_path, args + ["--label-map", str(tmp_path / "lm.pbtxt")])
    assert set(summary["boxes_per_class"]) == {"Raccoon", "raccoon"}


# ---- pixel modes: correct 8-bit RGB, never silently wrong -----------------------------------
def _png16(value: int, mode: str = "I;16") -> Image.Image:
    img = Image.fromarray(np.full((8, 8), value, np.uint16))
    return img if mode == "I;16" else img.convert(mode)


def _palette_transparent() -> Image.Image:
    img = Image.new("P", (8, 8), 1)
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    img.info["transparency"] = 1
    return img


MODES = [  # (id, image, save format, expected mean RGB of the decoded image)
    ("I;16-png", lambda: _png16(44 * 257), "PNG", (44, 44, 44)),
    ("I;16-png-dark", lambda: _png16(1000), "PNG", (4, 4, 4)),
    ("I;16B-tiff", lambda: Image.frombytes("I;16B", (8, 8), (44 * 257).to_bytes(2, "big") * 64),
     "TIFF", (44, 44, 44)),
    ("I-16-bit-values", lambda: Image.fromarray(np.full((8, 8), 44 * 257, np.int32), "I"), "TIFF",
     (44, 44, 44)),
    ("I-small-values", lambda: Image.fromarray(np.full((8, 8), 44, np.int32), "I"), "TIFF",
     (44, 44, 44)),
    ("F-unit-range", lambda: Image.fromarray(np.full((8, 8), 0.5, np.float32), "F"), "TIFF",
     (128, 128, 128)),
    ("P-transparent", _palette_transparent, "PNG", (0, 0, 0)),
    ("P-opaque", lambda: Image.new("P", (8, 8), 0).convert("RGB").quantize(), "PNG", (0, 0, 0)),
    ("CMYK-jpeg", lambda: Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG", (255, 255, 255)),
    ("LA", lambda: Image.new("LA", (8, 8), (200, 255)), "PNG", (200, 200, 200)),
    ("L", lambda: Image.new("L", (8, 8), 77), "PNG", (77, 77, 77)),
    ("RGBA-half", lambda: Image.new("RGBA", (8, 8), (200, 100, 50, 255)), "PNG", (200, 100, 50)),
    ("1", lambda: Image.new("1", (8, 8), 1), "PNG", (255, 255, 255)),
]


@pytest.mark.parametrize("make,fmt,expected", [m[1:] for m in MODES], ids=[m[0] for m in MODES])
def test_every_pillow_mode_decodes_to_correct_rgb(make, fmt, expected):
    buf = io.BytesIO()
    make().save(buf, fmt)
    rgb = np.asarray(images_lib.decode_rgb(Path(f"x.{fmt.lower()}"), buf.getvalue()))
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
    assert np.allclose(rgb.reshape(-1, 3).mean(0), expected, atol=2)


def test_a_16_bit_png_is_stored_as_8_bit_jpeg_in_the_tfrecord(tmp_path):
    args = mode_image(tmp_path, _png16(44 * 257).resize((32, 32)), "PNG", ".png")
    summary, examples = _convert(tmp_path, args)
    stored = Image.open(io.BytesIO(examples[0].encoded))
    assert stored.format == "JPEG" and stored.mode == "RGB"
    assert abs(np.asarray(stored).mean() - 44) < 2  # not 255 (white)
    assert summary["fixes"]["reencoded_images"] == 1


# ---- EXIF orientation -----------------------------------------------------------------------
def _exif_dataset(tmp: Path, size, ann_size, orientation=6) -> list[str]:
    """A JPEG whose stored pixels have a white block at x 4..20, y 4..12 (a box on them), with
    an EXIF orientation tag; the VOC box is drawn on the stored pixels."""
    d = tmp / "exif"
    d.mkdir(parents=True)
    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[4:12, 4:20] = 255
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = orientation
    img.save(d / "a.jpg", "JPEG", quality=100, exif=exif.tobytes())
    (d / "a.xml").write_text(_voc_xml(w=ann_size[0], h=ann_size[1], box=("4", "4", "20", "12"),
                                      filename="a.jpg"))
    return ["--annotations", str(d)]


def _box_mean(example) -> float:
    img = np.asarray(Image.open(io.BytesIO(example.encoded)).convert("L"), np.float64)
    h, w = img.shape
    b = example.record.boxes[0]
    return img[round(b.ymin * h):round(b.ymax * h), round(b.xmin * w):round(b.xmax * w)].mean()


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_square_exif_image_annotated_on_stored_pixels_gets_boxes_on_the_object(tmp_path,
                                                                               orientation):
    summary, examples = _convert(tmp_path, _exif_dataset(tmp_path, (32, 32), (32, 32),
                                                         orientation))
    assert _box_mean(examples[0]) > 200  # the box covers the white block in the upright image
    assert summary["fixes"]["exif_boxes_rotated"] == 1


def test_exif_displayed_option_keeps_boxes_as_drawn(tmp_path):
    _, examples = _convert(tmp_path, _exif_dataset(tmp_path, (32, 32), (32, 32)), None,
                           "--exif", "displayed")
    assert _box_mean(examples[0]) < 100


def test_exif_non_square_size_decides(tmp_path):
    # stored 48x32, shown 32x48: an annotation of 48x32 is on the stored pixels
    _, examples = _convert(tmp_path, _exif_dataset(tmp_path, (48, 32), (48, 32)))
    assert (examples[0].record.width, examples[0].record.height) == (32, 48)
    assert _box_mean(examples[0]) > 200


def test_exif_size_matching_neither_is_a_named_mismatch(tmp_path, capsys):
    args = _exif_dataset(tmp_path, (48, 32), (40, 40))
    assert main(["data", "convert", *args, "--out", str(tmp_path / "out"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "a.xml" in err and "40x40" in err and "EXIF orientation 6" in err


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_transform_matches_pillow_exif_transpose(orientation):
    from PIL import ImageOps

    from od.boxes import exif_transform
    a = np.zeros((30, 40), np.uint8)
    a[3:12, 8:20] = 255  # box ymin,xmin,ymax,xmax = 0.1, 0.2, 0.4, 0.5 of the stored pixels
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif.tobytes())
    up = np.asarray(ImageOps.exif_transpose(Image.open(buf)))
    ys, xs = np.nonzero(up)
    h, w = up.shape
    want = (ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w)
    assert np.allclose(exif_transform([(0.1, 0.2, 0.4, 0.5)], orientation)[0], want, atol=1e-6)
