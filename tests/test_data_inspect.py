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
