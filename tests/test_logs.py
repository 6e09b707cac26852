"""od/logs.py: library logging and warnings go to the log file inside ``routed`` and everything
is restored afterwards (the quiet console of real commands: tests/test_hostile_cli.py)."""
import logging
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
