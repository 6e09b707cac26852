"""od/logs.py: library logging and warnings go to the log file inside ``routed`` and everything
is restored afterwards (the quiet console of real commands: tests/test_hostile_cli.py)."""
import logging
import os
import sys
import warnings

from od import logs


def test_messages_go_to_the_file_and_loggers_come_back(tmp_path, capsys):
    tf_logger = logging.getLogger("tensorflow")
    before = (list(tf_logger.handlers), tf_logger.level, tf_logger.propagate)
    root_handlers = list(logging.getLogger().handlers)
    log = tmp_path / "run" / "train.log"
    with logs.routed(log) as path:
        assert path == log and not log.exists()  # created on the first message only
        tf_logger.warning("library noise")
        warnings.warn("a deprecation", UserWarning)
    text = log.read_text()
    assert "WARNING tensorflow: library noise" in text and "a deprecation" in text
    assert "library noise" not in capsys.readouterr().err
    assert (list(tf_logger.handlers), tf_logger.level, tf_logger.propagate) == before
    assert logging.getLogger().handlers == root_handlers


def test_verbose_shows_messages_and_none_discards_them(tmp_path, capsys):
    with logs.routed(None, verbose=True):
        logging.getLogger("absl").info("shown")
    assert "shown" in capsys.readouterr().err
    with logs.routed(None):
        logging.getLogger("absl").warning("dropped")
    assert "dropped" not in capsys.readouterr().err


def test_native_writes_to_fd2_go_to_the_log_python_stderr_stays(tmp_path, capfd):
    log = tmp_path / "export.log"
    stream = sys.stderr
    with logs.routed(log):
        os.write(2, b"W0000 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.\n")
        print("progress for the user", file=sys.stderr)
    assert sys.stderr is stream
    err = capfd.readouterr().err
    assert "progress for the user" in err and "Ignored output_format" not in err
    assert "Ignored output_format" in log.read_text()
    os.write(2, b"after the block\n")  # descriptor 2 is back on the terminal
    assert "after the block" in capfd.readouterr().err


def test_native_messages_leave_no_trace_when_the_folder_was_never_made(tmp_path, capfd):
    log = tmp_path / "not-made" / "od.log"
    with logs.routed(log):
        os.write(2, b"native noise\n")
    assert not log.parent.exists()
    assert "native noise" not in capfd.readouterr().err


def test_verbose_leaves_native_messages_on_the_terminal(tmp_path, capfd):
    with logs.routed(tmp_path / "x.log", verbose=True):
        os.write(2, b"native shown\n")
    assert "native shown" in capfd.readouterr().err
