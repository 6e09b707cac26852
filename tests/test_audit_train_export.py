"""Hostile inputs to `od train` and `od export`, as users hit them: each is a clear OdError (or a
note) naming the file/value and the fix, before anything is written; none is accepted silently.

Every case reuses the shared tiny run (conftest ``tiny_run``): a copy of its run folder or data
folder is damaged or changed, and the check runs before any training step.
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from od import checkpoints, cli, config, experiment, export, train
from od.errors import CheckpointError, ConfigError, ExportError, LabelMapError
from od.outputs import OutputError
from tests.conftest import CONFIGS, TINY

QUICK = CONFIGS / "quickstart_shapes_128.yaml"


def _tree(folder: Path) -> dict:
    """name → SHA-256 of every file, but od's own train.log (a refused resume may log to it)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "train.log"}


# ---- config values and files ------------------------------------------------------------------
@pytest.mark.parametrize("override", [
    "train.batch_size=8.5",   # was truncated to 8 and trained
    "train.steps=inf",        # was an internal OverflowError
    "train.steps=1e400",
])
def test_an_override_that_is_not_the_keys_number_is_refused(override):
    with pytest.raises(ConfigError, match="is not a valid"):
        config.load(overrides=[override])


@pytest.mark.parametrize("text, message", [
    ("train:\n  batch_size: true\n", "train.batch_size = True is not a valid int"),  # was 1
    ("data:\n  train: [a, b]\n", r"data.train = \['a', 'b'\] is not a valid str"),
    ("train:\n  steps: 3\ntrain:\n  batch_size: 2\n",  # the first section was dropped
     "line 3, column 1: .*key 'train' appears twice"),
    ("train:\n  steps: 3\n  steps: 5\n", "line 3, .*key 'steps' appears twice"),
    ("", "the pipeline config is empty"),
    ("# nothing but a comment\n", "the pipeline config is empty"),
    ("train:\n\tsteps: 3\n", "line 2, column 1: .*indents with spaces, not tabs"),
])
def test_a_config_file_that_does_not_say_what_it_seems_is_refused(tmp_path, text, message):
    path = tmp_path / "my.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as e:
        config.load(path)
    assert str(path) in str(e.value)


