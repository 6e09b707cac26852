"""od.detect: batched, pipelined ``detect_folder`` writes exactly what one image at a time does."""
import json

import numpy as np
import pytest
from PIL import Image

from od import detect, outputs
from od.errors import ImageError, OdError


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The tiny run exported, and a folder of mixed images: photos resized to 80x64 (5), 50x70
    (3) and 96x96 (1), a grayscale PNG, an undecodable file, and two files of one stem
    (a.jpg, a.png)."""
    from od import export

    root, _ = tiny_run
    out = tmp_path_factory.mktemp("detect")
    export.export(root / "run", out / "export")
    photos = sorted((root / "raw" / "images").iterdir())[:9]
    folder = out / "mixed"
    folder.mkdir()
    for k, p in enumerate(photos):
        size = (96, 96) if k == 5 else (50, 70) if k % 3 == 1 else (80, 64)
        Image.open(p).convert("RGB").resize(size).save(folder / f"img{k}.jpg", quality=90)
    Image.open(photos[0]).convert("L").save(folder / "grey.png")
    Image.open(photos[1]).convert("RGB").save(folder / "a.jpg")
    Image.open(photos[2]).convert("RGB").resize((50, 70)).save(folder / "a.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return out / "export", folder


def _files(folder):
    """Every file's bytes; the marker (which holds each file's write time) by its names only."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes()
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != outputs.MARKER}
    marker = outputs.read_marker(folder)
    return {**files, outputs.MARKER: (marker["entries"], sorted(marker.get("files", {})))}


def test_batched_outputs_equal_one_image_at_a_time(exported, tmp_path):
    export, folder = exported
    kw = dict(min_score=0.0, voc=True, crops=True, progress=False)
    one = detect.detect_folder(export, folder, tmp_path / "one", batch_size=1, workers=0, **kw)
    many = detect.detect_folder(export, folder, tmp_path / "many", batch_size=4, workers=3, **kw)
    assert many == one
    assert [r["image"] for r in many["images"]] == sorted(
        p.name for p in folder.iterdir() if p.name != "broken.jpg")  # file order kept
    assert [s["image"] for s in many["skipped"]] == ["broken.jpg"] and many["skipped"][0]["reason"]
    assert json.loads((tmp_path / "many" / "detections.json").read_text()) == many
    assert _files(tmp_path / "many") == _files(tmp_path / "one")  # drawn images, csv, voc, crops
    drawn = Image.open(tmp_path / "many" / "a_png.jpg")
    assert drawn.size == (50, 70)  # a.png: colliding stems get <stem>_<ext> names


def test_large_images_run_alone_and_short_passes_change_nothing(exported, tmp_path, monkeypatch):
    """Images over BATCH_MAX_PIXELS are never batched, and passes end early at WINDOW_PIXELS
    (memory bounds for large photos); the outputs stay those of one image at a time."""
    export, folder = exported
    kw = dict(min_score=0.0, progress=False, workers=0)
    one = detect.detect_folder(export, folder, tmp_path / "one", batch_size=1, **kw)
    sizes: list[int] = []
    batch = detect.Detector.batch

    def counted(self, images):
        sizes.append(len(images))
        return batch(self, images)

    monkeypatch.setattr(detect.Detector, "batch", counted)
    monkeypatch.setattr(detect, "BATCH_MAX_PIXELS", 60 * 70)  # 50x70 batched, 80x64 alone
    monkeypatch.setattr(detect, "WINDOW_PIXELS", 3 * 80 * 64)  # passes of about 3 images
    capped = detect.detect_folder(export, folder, tmp_path / "capped", **kw)  # default batch 8
    assert capped == one
    assert max(sizes) >= 2 and sum(sizes) == len(one["images"])
    assert _files(tmp_path / "capped") == _files(tmp_path / "one")


def test_detector_batch_is_exactly_per_image_calls(exported):
    export, folder = exported
    det = detect.Detector(export)
    images = [detect.load_image(p) for p in sorted(folder.glob("img*.jpg"))]
    same = [im for im in images if im.shape == images[0].shape]
    assert len(same) >= 3
    for got, want in zip(det.batch(same), [det(im) for im in same]):
        assert (got.width, got.height) == (want.width, want.height)
        for a, b in [(got.boxes, want.boxes), (got.scores, want.scores),
                     (got.class_ids, want.class_ids)]:
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ImageError, match="one shape"):
        det.batch(images[:2])


def test_tiles_and_bad_batch_size(exported, tmp_path):
    export, folder = exported
    r = detect.detect_folder(export, folder, tmp_path / "tiles", min_score=0.0, tile=32,
                             progress=False)
    readable = [p for p in folder.iterdir() if p.name != "broken.jpg"]  # 9 photos, grey, a.*
    assert len(r["images"]) == len(readable) == 12
    assert [s["image"] for s in r["skipped"]] == ["broken.jpg"]
    with pytest.raises(OdError, match="batch-size"):
        detect.detect_folder(export, folder, tmp_path / "bad", batch_size=0, progress=False)


class _Fake:
    """A detector whose one box encodes the image's first pixel; records its batch sizes."""

    label_map = None

    def __init__(self):
        self.calls = []

    def __call__(self, image):
        return self.batch([image])[0]

    def batch(self, images):
        from od.detections import Detections
        self.calls.append(len(images))
        return [Detections.make([[0, 0, 1, 1]], [im[0, 0, 0] / 255], [1], im.shape[1],
                                im.shape[0]) for im in images]


def test_detect_all_groups_sizes_and_keeps_order():
    sizes = [(4, 5), (6, 7), (4, 5), (4, 5), (6, 7), (4, 5), (4, 5)]
    images = [np.full((*s, 3), k, np.uint8) for k, s in enumerate(sizes)]
    fake = _Fake()
    found = detect._detect_all(fake, images, 3, 0, 0.2)
    assert [round(float(d.scores[0]) * 255) for d in found] == list(range(len(images)))
    assert [(d.height, d.width) for d in found] == sizes
    assert fake.calls == [3, 2, 2]  # (4, 5): 3 + 2 images, (6, 7): 2
    fake.calls.clear()
    detect._detect_all(fake, images, 1, 0, 0.2)
    assert fake.calls == [1] * len(images)


def test_inline_pool_runs_at_once_and_keeps_errors():
    pool = detect._pool(0, "x")
    assert pool.submit(lambda a, b: a + b, 2, 3).result() == 5
    failed = pool.submit(detect.load_image, "/nonexistent/image.jpg")
    with pytest.raises(ImageError, match="nonexistent"):
        failed.result()
    assert detect._decode(detect.Path("/nonexistent/image.jpg"))[1]
