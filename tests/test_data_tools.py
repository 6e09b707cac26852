"""Data tools through convert and the CLI (byte duplicates, shards, workers) and the real datasets.
Each tool alone: tests/test_data_{duplicates,balance,split,inspect}.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from od.cli import main
from od.data import duplicates, tfrecord
from od.data.convert import convert
from od.data.records import ImageAnnotation, ObjectBox
from test_data_formats import (CHESS, RACCOON, beside, make_image, needs_chess,
                               needs_raccoon, write_voc)


def rec(name: str, *labels: str, split_=None) -> ImageAnnotation:
    return ImageAnnotation(Path(name), 10, 10,
                           tuple(ObjectBox(0, 0, 1, 1, lab) for lab in labels), split=split_)


def test_convert_reports_byte_duplicates_and_removes_with_dedupe(tmp_path):
    for n in ("a", "b"):
        make_image(tmp_path / f"{n}.jpg")
        write_voc(tmp_path, f"{n}.jpg", objects=[("cat", 1, 1, 9, 9, 0, 0)])
    make_image(tmp_path / "c.jpg", color=(1, 200, 3))
    write_voc(tmp_path, "c.jpg")
    s = convert(tmp_path, beside(tmp_path, "o1"), split="1,0,0", workers=1)
    assert s.duplicates["method"] == "bytes" and s.duplicates["duplicate_images"] == 1
    assert sum(s.images.values()) == 3
    s = convert(tmp_path, beside(tmp_path, "o2"), split="1,0,0", workers=1, dedupe=True)
    assert s.duplicates["method"] == "pixels" and s.duplicates["removed"] == 1
    assert sum(s.images.values()) == 2


# ---- shards, CLI -------------------------------------------------------------------------
def _small_set(tmp_path, n=6):
    for k in range(n):
        make_image(tmp_path / "src" / f"i{k}.jpg", (64, 48), color=(k * 30, 10, 10))
        write_voc(tmp_path / "src", f"i{k}.jpg", 64, 48,
                  [("cat" if k % 2 else "dog", 8, 8, 40, 30, 0, 0)])
    return tmp_path / "src"


def test_shards_sized_by_bytes_with_parallel_workers(tmp_path):
    src = _small_set(tmp_path)
    s = convert(src, tmp_path / "out", split="1,0,0", shard_bytes=1500, workers=2)
    shards = s.shards["train"]
    assert len(shards) >= 2 and shards[0] == f"train-00000-of-{len(shards):05d}.tfrecord"
    assert len(tfrecord.read(tmp_path / "out")) == 6
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith(".")]  # no temporaries


def test_cli_convert_and_inspect(tmp_path, capsys):
    src = _small_set(tmp_path)
    assert main(["data", "convert", "--format", "voc", "--images", str(src), "--annotations",
                 str(src), "--out", str(tmp_path / "d"), "--to", "coco", "--workers", "1",
                 "--split", "0.5,0.5"]) == 0
    assert (tmp_path / "d" / "train" / "_annotations.coco.json").is_file()
    assert main(["data", "inspect", str(tmp_path / "d"), "--format", "coco"]) == 0
    assert '"images": 6' in capsys.readouterr().out


def test_cli_error_is_one_clear_line(tmp_path, capsys):
    assert main(["data", "convert", "--annotations", str(tmp_path), "--out",
                 str(beside(tmp_path))]) == 2
    assert "no .xml files" in capsys.readouterr().err


# ---- the real datasets -----------------------------------------------------------------------
@needs_raccoon
def test_raccoon_voc_and_csv_agree_and_grayscale_is_kept():
    from od.data import csv as csv_fmt
    from od.data import voc
    v = voc.read(RACCOON / "annotations", RACCOON / "images")
    c = csv_fmt.read(RACCOON / "data" / "raccoon_labels.csv", RACCOON / "images")
    assert len(v.records) == len(c.records) == 200
    key = lambda r: (r.image_path.name, sorted(b.yxyx for b in r.boxes))  # noqa: E731
    assert sorted(map(key, v.records)) == sorted(map(key, c.records))
    from od.data.images import encode_for_training
    for n in (150, 152, 161):
        enc = encode_for_training(RACCOON / "images" / f"raccoon-{n}.jpg")
        assert not enc.reencoded


@needs_raccoon
def test_raccoon_byte_identical_pairs_are_found(tmp_path):
    from od.data import voc
    recs = [r for r in voc.read(RACCOON / "annotations", RACCOON / "images").records
            if r.image_path.stem in {"raccoon-65", "raccoon-98", "raccoon-11", "raccoon-116",
                                     "raccoon-1"}]
    groups = duplicates.find_duplicates(recs, workers=1)
    names = sorted(sorted(recs[k].image_path.stem for k in g) for g in groups)
    assert names == [["raccoon-11", "raccoon-116"], ["raccoon-65", "raccoon-98"]]


@needs_chess
def test_chess_coco_test_split_converts(tmp_path):
    s = convert(CHESS / "test" / "_annotations.coco.json", tmp_path / "out", format="coco",
                split="1,0,0", workers=2)
    assert s.images == {"train": 29} and s.negatives == 1
    assert "pieces" not in (tmp_path / "out" / "label_map.pbtxt").read_text()


SCRIPT = """
from od import synthetic
from od.data.convert import convert
raw = synthetic.generate({raw!r}, 16, size=(64, 48), seed=1)
{guard}convert(raw / "annotations", {out!r}, format="voc", images=raw / "images",
{indent}        shard_bytes=5000, workers=2)
print("converted")
"""


@pytest.mark.parametrize("guarded", [False, True])
def test_script_without_main_guard_gets_a_clear_error_not_endless_workers(tmp_path, guarded):
    """Workers are 'spawn' processes that import the calling script again; an unguarded script
    must fail once, with the fix, instead of restarting dead workers forever."""
    import subprocess
    import sys

    script = tmp_path / "convert_script.py"
    script.write_text(SCRIPT.format(raw=str(tmp_path / "raw"), out=str(tmp_path / "data"),
                                    guard='if __name__ == "__main__":\n    ' if guarded else "",
                                    indent="    " if guarded else ""))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    if guarded:
        assert r.returncode == 0 and "converted" in r.stdout, r.stderr[-2000:]
        assert (tmp_path / "data" / "summary.json").is_file()
    else:
        assert r.returncode != 0 and "__name__ == \"__main__\"" in r.stderr, r.stderr[-2000:]
        assert not (tmp_path / "data").exists()
