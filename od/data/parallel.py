"""Worker processes for the data tools: ``spawn`` processes that never import TensorFlow.

``spawn`` (not ``fork``) because the calling process may have TensorFlow's thread pools running
(a notebook that trained a model), which ``fork`` would copy half-locked. A spawned worker imports
the caller's ``__main__`` module again, so a *script* that calls ``od.data.convert`` at top level,
without ``if __name__ == "__main__":``, would start workers from inside its workers; Python refuses
that in the child, the worker dies, and :func:`imap` turns it into one clear :class:`OdError`
instead of a pool that restarts dead workers forever.

Workers die with their parent: if the parent is killed (``kill -9``, the OOM killer), each worker
ends at once on Linux (``prctl(PR_SET_PDEATHSIG, SIGKILL)``, set as the worker starts) and within
``_POLL_S`` seconds elsewhere (a daemon thread that watches the parent's pid). Multiprocessing's
resource-tracker helper then sees its pipe close and exits too. So a killed ``od data convert``
leaves no process behind; its hidden temporary output is removed by the next run
(``od.atomic``).
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator

from od.errors import OdError

FIX = ("A worker process could not start. If you call od from a script, put the call under "
       "`if __name__ == \"__main__\":` (workers are started with 'spawn', which imports the "
       "script again), or pass workers=1 (--workers 1).")


_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """Worker initializer: end this process when ``parent`` (the process that started the pool)
    dies, by kernel signal on Linux and by polling everywhere."""
    import signal

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the polling thread below still works
            pass

    def watch():
        while os.getppid() == parent:
            time.sleep(_POLL_S)
        os._exit(1)

    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=watch, name="od-watch-parent", daemon=True).start()


def imap(fn: Callable, items: Iterable, workers: int, chunksize: int = 1) -> Iterator:
    """``fn(item)`` for each item, in order, computed by ``workers`` spawn processes.

    ``fn`` must be a module-level function and items picklable. Raises OdError (with the fix
    above) when a worker dies; ``fn``'s own exceptions propagate unchanged. Workers die with the
    calling process (module doc).
    """
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        try:
            yield from pool.map(fn, items, chunksize=chunksize)
        except BrokenProcessPool:
            raise OdError(FIX) from None
