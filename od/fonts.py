"""Fonts that draw class names in their own script, for labels on images (:mod:`od.visualize`)
and text in plots (:mod:`od.plots`).

Pillow's built-in font (Aileron) has Latin letters without accents only: "pièce", "кошка" or
"γάτα" came out as boxes. Labels are drawn with DejaVu Sans, the font matplotlib ships in its
``mpl-data`` (so it is always there: Latin with accents, Greek, Cyrillic, Hebrew, Arabic and
more). A name with characters DejaVu Sans lacks (Chinese, Japanese, Korean, Thai...) is drawn
with the first font of the machine that has them all (matplotlib's list of system fonts, e.g.
Noto Sans CJK where it is installed), else the one with most of them; the names stay exact in
JSON and CSV outputs whatever font draws them.
"""
from __future__ import annotations

import functools
import threading
from pathlib import Path

#: DejaVu Sans as matplotlib ships it (matplotlib is a dependency of od).
DEJAVU_SANS = "fonts/ttf/DejaVuSans.ttf"


def dejavu_sans() -> Path:
    """Path of matplotlib's own ``DejaVuSans.ttf``."""
    import matplotlib
    return Path(matplotlib.get_data_path()) / DEJAVU_SANS


@functools.lru_cache(maxsize=None)
def charmap(path: str) -> frozenset:
    """The Unicode code points (ints) the font file at ``path`` has glyphs for; empty when it
    cannot be read (a broken system font is skipped, not an error)."""
    from matplotlib import ft2font
    try:
        return frozenset(ft2font.FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        return frozenset()


def _system_fonts() -> list[str]:
    """TrueType/OpenType files of this machine, in a fixed order (matplotlib's font search)."""
    from matplotlib import font_manager
    return sorted(font_manager.findSystemFonts())


def font_for(text: str) -> Path:
    """The font file that draws every character of ``text``: DejaVu Sans when it has them all
    (whitespace aside), else the first system font that does, else the system font with most of
    them (DejaVu Sans when none has more); see the module doc."""
    return Path(_font_for(frozenset(ord(c) for c in text if not c.isspace())))


@functools.lru_cache(maxsize=256)
def _font_for(chars: frozenset) -> str:
    base = str(dejavu_sans())
    missing = chars - charmap(base)
    if not missing:
        return base
    best, found = base, 0
    for path in _system_fonts():
        have = len(missing & charmap(path))
        if have == len(missing):
            return path
        if have > found:
            best, found = path, have
    return best


_LOCAL = threading.local()  # a FreeType face is not for two threads at once: one per thread


def pil_font(path: str | Path, size: int):
    """``PIL.ImageFont.FreeTypeFont`` of the file ``path`` at ``size`` pixels, cached per thread
    (``od detect`` draws in worker threads)."""
    from PIL import ImageFont
    cache = _LOCAL.__dict__.setdefault("fonts", {})
    key = (str(path), int(size))
    if key not in cache:
        if len(cache) >= 64:
            cache.clear()
        cache[key] = ImageFont.truetype(key[0], key[1])
    return cache[key]


def label_font(text: str, size: int):
    """Pillow font of ``size`` pixels that draws ``text`` (:func:`font_for`)."""
    return pil_font(font_for(text), int(size))


def families_for(texts) -> list[str]:
    """matplotlib font family names for text in a figure: ``["DejaVu Sans"]``, followed by the
    family of :func:`font_for` the characters DejaVu Sans lacks, where some text has such
    characters (matplotlib ≥ 3.6 falls back along the list glyph by glyph)."""
    from matplotlib import font_manager
    chars = frozenset(ord(c) for t in texts for c in str(t) if not c.isspace())
    path = _font_for(chars)
    if path == str(dejavu_sans()):
        return ["DejaVu Sans"]
    name = font_manager.FontProperties(fname=path).get_name()
    if not any(f.fname == path for f in font_manager.fontManager.ttflist):
        font_manager.fontManager.addfont(path)
    return ["DejaVu Sans", name]
