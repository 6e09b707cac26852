"""A quiet console: library logging goes to a log file, the terminal shows progress and results.

TensorFlow, absl, Model Garden and orbit log through Python's ``logging`` (loggers ``tensorflow``,
``absl`` and the root logger), orbit also *prints* its per-loop dicts (``train | step: 120 |
output: {'box_loss': np.float32(...)}``), and tf_keras emits Python ``warnings``. Inside
:func:`routed` all of them are written to one log file (e.g. ``RUN/train.log``) instead of the
console; with ``verbose=True`` they are shown on stderr as well. On exit every logger, the
warnings filters and orbit's print are restored exactly as they were, so a notebook or a caller's
own logging set-up is untouched. TensorFlow's C++ messages are governed by the environment
variable ``TF_CPP_MIN_LOG_LEVEL``, which ``od``'s command line sets before TensorFlow is imported;
some native code writes to file descriptor 2 regardless (Grappler's ``single_machine.cc`` during a
frozen-graph export, the TFLite converter's ``tf_tfl_flatbuffer_helpers.cc`` and "Created
TensorFlow Lite XNNPACK delegate"). So, without ``verbose``, :func:`routed` also points file
descriptor 2 at a temporary file for the block, while Python's ``sys.stderr`` (progress bars,
``od``'s own messages) keeps writing to the terminal; what native code wrote there is appended
to the log file at the end.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator

#: Loggers whose output is routed; '' is the root logger (absl's handler lives there).
LOGGERS = ("", "absl", "tensorflow", "py.warnings", "orbit", "official")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _orbit_controller():
    """orbit.controller when it is importable (it prints each training loop's dict)."""
    try:
        from orbit import controller
    except ImportError:  # pragma: no cover - orbit ships with tf-models-official
        return None
    return controller


class _LazyFileHandler(logging.FileHandler):
    """Appends to a file created (with its folder) only when the first message arrives, so a
    command that logs nothing before it checks its output folder leaves no trace there."""

    def __init__(self, path: Path):
        super().__init__(path, encoding="utf-8", delay=True)

    def _open(self):
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


@contextlib.contextmanager
def routed(log_file: str | os.PathLike | None, verbose: bool = False) -> Iterator[Path | None]:
    """Route library logging and Python warnings to ``log_file`` for the duration of the block.

    Args:
      log_file: file appended to (created with its folder on the first message); None = discard.
      verbose: also show the messages on stderr (``--verbose``).
    Yields:
      The log file path (or None).
    """
    path = Path(log_file) if log_file else None
    handlers: list[logging.Handler] = []
    if path is not None:
        handlers.append(_LazyFileHandler(path))
    if verbose:
        handlers.append(logging.StreamHandler(sys.stderr))
    if not handlers:
        handlers.append(logging.NullHandler())
    for h in handlers:
        h.setFormatter(logging.Formatter(FORMAT))
    saved = []
    for name in LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, list(logger.handlers), logger.level, logger.propagate))
        logger.handlers = list(handlers) if name == "" else []
        logger.setLevel(logging.INFO)
        logger.propagate = True
    controller = _orbit_controller()
    orbit_log = getattr(controller, "_log", None)
    if controller is not None and not verbose:
        controller._log = lambda message: logging.getLogger("orbit").info(message)
    captured_before = logging._warnings_showwarning is not None  # a caller's captureWarnings
    native = contextlib.nullcontext() if verbose else native_stderr(path)
    with native, warnings.catch_warnings():
        warnings.simplefilter("default")
        logging.captureWarnings(True)
        try:
            yield path
        finally:
            if not captured_before:
                logging.captureWarnings(False)
            if controller is not None and orbit_log is not None:
                controller._log = orbit_log
            for logger, old_handlers, level, propagate in saved:
                logger.handlers = old_handlers
                logger.setLevel(level)
                logger.propagate = propagate
            for h in handlers:
                h.close()


def _stderr_fd() -> int | None:
    """The file descriptor behind ``sys.stderr``, or None (a notebook's or pytest's stream)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return None


@contextlib.contextmanager
def native_stderr(path: Path | None) -> Iterator[None]:
    """Send what native code writes to file descriptor 2 into a temporary file for the block,
    keeping ``sys.stderr`` on the terminal (module doc); afterwards append it to ``path`` when
    the folder of ``path`` exists (a command that failed before making its folder leaves no
    trace), else drop it."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, ValueError, OSError):  # no descriptor 2 (a detached process)
        yield
        return
    old_stream, stream = sys.stderr, None
    with tempfile.TemporaryFile() as captured:
        try:
            os.dup2(captured.fileno(), 2)
            if _stderr_fd() == 2:  # Python's own stderr: keep it on the terminal
                stream = open(os.dup(saved), "w", buffering=1, closefd=True,
                              encoding=getattr(old_stream, "encoding", None) or "utf-8",
                              errors="backslashreplace")
                sys.stderr = stream
            yield
        finally:
            if stream is not None:
                stream.flush()
                sys.stderr = old_stream
                stream.close()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", "backslashreplace").strip()
            if text and path is not None and path.parent.is_dir():
                with open(path, "a", encoding="utf-8") as f:
                    f.write(f"native messages on stderr:\n{text}\n")
