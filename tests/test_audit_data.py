"""Regressions from an audit of ``od data convert`` / ``od data inspect`` with messy real-world data
(each case once broke: a silent wrong output, a traceback, a user's file overwritten or an unclear
message). Tiny datasets are built in tmp_path; the CLI runs in-process (``od.cli.main``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from od import label_map
from od.cli import main
from od.data import tfrecord

HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax\n"


def _img(path: Path, size=(32, 32)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 30)).save(path, "JPEG")
    return path


def _xml(filename="a.jpg", box=(2, 2, 20, 20), name="cat") -> str:
    x0, y0, x1, y1 = box
    return (f"<annotation><filename>{filename}</filename><size><width>32</width><height>32"
            f"</height></size><object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}"
            f"</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object></annotation>")


def _csv(tmp: Path, text: str, images=("a.jpg",)) -> list[str]:
    for name in images:
        _img(tmp / name)
    (tmp / "l.csv").write_text(text, encoding="utf-8")
    return ["--format", "csv", "--annotations", str(tmp / "l.csv")]


def _out(tmp: Path) -> Path:
    """The output folder: a sibling of the data folder ``tmp`` (never inside an input)."""
    return tmp.with_name(tmp.name + "-out")


def _run(tmp: Path, args: list[str], capsys, *extra) -> tuple[int, str]:
    code = main(["data", "convert", *args, "--out", str(_out(tmp)), "--workers", "1",
                 "--split", "1,0,0", *extra])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err + captured.out


def _refused(tmp: Path, args: list[str], capsys, *expected: str) -> None:
    code, text = _run(tmp, args, capsys)
    assert code == 2 and text.startswith("od: error: "), text
    for part in expected:
        assert part in text, f"{part!r} not in: {text}"
    assert not _out(tmp).exists()


# ---- silent wrong output, now refused ------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "voc", "coco"])
def test_normalised_coordinates_in_a_pixel_format_are_refused(tmp_path, capsys, fmt):
    _img(tmp_path / "a.jpg")
    if fmt == "csv":
        (tmp_path / "l.csv").write_text(HEADER + "a.jpg,32,32,cat,0.1,0.2,0.5,0.6\n")
        args, where = ["--annotations", str(tmp_path / "l.csv")], "l.csv:2"
    elif fmt == "voc":
        (tmp_path / "a.xml").write_text(_xml(box=(0.1, 0.2, 0.5, 0.6)))
        args, where = ["--annotations", str(tmp_path)], "a.xml: <object> 1"
    else:
        (tmp_path / "c.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": "a.jpg", "width": 32, "height": 32}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                             "bbox": [0.1, 0.2, 0.4, 0.4]}],
            "categories": [{"id": 1, "name": "cat"}]}))
        args, where = ["--annotations", str(tmp_path / "c.json")], "annotation 1"
    _refused(tmp_path, ["--format", fmt, *args], capsys, where, "normalised", "pixels")


def test_a_one_pixel_box_in_the_corner_is_still_pixels(tmp_path, capsys):
    code, _ = _run(tmp_path, _csv(tmp_path, HEADER + "a.jpg,32,32,cat,0,0,1,1\n"), capsys)
    assert code == 0


def test_automl_pixel_coordinates_are_refused_not_clipped(tmp_path, capsys):
    _img(tmp_path / "a.jpg")
    (tmp_path / "l.csv").write_text("TRAIN,a.jpg,cat,3,4,,,20,30,,\n")
    _refused(tmp_path, ["--format", "automl", "--annotations", str(tmp_path / "l.csv"),
                        "--clip-boxes"], capsys, "l.csv:1: column 4 is '3'", "fractions")


def test_a_csv_header_naming_a_column_twice_is_refused(tmp_path, capsys):
    _refused(tmp_path, _csv(tmp_path, HEADER.strip() + ",class\na.jpg,32,32,cat,2,2,20,20,dog\n"),
             capsys, "l.csv", "['class'] more than once")


@pytest.mark.parametrize("fmt", ["voc", "coco", "csv", "automl"])
def test_one_image_annotated_twice_is_refused(tmp_path, capsys, fmt):
    """Two VOC files with one <filename>, two COCO entries with one file_name, ``a.jpg`` and
    ``./a.jpg`` in a CSV, two gs:// paths found as one local file: one image, stored twice."""
    _img(tmp_path / "a.jpg")
    if fmt == "voc":
        (tmp_path / "a.xml").write_text(_xml())
        (tmp_path / "b.xml").write_text(_xml(name="dog"))
        ann = tmp_path
    elif fmt == "coco":
        ann = tmp_path / "c.json"
        ann.write_text(json.dumps({
            "images": [{"id": k, "file_name": "a.jpg", "width": 32, "height": 32}
                       for k in (1, 2)],
            "annotations": [{"id": k, "image_id": k, "category_id": 1, "bbox": [2, 2, 9, 9]}
                            for k in (1, 2)],
            "categories": [{"id": 1, "name": "cat"}]}))
    elif fmt == "csv":
        ann = tmp_path / "l.csv"
        ann.write_text(HEADER + "a.jpg,32,32,cat,2,2,20,20\n./a.jpg,32,32,dog,2,2,20,20\n")
    else:
        ann = tmp_path / "l.csv"
        ann.write_text("TRAIN,gs://b/x/a.jpg,cat,0.1,0.1,,,0.5,0.5,,\n"
                       "TRAIN,gs://b/y/a.jpg,dog,0.1,0.1,,,0.5,0.5,,\n")
    _refused(tmp_path, ["--format", fmt, "--annotations", str(ann)], capsys,
             "a.jpg is annotated twice")


