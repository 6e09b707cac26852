"""od/data/paths.py: an annotation's image name never leads outside the images folder."""
import os

import pytest

from od.data.paths import resolve_under
from od.errors import UnsafePathError


def test_names_inside_the_root_resolve(tmp_path):
    (tmp_path / "sub").mkdir()
    assert resolve_under(tmp_path, "a.jpg", source="x.xml") == tmp_path.resolve() / "a.jpg"
    assert resolve_under(tmp_path, "sub/../b.jpg", source="x.xml") == tmp_path.resolve() / "b.jpg"
    assert resolve_under(tmp_path, "sub\\c.jpg", source="x.xml") == tmp_path.resolve() / "sub/c.jpg"


@pytest.mark.parametrize("name", ["", "/etc/passwd", "C:\\x.jpg", "../a.jpg", "sub/../../a.jpg"])
def test_empty_absolute_and_escaping_names_are_refused(tmp_path, name):
    with pytest.raises(UnsafePathError, match=r"x\.xml: image name"):
        resolve_under(tmp_path, name, source="x.xml")


def test_a_symlink_leading_out_is_refused(tmp_path):
    (tmp_path / "root").mkdir()
    os.symlink(tmp_path, tmp_path / "root" / "up")
    with pytest.raises(UnsafePathError, match="outside the images folder"):
        resolve_under(tmp_path / "root", "up", source="x.xml")
