"""od/train_actions.py: the pieces around Model Garden's training loop (history files, the
best-checkpoint test, signals, the history plot); with a real run: tests/test_train_control.py."""
import os
import signal

import pytest
from PIL import Image

from od import train_actions


def test_history_rows_up_to_a_step_survive_a_cut_line(tmp_path):
    path = tmp_path / "history.jsonl"
    assert train_actions.read_jsonl(path) == []
    path.write_text('{"step": 2, "total_loss": 1.5}\n{"step": 4}\n{"step": 6, "tot')
    assert [r["step"] for r in train_actions.read_jsonl(path)] == [2, 4]
    rows = train_actions.read_jsonl(path, max_step=2)
    assert rows == [{"step": 2, "total_loss": 1.5}]
    train_actions.rewrite_jsonl(path, rows)
    assert path.read_text() == '{"step": 2, "total_loss": 1.5}\n'
    train_actions.rewrite_jsonl(tmp_path / "none.jsonl", rows)
    assert not (tmp_path / "none.jsonl").exists()


def test_improved_needs_more_than_min_delta():
    assert train_actions.improved(0.5, None, 0.0)
    assert train_actions.improved(0.52, 0.5, 0.01) and not train_actions.improved(0.505, 0.5, 0.01)
    assert not train_actions.improved(None, 0.1, 0.0)


def test_first_signal_asks_to_stop_second_interrupts_and_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with train_actions.StopSignals() as s:
        os.kill(os.getpid(), signal.SIGTERM)
        assert s.signum == signal.SIGTERM
        with pytest.raises(train_actions.Stop, match="stopped by SIGTERM") as stop:
            train_actions.StopCheck(s, None)(None)
        assert stop.value.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before
    quiet = train_actions.StopSignals()
    train_actions.StopCheck(quiet, None)(None)  # no signal, no evaluator: goes on


def test_plot_history(tmp_path):
    train = [{"step": s, "total_loss": 2.0 / s, "box_loss": 0.1} for s in (1, 2, 3)]
    evals = [{"step": 2, "AP": 0.1, "AP50": 0.3, "AP75": None}]
    path = train_actions.plot_history(train, evals, tmp_path / "history.png", "AP50")
    with Image.open(path) as im:
        assert im.format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["history.png"]
