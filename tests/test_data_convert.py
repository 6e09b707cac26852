"""`od data convert` with worker processes gives what one process gives: the same summary, the
same examples in the same shards, the same first error; and the fast paths of the conversion
(VOC box normalisation, the clean-record box check, shard parts) agree with the code they skip.
"""
from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from od import boxes as box_lib
from od import synthetic
from od.data import parallel, shards, tfrecord, voc
from od.data.convert import InvalidDataError, _clean, convert
from od.data.records import ImageAnnotation, ObjectBox
from od.data.tfrecord_io import iter_records, write_records
from od.data.validate import check_boxes
from od.errors import AnnotationError
from od.label_map import LabelMap


def _voc(name: str, w: int, h: int, boxes) -> str:
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
                   f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                   for n, x0, y0, x1, y1 in boxes)
    return (f"<annotation><filename>{name}</filename><size><width>{w}</width>"
            f"<height>{h}</height></size>{objs}</annotation>")


def _mixed(root: Path, n: int = 120) -> tuple[Path, Path]:
    """``n`` generated images plus what convert repairs or reports: a PNG (re-encoded), an
    EXIF-rotated JPEG whose box is on the stored pixels (turned), a missing image, a box
    sticking out (clipped), a repeated box (dropped), a size that lies (reported), a negative."""
    raw = synthetic.generate(root / "raw", n, size=(40, 32), seed=5)
    ann, images = raw / "annotations", raw / "images"
    Image.new("RGB", (40, 30), (200, 10, 10)).save(images / "png.png")
    (ann / "png.xml").write_text(_voc("png.png", 40, 30, [("circle", 2, 2, 20, 20)]))
    a = np.zeros((30, 40, 3), np.uint8)
    a[4:12, 4:20] = 255
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(images / "exif.jpg", "JPEG", exif=exif.tobytes())
    (ann / "exif.xml").write_text(_voc("exif.jpg", 40, 30, [("circle", 4, 4, 20, 12)]))
    (ann / "missing.xml").write_text(_voc("missing.jpg", 40, 30, [("circle", 2, 2, 9, 9)]))
    Image.new("RGB", (40, 30)).save(images / "out.jpg")
    (ann / "out.xml").write_text(_voc("out.jpg", 40, 30, [("circle", 30, 2, 40.6, 9)]))
    Image.new("RGB", (40, 30)).save(images / "twice.jpg")
    (ann / "twice.xml").write_text(_voc("twice.jpg", 40, 30, [("circle", 2, 2, 9, 9)] * 2))
    Image.new("RGB", (40, 30)).save(images / "lies.jpg")
    (ann / "lies.xml").write_text(_voc("lies.jpg", 41, 30, [("circle", 2, 2, 9, 9)]))
    Image.new("RGB", (40, 30)).save(images / "empty.jpg")
    (ann / "empty.xml").write_text(_voc("empty.jpg", 40, 30, []))
    return ann, images


def _contents(out: Path) -> tuple[dict, dict]:
    """(summary without out_dir, {file: [parsed examples] or bytes})."""
    summary = json.loads((out / "summary.json").read_text())
    summary.pop("out_dir")
    files = {}
    for f in sorted(p for p in out.rglob("*") if p.is_file() and p.name != "summary.json"):
        rel = f.relative_to(out).as_posix()
        if f.suffix == ".tfrecord":
            files[rel] = [tfrecord.parse_example(r) for r in iter_records(f)]
        elif f.suffix == ".json":
            files[rel] = json.loads(f.read_text())
        else:
            files[rel] = f.read_bytes()
    return summary, files


@pytest.mark.parametrize("to", ["tfrecord", "coco"])
def test_workers_write_what_one_process_writes(tmp_path, to):
    ann, images = _mixed(tmp_path)
    kw = dict(format="voc", images=images, split=(0.6, 0.2, 0.2), skip_invalid=True,
              box_policy="clip", shard_bytes=20_000, to=to)
    one = convert(ann, tmp_path / "one", workers=1, **kw)
    two = convert(ann, tmp_path / "two", workers=2, **kw)
    assert one.shards == two.shards and one.images == two.images
    assert one.fixes == two.fixes and one.fixes["exif_boxes_rotated"] == 1
    assert {s["reason"] for s in two.skipped} == {"missing_image", "size_mismatch"}
    s1, f1 = _contents(tmp_path / "one")
    s2, f2 = _contents(tmp_path / "two")
    assert s1 == s2
    if to == "tfrecord":  # two workers: at least 2 shards per split, several parts each
        assert min(len(v) for v in two.shards.values()) >= 2
    assert f1.keys() == f2.keys() and f1 == f2
    assert not [p for p in tmp_path.rglob("*") if ".parts" in p.name or ".tmp-" in p.name]


