"""od/data/values.py: numbers read from annotations are checked (finite, whole, in range)."""
import math

import pytest

from od.data import values
from od.errors import AnnotationError


def test_finite_and_whole_accept_good_values():
    assert values.finite("1.5", "<xmin>", "a.xml:3") == 1.5
    assert values.image_size(2048.0, 7, "a.json") == (2048, 7)
    assert values.class_id(3, "a.json") == 3 and values.class_id(0, "a.json", low=0) == 0
    assert values.image_id(0, "a.json") == 0


@pytest.mark.parametrize("call,match", [
    (lambda: values.finite(math.nan, "<xmin>", "a.xml:3"), r"a\.xml:3: <xmin> is nan"),
    (lambda: values.image_size(0, 10, "a.json"), r"image width is 0, outside 1\.\.100,000"),
    (lambda: values.image_size(10.5, 10, "a.json"), "not a whole number"),
    (lambda: values.image_size("10", 10, "a.json"), "expected a whole number"),
    (lambda: values.image_size(True, 10, "a.json"), "expected a whole number"),
    (lambda: values.class_id(0, "a.json"), "Number classes from 1 upwards"),
    (lambda: values.class_id(values.MAX_CLASS_ID + 1, "a.json"), "class id is 100,001"),
    (lambda: values.image_id(-1, "a.json"), "non-negative whole-number id"),
])
def test_bad_values_name_the_place_the_value_and_the_fix(call, match):
    with pytest.raises(AnnotationError, match=match):
        call()
