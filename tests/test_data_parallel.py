"""od.data.parallel.Pool: results in order whoever computed them, the first error in item order,
the calling process working alongside the workers, and workers that never import TensorFlow."""
from __future__ import annotations

import importlib
import os
import sys
import time

import pytest

from od.data import parallel


def _square(k: int) -> tuple[int, int]:
    time.sleep(0.01)
    return k * k, os.getpid()


def _fail_on(k: int) -> int:
    if k in (3, 17):
        raise ValueError(f"item {k}")
    return k


def _modules(_) -> tuple[int, bool]:
    time.sleep(0.05)
    return os.getpid(), "tensorflow" in sys.modules


def test_map_is_in_order_and_the_caller_takes_part():
    with parallel.Pool(2) as pool:
        out = list(pool.map(_square, range(60)))
        pool.check()
        again = list(pool.map(_square, range(5)))  # the same workers serve a second map
    assert [v for v, _ in out] == [k * k for k in range(60)]
    assert [v for v, _ in again] == [k * k for k in range(5)]
    pids = {p for _, p in out}
    assert os.getpid() in pids  # the caller computed some jobs itself
    assert len(pids) >= 2  # and the workers the others


def test_map_raises_the_first_error_in_item_order():
    with parallel.Pool(2) as pool:
        with pytest.raises(ValueError, match="item 3"):
            list(pool.map(_fail_on, range(40)))


def test_chunk_size_shares_work_and_stays_in_bounds():
    with parallel.Pool(1) as pool:
        assert pool.chunk_size(2000, 32) == 32
        assert pool.chunk_size(100, 64) == 7  # ~8 jobs for each of 2 processes
        assert pool.chunk_size(0, 64) == 1


def test_workers_never_import_tensorflow():
    """A worker imports the job's module, not the caller's: the convert workers stay light."""
    importlib.import_module("od.data.convert")  # what `od data convert` imports in the caller

    with parallel.Pool(2, ("od.data.voc", "od.data.convert_work")) as pool:
        out = list(pool.map(_modules, range(12)))
    workers = [tf for pid, tf in out if pid != os.getpid()]
    assert workers and not any(workers)