def test_coco_categories_sharing_a_name_are_not_merged_silently(tmp_path, capsys):
    _img(tmp_path / "a.jpg")
    (tmp_path / "c.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 32, "height": 32}],
        "annotations": [{"id": k, "image_id": 1, "category_id": k, "bbox": [2, 2, 4 * k, 9]}
                        for k in (1, 2)],
        "categories": [{"id": 0, "name": "cat"}, {"id": 1, "name": "cat"},
                       {"id": 2, "name": "cat"}]}))
    _refused(tmp_path, ["--format", "coco", "--annotations", str(tmp_path / "c.json")], capsys,
             "categories 1 and 2 are both named 'cat'")


def test_voc_devkit_lists_with_a_bom_keep_their_split_and_latin_1_is_named(tmp_path,
                                                                            capsys):
    for s in "ab":
        _img(tmp_path / "JPEGImages" / f"{s}.jpg")
        (tmp_path / "Annotations").mkdir(exist_ok=True)
        (tmp_path / "Annotations" / f"{s}.xml").write_text(_xml(filename=f"{s}.jpg"))
    lists = tmp_path / "ImageSets" / "Main"
    lists.mkdir(parents=True)
    (lists / "test.txt").write_bytes(b"\xef\xbb\xbfa\r\nb\r\n")
    code, _ = _run(tmp_path, ["--format", "voc", "--annotations", str(tmp_path)], capsys)
    assert code == 0
    assert json.loads((_out(tmp_path) / "summary.json").read_text())["images"] == {"test": 2}
    shutil.rmtree(_out(tmp_path))
    (lists / "test.txt").write_bytes(b"a\n\xe9\n")  # latin-1: named, no traceback
    _refused(tmp_path, ["--format", "voc", "--annotations", str(tmp_path)],
             capsys, "test.txt:2", "not UTF-8")


# ---- accepted, and arriving right ------------------------------------------------------------
@pytest.mark.parametrize("header,sep", [(HEADER.upper(), ","), (HEADER.replace(",", ";"), ";"),
                                        (HEADER.replace(",", "\t"), "\t")])
def test_csv_header_case_and_excel_separators_are_read(tmp_path, capsys, header, sep):
    row = sep.join(["a.jpg", "32", "32", "cat", "8", "4", "24", "20"]) + "\n"
    code, _ = _run(tmp_path, _csv(tmp_path, header + row), capsys)
    assert code == 0
    (ex,) = tfrecord.read(_out(tmp_path))
    assert ex.record.boxes[0].yxyx == (0.125, 0.25, 0.625, 0.75)


