"""Hostile input: XML entities, paths that leave the user's folders, bombs, corrupt files."""
from __future__ import annotations

import json

import pytest

from od.data import automl, coco, voc
from od.data import csv as csv_fmt
from od.data.convert import convert
from od.errors import AnnotationError, UnsafePathError
from test_data_formats import beside, make_image, write_voc

XXE = '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY l "lol">'
          + "".join(f'<!ENTITY l{i} "{("&l" + (str(i - 1) if i > 1 else "") + ";") * 10}">'
                    for i in range(1, 10)) + "]>")


def test_xxe_is_refused_with_a_clear_error(tmp_path):
    (tmp_path / "a.xml").write_text(XXE + "<annotation><filename>&x;</filename></annotation>")
    with pytest.raises(AnnotationError, match=r"a\.xml: XML with a DTD or entity"):
        voc.read(tmp_path)


def test_billion_laughs_is_refused(tmp_path):
    (tmp_path / "a.xml").write_text(LAUGHS + "<annotation><filename>&l9;</filename></annotation>")
    with pytest.raises(AnnotationError, match="DTD or entity"):
        voc.read(tmp_path)


def test_external_dtd_is_refused(tmp_path):
    (tmp_path / "a.xml").write_text('<!DOCTYPE annotation SYSTEM "http://example.com/x.dtd">'
                                    "<annotation><filename>a.jpg</filename></annotation>")
    with pytest.raises(AnnotationError, match="DTD"):
        voc.read(tmp_path)


@pytest.mark.parametrize("name", ["../../x.jpg", "/etc/passwd", "sub/../../x.jpg",
                                  "..\\..\\x.jpg", "C:\\x.jpg"])
def test_voc_filename_cannot_leave_the_images_folder(tmp_path, name):
    images = tmp_path / "data" / "images"
    images.mkdir(parents=True)
    make_image(tmp_path / "x.jpg")
    ann = tmp_path / "data" / "ann"
    ann.mkdir()
    (ann / "a.xml").write_text(f"<annotation><filename>{name}</filename><size><width>256</width>"
                               "<height>256</height></size></annotation>")
    with pytest.raises(UnsafePathError, match="images folder"):
        voc.read(ann, images)


def test_coco_csv_automl_paths_cannot_escape(tmp_path):
    (tmp_path / "img").mkdir()
    doc = {"categories": [], "annotations": [],
           "images": [{"id": 1, "file_name": "../x.jpg", "width": 4, "height": 4}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(UnsafePathError):
        coco.read(tmp_path / "c.json", tmp_path / "img")
    (tmp_path / "p.csv").write_text("filename,width,height,class,xmin,ymin,xmax,ymax\n"
                                    "../../x.jpg,4,4,cat,0,0,1,1\n")
    with pytest.raises(UnsafePathError):
        csv_fmt.read(tmp_path / "p.csv", tmp_path / "img")
    (tmp_path / "a.csv").write_text("TRAIN,gs://bucket/../../x.jpg,cat,0,0,,,1,1,,\n")
    with pytest.raises(UnsafePathError):
        automl.read(tmp_path / "a.csv", tmp_path / "img")


def test_symlink_out_of_the_images_folder_is_refused(tmp_path):
    (tmp_path / "img").mkdir()
    make_image(tmp_path / "secret.jpg")
    (tmp_path / "img" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    write_voc(tmp_path / "ann", "link.jpg")
    with pytest.raises(UnsafePathError):
        voc.read(tmp_path / "ann", tmp_path / "img")


def test_tfrecord_filename_never_writes_outside_the_output(tmp_path):
    make_image(tmp_path / "src" / "a.jpg")
    write_voc(tmp_path / "src", "a.jpg", objects=[("cat", 1, 1, 9, 9, 0, 0)])
    convert(tmp_path / "src", tmp_path / "tf", split="1,0,0", workers=1)
    # rewrite the stored filename as a traversal, as a hostile record would have it
    from od.data import tfrecord, tfrecord_io
    shard = next((tmp_path / "tf").glob("*.tfrecord"))
    raw = next(tfrecord_io.iter_records(shard))
    ex = tfrecord_io.Example.FromString(raw)
    ex.features.feature[tfrecord.FILENAME].bytes_list.value[0] = b"../../../evil.jpg"
    tfrecord_io.write_records(shard, [ex.SerializeToString()])
    convert(tmp_path / "tf", tmp_path / "out", format="tfrecord", to="voc", workers=1)
    assert (tmp_path / "out" / "JPEGImages" / "evil.jpg").is_file()
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path.parent / "evil.jpg").exists()


def test_bomb_in_a_dataset_is_reported_by_name(tmp_path, monkeypatch):
    from od.data import images
    make_image(tmp_path / "big.png", (300, 300), fmt="PNG")
    write_voc(tmp_path, "big.png", 300, 300, objects=[("cat", 1, 1, 9, 9, 0, 0)])
    monkeypatch.setattr(images, "MAX_PIXELS", 200 * 200)
    s = convert(tmp_path, beside(tmp_path), split="1,0,0", workers=1, skip_invalid=True)
    assert s.skipped[0]["reason"] == "undecodable_image"
    assert "big.png" in s.skipped[0]["message"] and "decompression bomb" in s.skipped[0]["message"]


def test_huge_xml_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(voc, "_MAX_XML_BYTES", 100)
    write_voc(tmp_path, "a.jpg", objects=[("cat", 1, 1, 9, 9, 0, 0)] * 5)
    with pytest.raises(AnnotationError, match="refusing files over"):
        voc.read(tmp_path)


def test_xxe_in_utf16_is_refused(tmp_path):
    text = XXE.replace('"1.0"?>', '"1.0" encoding="UTF-16"?>') + \
        "<annotation><filename>&x;</filename></annotation>"
    (tmp_path / "a.xml").write_bytes(text.encode("utf-16"))
    with pytest.raises(AnnotationError, match="DTD"):
        voc.read(tmp_path)