def test_workers_raise_the_first_bad_file_in_name_order(tmp_path):
    raw = synthetic.generate(tmp_path / "raw", 150, size=(40, 32), seed=1)
    ann = raw / "annotations"
    files = sorted(ann.glob("*.xml"))
    files[20].write_text("<annotation><filename>x.jpg</filename>")  # not well-formed
    files[140].write_text("<annotation/>")  # no <filename>
    for workers in (1, 2):
        with pytest.raises(AnnotationError) as e:
            convert(ann, tmp_path / f"out{workers}", images=raw / "images", workers=workers)
        assert str(files[20]) in str(e.value) and "not well-formed" in str(e.value)
        assert not (tmp_path / f"out{workers}").exists()


def test_workers_list_every_invalid_item_and_write_nothing(tmp_path):
    raw = synthetic.generate(tmp_path / "raw", 100, size=(40, 32), seed=2)
    for f in sorted((raw / "images").iterdir())[::30]:
        f.unlink()
    with pytest.raises(InvalidDataError) as e:
        convert(raw / "annotations", tmp_path / "out", images=raw / "images", workers=2)
    assert str(e.value).startswith("4 invalid item(s)") and "image file not found" in str(e.value)
    assert not (tmp_path / "out").exists()


def test_voc_normalisation_is_boxes_from_pixels():
    rng = random.Random(0)
    for _ in range(2000):
        w, h = rng.randint(1, 100_000), rng.randint(1, 100_000)
        xyxy = [rng.choice([rng.uniform(-10, w + 10), float(rng.randint(0, w))]) for _ in "abcd"]
        assert voc._normalised(*xyxy, w, h) == box_lib.from_pixels(xyxy, w, h)


def test_clean_record_check_agrees_with_check_boxes():
    lm = LabelMap.from_names(["a", "b"])
    rng = random.Random(1)
    values = [0.0, -0.0, 0.2, 0.5, 0.5, 1.0, 1.0000001, -0.001, math.nan, math.inf]
    fast = 0
    for _ in range(3000):
        boxes = tuple(ObjectBox(*(rng.choice(values) if rng.random() < 0.2 else rng.random()
                                  for _ in range(4)), label=rng.choice("aab" + "c" * 1))
                      for _ in range(rng.randint(0, 3)))
        if boxes and rng.random() < 0.1:
            boxes += boxes[:1]
        r = ImageAnnotation(Path("x.jpg"), rng.choice([40, 640]), 30, boxes, source="x.xml")
        for policy in ("error", "clip", "drop"):
            fixed, problems, counts = check_boxes(r, lm, policy)
            if _clean(r, lm, {}):
                fast += 1
                assert fixed == r and not problems and not any(counts.values())
    assert fast > 500


def test_shard_parts_join_into_the_records_in_order(tmp_path):
    records = [bytes([k]) * (k * 37 % 500) for k in range(60)]
    parts = []
    for k, chunk in enumerate(shards.chunks(records, 7)):
        parts.append(tmp_path / f"p{k}")
        write_records(parts[-1], chunk)
    assert len(parts) == 9 and shards.chunks([], 7) == [[]] and shards.chunks([1], None) == [[1]]
    shards.join(parts, tmp_path / "shard")
    assert list(iter_records(tmp_path / "shard")) == records
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard"]


def test_devkit_splits_survive_parsing_in_workers(tmp_path):
    raw = synthetic.generate(tmp_path / "raw", 90, size=(40, 32), seed=4)
    kit = tmp_path / "kit"
    kit.mkdir()
    (raw / "annotations").rename(kit / "Annotations")
    (raw / "images").rename(kit / "JPEGImages")
    stems = sorted(p.stem for p in (kit / "Annotations").iterdir())
    (kit / "ImageSets" / "Main").mkdir(parents=True)
    (kit / "ImageSets" / "Main" / "val.txt").write_text("\n".join(stems[5::4]) + "\n")
    (kit / "ImageSets" / "Main" / "test.txt").write_text("\n".join(stems[7::9]) + "\n")
    one = voc.read(kit)
    with parallel.Pool(2) as pool:
        two = voc.read(kit, pool=pool)
    assert one == two
    val_only = set(stems[5::4]) - set(stems[7::9])  # a stem in both lists is test (listed last)
    assert {Path(r.source).stem for r in two.records if r.split == "val"} == val_only
