"""od/synthetic.py: the generated shapes dataset is deterministic VOC that od reads back."""
import numpy as np

from od import synthetic
from od.data import voc


def test_make_image_draws_objects_inside_the_image_without_overlap():
    img, objects = synthetic.make_image(np.random.default_rng(5), 120, 90, max_objects=3)
    assert img.size == (120, 90) and img.mode == "RGB"
    for cls, (x0, y0, x1, y1) in objects:
        assert cls in synthetic.CLASSES and 0 <= x0 < x1 <= 120 and 0 <= y0 < y1 <= 90
    boxes = [b for _, b in objects]
    assert not any(synthetic._overlaps(b, boxes[:k]) for k, b in enumerate(boxes))


def test_generate_is_deterministic_voc(tmp_path):
    synthetic.generate(tmp_path / "a", 4, size=(64, 48), seed=2)
    synthetic.generate(tmp_path / "b", 4, size=(64, 48), seed=2)
    names = sorted(p.name for p in (tmp_path / "a" / "images").iterdir())
    assert names == [f"shapes-{k:04d}.jpg" for k in range(4)]
    for sub in ("images", "annotations"):
        for p in (tmp_path / "a" / sub).iterdir():
            assert p.read_bytes() == (tmp_path / "b" / sub / p.name).read_bytes()
    read = voc.read(tmp_path / "a" / "annotations", tmp_path / "a" / "images")
    assert len(read.records) == 4 and set(read.class_names) <= set(synthetic.CLASSES)
