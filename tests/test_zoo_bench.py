"""`od zoo benchmark` on the Faster R-CNN zoo entries: they are built from their configs (Model
Garden's Mask R-CNN factory without masks) and timed like the RetinaNets; backbone-only entries
are refused. Tiny input (64 px), one timed call: a smoke test, not a measurement."""
from __future__ import annotations

import pytest

from od import zoo, zoo_select
from od.errors import ZooError


def test_frcnn_entries_are_benchmarked_by_default():
    from od import zoo_bench
    detectors = {e.name for e in zoo.ZOO if e.is_detector}
    assert {"fasterrcnn_resnet50_fpn_imagenet", "fasterrcnn_mobilenetv2_fpn_imagenet"} <= detectors
    with pytest.raises(ZooError, match="backbone checkpoint"):
        zoo_bench.build_detector(zoo.get("mobilenetv2_imagenet"))


@pytest.mark.slow
def test_benchmark_builds_and_times_a_faster_rcnn_entry(tmp_path):
    from od import zoo_bench
    name = "fasterrcnn_mobilenetv2_fpn_imagenet"
    net = zoo_bench.build_detector(zoo.get(name), input_size=64)
    assert type(net).__name__ == "MaskRCNNModel" and net._config_dict["mask_head"] is None
    recs = zoo_bench.benchmark([name], batch_sizes=(1,), repeats=1, input_size=64, log=None)
    assert [(r.name, r.batch, r.input_size, r.repeats) for r in recs] == [(name, 1, 64, 1)]
    assert recs[0].measured and recs[0].latency_ms > 0, recs[0].note
    p = zoo_bench.write_speeds(recs, tmp_path / "speeds.json")
    got = {r.name: r for r in zoo_select.load_speeds([p])}
    assert got[name].latency_ms == recs[0].latency_ms
