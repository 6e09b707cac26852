"""od/data/split.py: deterministic, stratified train/val/test splits and their ratios."""
from collections import Counter

import pytest

from od.data import split

from test_data_tools import rec


def test_split_default_is_80_10_10_deterministic_and_stratified():
    recs = [rec(f"c{k}", "cat") for k in range(80)] + [rec(f"d{k}", "dog") for k in range(20)]
    a = split.assign_splits(recs, seed=3)
    assert a == split.assign_splits(recs, seed=3)
    assert Counter(r.split for r in a) == {"train": 80, "val": 10, "test": 10}
    dogs = Counter(r.split for r in a if r.labels == ["dog"])
    assert dogs == {"train": 16, "val": 2, "test": 2}
    assert [r.split for r in a] != [r.split for r in split.assign_splits(recs, seed=4)]


def test_split_honours_given_splits_and_rejects_bad_ratios():
    recs = [rec("a", "cat", split_="test")] + [rec(f"c{k}", "cat") for k in range(9)]
    a = split.assign_splits(recs, "1,0,0")
    assert a[0].split == "test" and {r.split for r in a[1:]} == {"train"}
    with pytest.raises(Exception, match="sum to 1"):
        split.parse_ratios("0.5,0.1")
    assert split.assign_splits([]) == []