@pytest.mark.parametrize("body,expected", [
    ("a.jpg,32,32,cat,2,2,20,20\n", "looks like data, not a header"),
    ("filename;width;height;class;xmin;ymin;xmax;ymax\na.jpg;32;32;cat;1,5;2;20;20\n",
     "decimals with a point"),
])
def test_csv_without_header_or_with_decimal_commas_says_how_to_fix(tmp_path, capsys, body,
                                                                   expected):
    _refused(tmp_path, _csv(tmp_path, body), capsys, "l.csv", expected)


def test_voc_uppercase_xml_extension_is_read_and_mac_resource_files_are_not(tmp_path, capsys):
    _img(tmp_path / "a.jpg")
    (tmp_path / "a.XML").write_text(_xml())
    (tmp_path / "._a.xml").write_bytes(b"\x00\x05\x16\x07 Mac OS X resource fork")
    code, _ = _run(tmp_path, ["--format", "voc", "--annotations", str(tmp_path)], capsys)
    assert code == 0 and len(tfrecord.read(_out(tmp_path))) == 1


def test_box_clipped_within_one_pixel_is_counted_and_said(tmp_path, capsys):
    code, text = _run(tmp_path, _csv(tmp_path, HEADER + "a.jpg,32,32,cat,2,2,33,20\n"), capsys)
    assert code == 0 and "clipped 1 box(es)" in text
    summary = json.loads((_out(tmp_path) / "summary.json").read_text())
    assert summary["fixes"]["clipped_boxes"] == 1


# ---- clearer messages ------------------------------------------------------------------------
@pytest.mark.parametrize("content,expected", [
    (b"", "the file is empty, 0 bytes"),
    (b"hello world\n", "starts with b'hello world"),
    (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 32, "HEIC"),
])
def test_unreadable_image_says_what_it_is_and_which_annotation_names_it(tmp_path, capsys,
                                                                        content, expected):
    args = _csv(tmp_path, HEADER + "a.jpg,32,32,cat,2,2,20,20\n", images=())
    (tmp_path / "a.jpg").write_bytes(content)
    _refused(tmp_path, args, capsys, "l.csv:2: ", expected)
    assert "BytesIO" not in capsys.readouterr().err


def test_missing_image_names_a_file_differing_only_by_case_or_extension(tmp_path, capsys):
    args = _csv(tmp_path, HEADER + "a.JPG,32,32,cat,2,2,20,20\nb,32,32,cat,2,2,20,20\n",
                images=("a.jpg", "b.png"))
    (tmp_path / "b.xml").write_text("not an image")
    code, text = _run(tmp_path, args, capsys)
    assert code == 2 and "Found a.jpg in" in text and "Found b.png in" in text
    assert "b.xml" not in text


def test_missing_images_folder_is_one_clear_error(tmp_path, capsys):
    args = _csv(tmp_path, HEADER + "a.jpg,32,32,cat,2,2,20,20\n")
    _refused(tmp_path, [*args, "--images", str(tmp_path / "nope")], capsys,
             "--images", "no such folder")


# ---- label maps --------------------------------------------------------------------------------
def test_label_map_with_a_bom_is_read_and_an_empty_one_is_refused(tmp_path):
    (tmp_path / "bom.pbtxt").write_bytes(b"\xef\xbb\xbfitem { id: 1 name: 'cat' }\n")
    assert label_map.read(tmp_path / "bom.pbtxt").names == ["cat"]
    (tmp_path / "empty.pbtxt").write_text("# nothing yet\n")
    with pytest.raises(label_map.LabelMapError, match="lists no classes"):
        label_map.read(tmp_path / "empty.pbtxt")


def test_awkward_class_names_survive_the_written_label_map(tmp_path, capsys):
    names = ["it's", "back\\slash", 'q"uote', "two words", "日本", "cat, big"]
    rows = "".join(f'a.jpg,32,32,"{n.replace(chr(34), 2 * chr(34))}",{k + 1},2,20,20\n'
                   for k, n in enumerate(names))
    code, _ = _run(tmp_path, _csv(tmp_path, HEADER + rows), capsys)
    assert code == 0
    lm = label_map.read(_out(tmp_path) / "label_map.pbtxt")
    assert sorted(lm.names) == sorted(names)
    (ex,) = tfrecord.read(_out(tmp_path))
    assert [lm.names[i - 1] for i in ex.class_ids] == [b.label for b in ex.record.boxes] == names