def test_a_non_utf8_config_is_a_clean_error(tmp_path, capsys):
    path = tmp_path / "utf16.yaml"
    path.write_bytes("train:\n  steps: 3\n".encode("utf-16"))  # was an internal error
    assert cli.main(["config", "show", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "od: error:" in err and "not UTF-8" in err and str(path) in err


@pytest.mark.parametrize("override, message", [
    ("train.eval_every=-10", "train.eval_every = -10 must be >= 0"),  # was accepted
    ("train.seed=-1", r"train.seed = -1 must be in \[0, 4294967295\]"),  # NumPy ValueError
    ("train.seed=99999999999", "train.seed = 99999999999 must be in"),
])
def test_negative_eval_every_and_out_of_range_seeds_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        config.load(overrides=[override])


def test_fractional_lr_boundaries_are_refused():
    with pytest.raises(ConfigError, match="lr_boundaries .* are steps; give whole numbers"):
        config.load(overrides=["train.lr_boundaries=1.5,3"])


def test_a_checkpoint_file_names_its_prefix(tiny_run):
    root, _ = tiny_run
    prefix = checkpoints.resolve(root / "run")
    assert checkpoints.resolve(f"{prefix}.index") == prefix
    assert checkpoints.resolve(f"{prefix}.data-00000-of-00001") == prefix


def test_resolved_data_paths_do_not_depend_on_the_working_folder(tiny_run, monkeypatch):
    root, _ = tiny_run
    monkeypatch.chdir(root)
    cfg, _ = experiment.resolve(config.load(QUICK, overrides=["data.train=data", *TINY]))
    assert Path(cfg.data.train).is_absolute() and Path(cfg.data.label_map).is_absolute()
    assert Path(cfg.data.val).is_absolute()


@pytest.mark.parametrize("overrides, message", [
    (["model.backbone=resnet"], "backbone_id = 'MobileNetV2' is not a resnet .* 50"),
    (["model.backbone_id=MobileNetV9"], "did you mean 'MobileNetV2'"),
    (["model.activation=banana"], "model.activation = 'banana' is not an activation"),
])
def test_a_backbone_or_activation_model_garden_lacks_is_refused(tiny_run, overrides, message):
    root, _ = tiny_run
    with pytest.raises(ConfigError, match=message):  # was an internal ValueError
        experiment.resolve(config.load(QUICK, overrides=[f"data.train={root / 'data'}",
                                                         *overrides]))


# ---- od train: the data and the run folder ----------------------------------------------------
def test_a_data_val_that_matches_nothing_is_refused(tiny_run):
    root, _ = tiny_run
    with pytest.raises(ConfigError, match="data.val: no TFRecord shards match .*valx"):
        experiment.resolve(config.load(QUICK, overrides=[  # validation was dropped silently
            f"data.train={root / 'data'}", f"data.val={root / 'data' / 'valx-*.tfrecord'}"]))
    cfg, _ = experiment.resolve(config.load(QUICK, overrides=[f"data.train={root / 'data'}"]))
    assert cfg.data.val.endswith("val-*.tfrecord")  # the folder's own val split, as before


def _edit_label_map(path: Path, edit) -> None:
    path.write_text(edit(path.read_text()))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t[:t.index('item {\n  name: "triangle"')], "class id 3 .*does not have"),
    (lambda t: t.replace('"circle"', '"ball"'), "named 'circle', but the label map .* 'ball'"),
])
def test_a_label_map_edited_after_convert_is_refused(tiny_run, tmp_path, edit, message):
    root, _ = tiny_run
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    _edit_label_map(data / "label_map.pbtxt", edit)
    with pytest.raises(LabelMapError, match=message):  # trained silently before
        train.fine_tune(QUICK, tmp_path / "run", progress=False,
                        overrides=[f"data.train={data}", *TINY])
    assert not (tmp_path / "run").exists()


def test_an_export_folder_is_not_taken_for_a_run(export_dir, tmp_path):
    exp = tmp_path / "export"  # holds pipeline.yaml and label_map.pbtxt written by od
    shutil.copytree(export_dir, exp)
    before = _tree(exp)
    cfg = config.load(exp / "pipeline.yaml")
    with pytest.raises(OutputError, match="is an output of `od export`, not a run"):
        train.check_model_dir(exp, cfg)  # was trained into, over its pipeline.yaml
    assert _tree(exp) == before


@pytest.fixture
def run_copy(tiny_run, tmp_path):
    root, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    return root, run


def _resume(root, run, *overrides, log=print):
    return train.fine_tune(QUICK, run, progress=False, log=log,
                           overrides=[f"data.train={root / 'data'}", *TINY, *overrides])


def test_resume_with_a_renamed_label_map_is_refused(run_copy):
    root, run = run_copy
    _edit_label_map(run / "label_map.pbtxt", lambda t: t.replace('"circle"', '"ball"'))
    before = _tree(run)
    with pytest.raises(LabelMapError, match="id 1: 'ball' → 'circle'.*relabel"):
        _resume(root, run)  # overwrote the run's label map silently before
    assert _tree(run) == before


def test_resume_with_fewer_steps_than_reached_is_refused(run_copy):
    root, run = run_copy
    before = _tree(run)
    with pytest.raises(ConfigError, match="already at step 4, beyond train.steps = 2"):
        _resume(root, run, "train.steps=2")  # said "trained to step 4" and saved steps 2
    assert _tree(run) == before


def test_resume_lists_the_settings_that_changed(run_copy):
    root, run = run_copy
    cfg, lm = experiment.resolve(config.load(run / "pipeline.yaml",
                                             overrides=["train.batch_size=2"]))
    from od import train_checks

    notes = []
    latest = checkpoints.prefix_in(run)
    assert train_checks.check_resume(cfg, lm, run, latest, notes.append) is not None
    assert any("train.batch_size 4 → 2" in n and "data.train" not in n for n in notes), notes


