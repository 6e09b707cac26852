"""Worker processes for the data tools: ``spawn`` processes that never import TensorFlow.

``spawn`` (not ``fork``) because the calling process may have TensorFlow's thread pools running
(a notebook that trained a model), which ``fork`` would copy half-locked. A spawned worker imports
the caller's ``__main__`` module again, so a *script* that calls ``od.data.convert`` at top level,
without ``if __name__ == "__main__":``, would start workers from inside its workers; Python refuses
that in the child, the worker dies, and :func:`imap` turns it into one clear :class:`OdError`
instead of a pool that restarts dead workers forever.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator

from od.errors import OdError

FIX = ("A worker process could not start. If you call od from a script, put the call under "
       "`if __name__ == \"__main__\":` (workers are started with 'spawn', which imports the "
       "script again), or pass workers=1 (--workers 1).")


def imap(fn: Callable, items: Iterable, workers: int, chunksize: int = 1) -> Iterator:
    """``fn(item)`` for each item, in order, computed by ``workers`` spawn processes.

    ``fn`` must be a module-level function and items picklable. Raises OdError (with the fix
    above) when a worker dies; ``fn``'s own exceptions propagate unchanged.
    """
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        try:
            yield from pool.map(fn, items, chunksize=chunksize)
        except BrokenProcessPool:
            raise OdError(FIX) from None
