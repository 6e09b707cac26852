"""Class names drawn in their own script (od.fonts): labels on images, plots, the TFLite runner."""
from pathlib import Path

import matplotlib
import numpy as np
import pytest

from od import fonts, label_map, plots, visualize

STIX = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "STIXGeneral.ttf"
NOT_A_CHAR = "\U000F0000"  # private use: no font here has it, so it draws the "missing" glyph
ACCENTED = ("pièce", "Würfel", "кошка", "γάτα", "señal")


@pytest.fixture(autouse=True)
def _fresh():
    fonts._font_for.cache_clear()
    yield
    fonts._font_for.cache_clear()


def _is_drawn(font, ch: str) -> bool:
    """``ch`` has its own glyph in ``font``, not the box drawn for a missing one."""
    return bytes(font.getmask(ch)) != bytes(font.getmask(NOT_A_CHAR))


@pytest.mark.parametrize("name", ACCENTED)
def test_accented_greek_and_cyrillic_names_are_drawn_as_letters(name):
    """Pillow's built-in font drew these as boxes; the label font has every letter."""
    assert fonts.font_for(name) == fonts.dejavu_sans()
    font = fonts.label_font(name, 16)
    assert all(_is_drawn(font, c) for c in name if c != " ")


def test_a_name_dejavu_lacks_uses_a_system_font_that_has_it(monkeypatch):
    """Characters DejaVu Sans lacks (as CJK) come from the first system font with them all;
    none: the font with most of them; plots get it as a fallback family."""
    name = "cat \u1d81\u20dd"  # in STIX General, not in DejaVu Sans
    dejavu = str(fonts.dejavu_sans())
    monkeypatch.setattr(fonts, "_system_fonts", lambda: [dejavu, str(STIX)])
    assert fonts.font_for(name) == STIX
    assert _is_drawn(fonts.label_font(name, 16), "\u1d81")
    assert fonts.families_for(["AP", name]) == ["DejaVu Sans", "STIXGeneral"]
    assert fonts.families_for(["AP", "pièce"]) == ["DejaVu Sans"]
    fonts._font_for.cache_clear()
    monkeypatch.setattr(fonts, "_system_fonts", lambda: [dejavu])
    assert fonts.font_for(name) == fonts.dejavu_sans()  # nothing has them: drawn as boxes


def test_drawn_labels_use_the_label_font():
    lm = label_map.parse("item { id: 1 name: 'кошка' }")
    img = np.full((120, 200, 3), 255, np.uint8)
    out = np.asarray(visualize.draw_boxes(img, [[0.4, 0.1, 0.9, 0.9]], [1], [0.9], lm))
    boxes = np.asarray(visualize.draw_boxes(img, [[0.4, 0.1, 0.9, 0.9]], [1], [0.9],
                                            label_map.parse(f"item {{ id: 1 name: "
                                                            f"'{NOT_A_CHAR * 5}' }}")))
    assert not np.array_equal(out, boxes)  # the letters, not five missing-glyph boxes


def test_plot_text_falls_back_to_the_system_font(monkeypatch, tmp_path):
    """A class name known only when the figure is drawn (a categorical axis) is drawn with the
    fallback font: the PNG differs from the same figure where that font is not found."""
    from matplotlib.figure import Figure

    def png(name, system):
        fonts._font_for.cache_clear()
        monkeypatch.setattr(fonts, "_system_fonts", lambda: system)
        fig = Figure(figsize=(2, 2))
        fig.add_subplot().bar(["pièce", name], [1, 2])
        return plots.save_figure(fig, tmp_path / f"{len(system)}.png").read_bytes()

    with_stix = png("\u1d81\u1d84\u1d8a", [str(STIX)])
    assert with_stix != png("\u1d81\u1d84\u1d8a", [])
    assert png("pièce2", [str(STIX)]) == png("pièce2", [])  # DejaVu has it all: no fallback


def test_tflite_runner_draws_with_dejavu_where_installed():
    from od.lite import detect_tflite

    font = detect_tflite.label_font(14)
    if not str(getattr(font, "path", "")).endswith("DejaVuSans.ttf"):
        pytest.skip("DejaVuSans.ttf is not installed where Pillow looks (the runner falls back "
                    "to Pillow's font)")
    assert all(_is_drawn(font, c) for c in "кошка")