class _Abort(Exception):
    pass


def test_a_failed_first_attempt_does_not_block_a_corrected_one(run_copy, tmp_path):
    root, run = run_copy
    cfg = config.load(run / "pipeline.yaml")
    attempt = tmp_path / "attempt"  # pipeline.yaml of a first try that failed before a checkpoint
    attempt.mkdir()
    config.save(config.set_key(cfg, "model.fpn_filters", 32), attempt / "pipeline.yaml")

    def abort_past_the_checks(message):  # a note made after the resume checks
        if "random weights" in message:
            raise _Abort(message)

    with pytest.raises(_Abort):  # was ConfigError "holds a run of a different model"
        train.fine_tune(QUICK, attempt, progress=False, log=abort_past_the_checks,
                        overrides=[f"data.train={root / 'data'}", *TINY,
                                   "train.fine_tune_checkpoint="])


@pytest.mark.parametrize("damage", ["truncate_data", "truncate_index", "remove_data"])
def test_a_damaged_newest_checkpoint_is_a_clean_error(run_copy, damage):
    root, run = run_copy
    data, index = run / "ckpt-4.data-00000-of-00001", run / "ckpt-4.index"
    if damage == "remove_data":
        data.unlink()
    else:
        path = data if damage == "truncate_data" else index
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    before = _tree(run)
    with pytest.raises(CheckpointError, match='ckpt-4, the newest .* cannot be read.*'
                                              'model_checkpoint_path: "ckpt-2"'):
        _resume(root, run, "train.steps=6")  # was an internal IndexError / OpError
    assert _tree(run) == before


@pytest.mark.parametrize("state", ["garbage\n", None])
def test_checkpoints_without_a_state_file_are_not_trained_over(run_copy, state):
    root, run = run_copy
    if state is None:
        (run / "checkpoint").unlink()
    else:
        (run / "checkpoint").write_text(state)
    before = _tree(run)
    with pytest.raises(CheckpointError, match=r"holds checkpoints \(ckpt-2, ckpt-4\).*"
                                              'model_checkpoint_path: "ckpt-4"'):
        _resume(root, run, "train.steps=6")  # started from step 0 over them before
    assert _tree(run) == before


# ---- od export ----------------------------------------------------------------------------------
@pytest.mark.parametrize("where, overwrite, message", [
    (lambda data: data, True, "is the input"),
    (lambda data: data / "export", False, "lies inside the input"),
])
def test_export_into_the_runs_data_is_refused(tiny_run, where, overwrite, message):
    root, _ = tiny_run
    data = root / "data"
    before = _tree(data)
    with pytest.raises(OutputError, match=message):  # wrote into the data folder before
        export.export(root / "run", where(data), overwrite=overwrite)
    assert _tree(data) == before and not (data / "export").exists()


@pytest.mark.parametrize("images", [0, -5])
def test_int8_export_without_calibration_images_is_refused(tiny_run, tmp_path, images):
    root, _ = tiny_run
    with pytest.raises(ExportError, match=f"--calibration-images {images}: .*>= 1"):
        export.export(root / "run", tmp_path / "x", formats=("saved_model", "tflite_int8"),
                      calibration_images=images)  # 0 exported an uncalibrated int8 model
    assert not (tmp_path / "x").exists()


def test_the_python_api_keeps_library_logging_out_of_the_console(run_copy, capfd):
    """A notebook calling fine_tune used to get Model Garden's per-loop dicts in its cell; they
    go to RUN/train.log, as with the command line (verbose=True shows them too)."""
    root, run = run_copy
    step = int(train.fine_tune(QUICK, run, progress=False, overrides=[
        f"data.train={root / 'data'}", *TINY]).step)
    _resume(root, run, f"train.steps={step + 2}")
    out, err = capfd.readouterr()
    assert "steps/sec" not in out + err and "np.float32" not in out + err
    assert "steps/sec" in (run / "train.log").read_text()
