"""od/data/duplicates.py: the same picture found by decoded pixels across file formats."""
from PIL import Image

from od.data import duplicates
from od.data.records import ImageAnnotation

from test_data_formats import make_image


def test_duplicates_by_decoded_pixels_across_formats(tmp_path):
    img = Image.effect_noise((32, 24), 50).convert("RGB")
    img.save(tmp_path / "a.png")
    img.save(tmp_path / "b.bmp")  # same pixels, different file and format
    make_image(tmp_path / "c.jpg", (32, 24))
    recs = [ImageAnnotation(tmp_path / n, 32, 24) for n in ("a.png", "b.bmp", "c.jpg")]
    groups = duplicates.find_duplicates(recs, workers=1)
    assert groups == [[0, 1]]
    kept, removed = duplicates.remove_duplicates(recs, groups)
    assert [r.image_path.name for r in kept] == ["a.png", "c.jpg"]
    assert removed[0]["reason"] == "duplicate" and "a.png" in removed[0]["message"]
