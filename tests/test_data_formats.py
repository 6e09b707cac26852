"""Annotation formats together: any format to any other within one pixel, writers keep flags,
the example annotation files agree. Each reader alone: tests/test_data_<format>.py."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from od.data import voc
from od.data.convert import convert, read_annotations

SHARED = Path(__file__).parents[1].parent / "shared"
RACCOON = SHARED / "data" / "raccoon"
CHESS = SHARED / "data" / "chess_coco"
needs_raccoon = pytest.mark.skipif(not RACCOON.is_dir(), reason="../shared/data/raccoon absent "
                                   "(a user clone has no shared/)")
needs_chess = pytest.mark.skipif(not CHESS.is_dir(), reason="../shared/data/chess_coco absent "
                                 "(a user clone has no shared/)")


def make_image(path: Path, size=(256, 256), mode="RGB", fmt="JPEG", color=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = color if color is not None else (0 if mode == "L" else (120, 60, 30)[:len(mode)])
    Image.new(mode, size, color).save(path, format=fmt)
    return path


def voc_xml(filename: str, w: int, h: int, objects=(), extra: str = "") -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><truncated>{t}</truncated><bndbox>"
        f"<xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for n, x0, y0, x1, y1, d, t in objects)
    return (f"{extra}<annotation><filename>{filename}</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size>{objs}</annotation>")


def write_voc(folder: Path, name: str, w=256, h=256, objects=(), extra="") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / (Path(name).stem + ".xml")
    p.write_text(voc_xml(name, w, h, objects, extra))
    return p


def beside(folder: Path, name: str = "out") -> Path:
    """A folder next to ``folder``: an output may not lie inside its input (od.outputs)."""
    return folder.with_name(f"{folder.name}-{name}")


# ---- writers: any format to any other, within 1 pixel ----------------------------------------
def _boxes_px(records):
    return sorted((r.image_path.stem, r.width, r.height, b.label, b.xmin * r.width,
                   b.ymin * r.height, b.xmax * r.width, b.ymax * r.height)
                  for r in records for b in r.boxes)


def _source(tmp_path):
    make_image(tmp_path / "src" / "a.jpg", (300, 200))
    make_image(tmp_path / "src" / "b.png", (120, 90), mode="RGBA", fmt="PNG")
    make_image(tmp_path / "src" / "n.jpg", (50, 40))
    write_voc(tmp_path / "src", "a.jpg", 300, 200, [("cat", 10.4, 20.6, 150.2, 199, 1, 0),
                                                    ("dog", 0, 0, 300, 100, 0, 1)])
    write_voc(tmp_path / "src", "b.png", 120, 90, [("cat", 5, 5, 60, 45, 0, 0)])
    write_voc(tmp_path / "src", "n.jpg", 50, 40)
    return tmp_path / "src"


READ_BACK = {
    "tfrecord": lambda d: read_annotations(d, "tfrecord"),
    "voc": lambda d: read_annotations(d, "voc"),
    "coco": lambda d: read_annotations(d, "coco"),
    "csv": lambda d: read_annotations(d, "csv"),
    "automl": lambda d: read_annotations(d / "automl.csv", "automl"),
}


@pytest.mark.parametrize("chain", [("coco", "csv", "automl", "voc", "tfrecord"),
                                   ("tfrecord", "automl", "coco", "voc", "csv")])
def test_round_trip_keeps_every_box_within_one_pixel(tmp_path, chain):
    src = _source(tmp_path)
    original = _boxes_px(voc.read(src).records)
    fmt, path = "voc", src
    for k, to in enumerate(chain):
        out = tmp_path / f"out{k}_{to}"
        s = convert(path, out, format=fmt, to=to, split="0.34,0.33,0.33", workers=1)
        assert sum(s.images.values()) == 3 and s.negatives == 1
        back = READ_BACK[to](out)
        got = _boxes_px(back.records)
        assert [g[:4] for g in got] == [o[:4] for o in original]
        for g, o in zip(got, original):
            assert all(abs(a - b) <= 1.0 for a, b in zip(g[4:], o[4:])), (to, g, o)
        assert {r.split for r in back.records} == {"train", "val", "test"}
        fmt, path = to, out
    if chain[-1] == "csv":  # the PNG with alpha was stored as JPEG (renamed)
        assert (path / "images" / "b.jpg").is_file()


def test_writers_keep_flags(tmp_path):
    src = _source(tmp_path)
    convert(src, tmp_path / "v", to="voc", split="1,0,0", workers=1)
    a = [r for r in voc.read(tmp_path / "v").records if r.image_path.stem == "a"][0]
    assert [(b.difficult, b.truncated) for b in a.boxes] == [(True, False), (False, True)]


@needs_raccoon  # the example files name the raccoon photos in ../shared
@pytest.mark.parametrize("fmt,path", [("voc", "voc"), ("coco", "coco.json"),
                                      ("csv", "labels.csv"), ("automl", "automl.csv")])
def test_example_annotation_files_agree(fmt, path):
    ann = Path(__file__).parents[1] / "annotations"
    recs = read_annotations(ann / path, fmt, RACCOON / "images").records
    first = [r for r in recs if r.image_path.name == "raccoon-1.jpg"][0]
    b = first.boxes[0]
    assert (round(b.xmin * 650), round(b.ymin * 417), round(b.xmax * 650),
            round(b.ymax * 417)) == (81, 88, 522, 408)
