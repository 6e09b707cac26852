"""od/data/balance.py: the class balance report and deterministic undersampling."""
from collections import Counter

from od.data import balance

from test_data_tools import rec


def test_class_balance_report():
    b = balance.class_balance([rec("a", "cat", "cat", "dog"), rec("b", "cat"), rec("n")])
    assert b["classes"] == {"cat": {"images": 2, "boxes": 3}, "dog": {"images": 1, "boxes": 1}}
    assert b["negative_images"] == 1 and b["imbalance"] == 2.0


def test_undersample_to_the_smallest_class_is_deterministic():
    recs = [rec(f"c{k}", "cat") for k in range(10)] + [rec(f"d{k}", "dog") for k in range(3)] \
        + [rec(f"n{k}") for k in range(5)]
    kept, dropped = balance.undersample(recs, seed=1)
    counts = Counter(lab for r in kept for lab in r.labels)
    assert counts == {"cat": 3, "dog": 3} and sum(not r.boxes for r in kept) == 3
    assert len(dropped) == 9 and dropped[0]["reason"] == "balance_undersample"
    assert kept == balance.undersample(recs, seed=1)[0]
    assert balance.undersample([], seed=0) == ([], [])