# ---- a user's files --------------------------------------------------------------------------
def test_inspect_default_folder_never_overwrites_the_users_own_files(tmp_path, capsys):
    """A raw annotation folder is never written into: the default output is a sibling
    `<name>_inspect`, refused when it holds a user's files, replaced when od wrote it."""
    data = tmp_path / "voc"
    data.mkdir()
    _img(data / "a.jpg")
    (data / "a.xml").write_text(_xml())
    mine = tmp_path / "voc_inspect" / "summary.json"
    mine.parent.mkdir()
    mine.write_text("my notes")
    assert main(["data", "inspect", str(data), "--format", "voc"]) == 2
    assert "not an output of od" in capsys.readouterr().err and mine.read_text() == "my notes"
    mine.unlink()
    mine.parent.rmdir()
    for _ in range(2):  # its own previous output is replaced without --overwrite
        assert main(["data", "inspect", str(data), "--format", "voc"]) == 0
    assert json.loads(mine.read_text())["images"] == 1
    assert sorted(p.name for p in data.iterdir()) == ["a.jpg", "a.xml"]


def test_inspect_default_folder_is_inside_only_a_folder_od_converted(tmp_path, capsys):
    from od.data.inspect import default_out
    data = tmp_path / "voc"
    data.mkdir()
    _img(data / "a.jpg")
    (data / "a.xml").write_text(_xml())
    out = tmp_path / "tf"
    assert main(["data", "convert", "--format", "voc", "--images", str(data), "--annotations",
                 str(data), "--out", str(out), "--workers", "1", "--split", "1,0,0"]) == 0
    assert default_out(out) == out / "inspect"
    assert default_out(data) == tmp_path / "voc_inspect"
    assert default_out(data / "a.xml") == data / "a_inspect"  # a file: beside it, as before
    assert default_out(data / "*.tfrecord") == tmp_path / "voc_inspect"  # no literal '*' folder
    assert default_out(out / "train-*.tfrecord") == out / "inspect"
    assert main(["data", "inspect", str(out / "train*")]) == 0
    assert (out / "inspect" / "summary.json").is_file()


def test_a_png_keeps_its_name_in_the_tfrecord_and_becomes_a_jpg_file_in_a_folder(tmp_path,
                                                                                 capsys):
    """A PNG is stored as JPEG bytes. A TFRecord names the source (image/filename a.png,
    image/format jpeg: a.png and a.jpg stay two names); a written folder gets a real a.jpg."""
    args = _csv(tmp_path, HEADER + "a.png,32,32,cat,2,2,20,20\nb.jpg,32,32,cat,2,2,20,20\n",
                images=("b.jpg",))
    Image.new("RGB", (32, 32), (10, 20, 30)).save(tmp_path / "a.png")
    code, text = _run(tmp_path, args, capsys)
    assert code == 0, text
    got = {e.record.image_path.name: e.image_format
           for e in tfrecord.read(_out(tmp_path) / "train*.tfrecord*")}
    assert got == {"a.png": "jpeg", "b.jpg": "jpeg"}
    voc = tmp_path.with_name(tmp_path.name + "-voc")
    assert main(["data", "convert", *args, "--out", str(voc), "--to", "voc", "--workers", "1",
                 "--split", "1,0,0"]) == 0
    assert sorted(p.name for p in voc.rglob("*.jpg")) == ["a.jpg", "b.jpg"]


def test_non_utf8_csv_after_a_bom_names_the_right_line_offset_and_bytes(tmp_path):
    from od.data import csv as csv_lib
    from od.errors import OdError

    (tmp_path / "a.csv").write_bytes(b"\xef\xbb\xbf" + HEADER.encode() + b"ab\xe9.jpg,3\n")
    with pytest.raises(OdError, match=r"a\.csv:2: .*b'\\xe9\.jp' at offset 53"):  # 3 + 48 + 2
        csv_lib.read(tmp_path / "a.csv")
