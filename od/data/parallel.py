"""Worker processes for the data tools: processes started clean that never import TensorFlow.

Workers are forked from multiprocessing's *fork server* (``forkserver``, where the platform has
it; ``spawn`` elsewhere): a fresh interpreter that this module starts once per calling process,
which imports the data modules (``PRELOAD``) once and then forks each worker from itself. A
worker so starts in milliseconds with its modules loaded (a ``spawn`` worker starts a new
interpreter and imports them: about 0.35 CPU-s each), and a notebook or script that calls
``od.data.convert`` again reuses the server. Never plain ``fork`` of the caller: the calling
process may have TensorFlow's thread pools running (a notebook that trained a model), which
``fork`` would copy half-locked; the fork server has no threads and never imports TensorFlow.
Like a spawned one, each worker imports the caller's ``__main__`` module again, so a *script*
that calls ``od.data.convert`` at top level, without ``if __name__ == "__main__":``, would start
workers from inside its workers; Python refuses that in the child, the worker dies, and
:func:`imap` / :class:`Pool` turn it into one clear :class:`OdError` instead of a pool that
restarts dead workers forever.

Workers die with the calling process: if it is killed (``kill -9``, the OOM killer), each worker
ends at once on Linux (a daemon thread waits on a pidfd of the caller, opened as the worker
starts) and within ``_POLL_S`` seconds elsewhere (the thread polls the caller's pid). The fork
server, which multiprocessing keeps alive while any worker lives, then exits, and the
resource-tracker helper sees its pipe close and exits too. So a killed ``od data convert`` leaves
no process behind; its hidden temporary output is removed by the next run (``od.atomic``).

:class:`Pool` keeps one set of workers for every phase of a command (``od data convert`` parses
the annotations and encodes the images in the same workers, so starting them is paid once), and
lets the calling process work alongside them instead of waiting.
"""
from __future__ import annotations

import importlib
import math
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable, Iterator

from od.atomic import pid_alive
from od.errors import OdError

FIX = ("A worker process could not start. If you call od from a script, put the call under "
       "`if __name__ == \"__main__\":` (each worker process imports the script again), or pass "
       "workers=1 (--workers 1).")

PRELOAD = ("od.data.voc", "od.data.convert_work", "od.data.duplicates")
"""What the fork server imports once, before it forks any worker (the modules of every job
the data tools give to workers; a job's module that is not here is imported by the worker)."""


_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


def _context():
    """The multiprocessing context workers start from: the fork server (module doc) with
    ``PRELOAD`` where the platform has one, else ``spawn``. The preload takes effect when the
    server starts, the first time any pool of this process uses it."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        return ctx
    return multiprocessing.get_context("spawn")


def _die_with_caller(caller: int) -> None:
    """Worker initializer: end this process as soon as ``caller`` (the process that made the
    pool) ends: on Linux by a pidfd that becomes readable when it does (and, with ``spawn``, by
    ``PR_SET_PDEATHSIG`` as well, the caller being the parent), elsewhere by polling."""
    import select
    import signal

    if sys.platform.startswith("linux") and os.getppid() == caller:
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watching thread below still works
            pass
    try:
        pidfd = os.pidfd_open(caller)
    except (AttributeError, OSError):  # not Linux >= 5.3, or the caller is gone already
        pidfd = None
    if not pid_alive(caller):
        os._exit(1)

    def watch():
        if pidfd is not None:
            select.select([pidfd], [], [])
        else:
            while pid_alive(caller):
                time.sleep(_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="od-watch-caller", daemon=True).start()


def imap(fn: Callable, items: Iterable, workers: int, chunksize: int = 1) -> Iterator:
    """``fn(item)`` for each item, in order, computed by ``workers`` worker processes.

    ``fn`` must be a module-level function and items picklable. Raises OdError (with the fix
    above) when a worker dies; ``fn``'s own exceptions propagate unchanged. Workers die with the
    calling process (module doc).
    """
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context(),
                             initializer=_die_with_caller,
                             initargs=(os.getpid(),)) as pool:
        try:
            yield from pool.map(fn, items, chunksize=chunksize)
        except BrokenProcessPool:
            raise OdError(FIX) from None


def _preload(modules: tuple[str, ...]) -> None:
    """Worker job: import ``modules`` now (a worker imports a job's module when the job comes)."""
    for name in modules:
        importlib.import_module(name)


def _call(fn: Callable, item) -> tuple[bool, object]:
    try:
        return True, fn(item)
    except Exception as e:  # re-raised in order by Pool.map, as a worker's would be
        return False, e


class Pool:
    """``workers`` worker processes (module doc) kept for several ``map`` calls, with the calling
    process taking part in the work.

    Workers start when the pool is made, importing ``preload`` (module names; the fork server
    has ``PRELOAD`` already) meanwhile, so the caller can read its inputs while they start.
    ``map`` gives the jobs to the workers in order; whenever the caller would wait for a result,
    it takes the last job no worker has begun and computes it itself. So no core idles while
    the workers start, and a list of jobs ends with the caller and the workers finishing
    together. Use it as a context manager: leaving it cancels the jobs not begun and waits for
    the running ones.
    """

    def __init__(self, workers: int, preload: tuple[str, ...] = PRELOAD):
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=_context(),
                                         initializer=_die_with_caller,
                                         initargs=(os.getpid(),))
        try:
            self._started = [self._pool.submit(_preload, tuple(preload)) for _ in range(workers)]
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def chunk_size(self, items: int, most: int, per_process: int = 8) -> int:
        """Items per job so that each process (workers and caller) gets about ``per_process``
        jobs, at most ``most`` items each: small jobs balance the load, large ones cost less
        to hand out."""
        return max(1, min(most, math.ceil(items / (per_process * (self.workers + 1)))))

    def check(self) -> None:
        """Raise OdError (the fix in ``FIX``) if a worker could not start. ``map`` raises it too
        when a job of that worker is waited for; call this at the end, since the caller may
        have done every job itself."""
        for f in self._started:
            try:
                f.result()
            except BrokenProcessPool:
                raise OdError(FIX) from None

    def map(self, fn: Callable, items: Iterable) -> Iterator:
        """``fn(item)`` for each item, in order (module-level ``fn``, picklable items). The
        first exception ``fn`` raises, in item order, propagates unchanged, as in a loop; a
        worker that died is an OdError with ``FIX``."""
        items = list(items)
        try:
            futures = [self._pool.submit(fn, item) for item in items]
        except BrokenProcessPool:
            raise OdError(FIX) from None
        mine: dict[int, tuple[bool, object]] = {}
        free, stealing = len(items), True  # jobs free[:] are the caller's (or begun by workers)
        for k in range(len(items)):
            while stealing and k < free and not futures[k].done():
                if futures[free - 1].cancel():  # not begun: do it here
                    free -= 1
                    mine[free] = _call(fn, items[free])
                else:  # workers take jobs in order: every earlier job is begun as well
                    stealing = False
            if k in mine:
                ok, value = mine.pop(k)
                if not ok:
                    raise value
                yield value
                continue
            try:
                yield futures[k].result()
            except BrokenProcessPool:
                raise OdError(FIX) from None
