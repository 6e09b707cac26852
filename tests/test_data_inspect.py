"""od/data/inspect.py: a dataset summary (counts, box sizes, balance) and its plots."""
import json

from od.data.convert import convert
from od.data.inspect import PLOTS, inspect

from test_data_tools import _small_set


def test_inspect_writes_summary_and_plots(tmp_path):
    src = _small_set(tmp_path)
    convert(src, tmp_path / "tf", workers=1)
    s = inspect(tmp_path / "tf", samples=4)
    assert s["images"] == 6 and s["boxes"] == 6
    assert s["class_balance"]["classes"]["cat"] == {"images": 3, "boxes": 3}
    assert s["box_width_px"]["median"] == 32.0 and s["box_aspect_w_over_h"]["max"] == round(32 / 22, 3)
    for name in PLOTS:
        assert (tmp_path / "tf" / "inspect" / name).read_bytes()[:4] == b"\x89PNG"
    s2 = inspect(src, tmp_path / "i2", format="voc")
    assert s2["images"] == 6 and json.loads((tmp_path / "i2" / "summary.json").read_text())


def test_inspect_draws_boxes_all_of_one_size(tmp_path):
    """Shelf-like photos: every box 35x28 px, so widths differ only by float rounding (35.0 and
    35.000000001): matplotlib's 30 bins could not split that range and `od data inspect` was an
    internal error. The anchor plot of the same boxes is drawn too."""
    from PIL import Image

    from conftest import CONFIGS
    src = tmp_path / "shelf"
    src.mkdir()
    for k in range(2):
        Image.new("RGB", (600, 400), (200, 200, 200)).save(src / f"s{k}.jpg")
        objs = "".join(f"<object><name>can</name><bndbox><xmin>{x}</xmin><ymin>{y}</ymin><xmax>"
                       f"{x + 35}</xmax><ymax>{y + 28}</ymax></bndbox></object>"
                       for x in range(5, 600 - 40, 50) for y in range(5, 400 - 30, 40))
        (src / f"s{k}.xml").write_text(
            f"<annotation><filename>s{k}.jpg</filename><size><width>600</width><height>400"
            f"</height><depth>3</depth></size>{objs}</annotation>")
    s = inspect(src, tmp_path / "insp", format="voc", samples=2,
                config=[CONFIGS / "retinanet_mobilenetv2_fpn_256.yaml"])
    assert s["boxes"] == 2 * 12 * 10 and s["box_width_px"]["min"] == s["box_width_px"]["max"]
    for name in (*PLOTS, "anchors.png"):
        assert (tmp_path / "insp" / name).read_bytes()[:4] == b"\x89PNG"
