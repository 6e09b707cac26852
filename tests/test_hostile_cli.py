"""Hostile command lines: every command refuses to write over its inputs or a user's files, and
every bad argument ends in one `od: error:` line naming the path or value, exit 2, no traceback.

The cases are built at test time in tmp folders around the shared tiny trained run (conftest
``tiny_run``); most run ``od.cli.main`` in-process, the pipe and signal cases as subprocesses.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from od import cli, cli_zoo
from od.data.convert import convert

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tiny_run, tmp_path_factory):
    """Paths the cases point at: the tiny run's raw VOC data, shards and run, one export of it,
    a few photos, a file, a user's folder with their own file, and damaged exports."""
    from od import export

    root, _ = tiny_run
    w = tmp_path_factory.mktemp("hostile")
    exp = w / "export"
    export.export(root / "run", exp)
    photos = w / "photos"
    photos.mkdir()
    for p in sorted((root / "raw" / "images").iterdir())[:2]:
        shutil.copy(p, photos / p.name)
    (w / "a_file.txt").write_text("user data\n")
    (w / "users").mkdir()
    (w / "users" / "thesis.docx").write_text("precious\n")
    (w / "empty").mkdir()
    for name, cut in (("corrupt", None), ("truncated", 0.5)):
        bad = w / name
        shutil.copytree(exp, bad)
        pb = bad / "saved_model" / "saved_model.pb"
        data = pb.read_bytes()
        pb.write_bytes(b"\x07garbage\xff" * 50 if cut is None else data[:int(len(data) * cut)])
    return {"raw": root / "raw", "ann": root / "raw" / "annotations",
            "images": root / "raw" / "images", "data": root / "data", "run": root / "run",
            "export": exp, "photos": photos, "file": w / "a_file.txt", "users": w / "users",
            "empty": w / "empty", "corrupt": w / "corrupt", "truncated": w / "truncated",
            "root": root, "w": w}


def _convert(out, *extra):
    return ["data", "convert", "--annotations", "{ann}", "--images", "{images}", "--out", out,
            "--workers", "1", *extra]


def _export(out, model="{run}"):
    return ["export", "--model-dir", model, "--out", out]


def _detect(out, model="{export}", images="{photos}"):
    return ["detect", "--model", model, "--images", images, "--out", out]


def _evaluate(out, model="{run}", data="{data}/test*.tfrecord"):
    return ["evaluate", "--model-dir", model, "--data", data, "--out", out]


# (id, argv with {placeholders}, text the error must contain)
CASES = [
    ("convert-out-is-images", _convert("{images}"), "is the input"),
    ("convert-out-is-annotations", _convert("{ann}"), "is the input"),
    ("convert-out-inside-images", _convert("{images}/converted"), "lies inside the input"),
    ("convert-out-contains-inputs", _convert("{raw}"), "contains the input"),
    ("convert-out-is-label-map", _convert("{w}/lm.pbtxt", "--label-map", "{w}/lm.pbtxt"),
     "is the input"),
    ("convert-out-is-a-file", _convert("{file}"), "is an existing file"),
    ("convert-out-under-a-file", _convert("{file}/data"), "is a file"),
    ("convert-out-users-folder", _convert("{users}"), "not an output of od"),
    ("convert-out-other-command", _convert("{export}"), "an output of `od export`"),
    ("convert-out-symlink-to-images", _convert("{w}/link_to_images"), "is the input"),
    ("convert-out-dotdot-to-ann", _convert("{images}/../annotations"), "is the input"),
    ("export-out-is-run", _export("{run}"), "is the input"),
    ("export-out-inside-run", _export("{run}/export"), "lies inside the input"),
    ("export-out-contains-run", _export("{root}"), "contains the input"),
    ("export-out-is-a-file", _export("{file}"), "is an existing file"),
    ("export-out-users-folder", _export("{users}"), "--overwrite"),
    ("export-model-dir-is-a-file", _export("{w}/e1", model="{file}"), "is a file"),
    ("export-model-dir-empty", _export("{w}/e2", model="{empty}"), "no pipeline.yaml"),
    ("export-model-dir-missing", _export("{w}/e3", model="{w}/nope"), "no pipeline.yaml"),
    ("export-bad-format", _export("{w}/e4") + ["--format", "onnx"], "onnx"),
    ("detect-out-is-images", _detect("{photos}"), "is the input"),
    ("detect-out-inside-images", _detect("{photos}/drawn"), "lies inside the input"),
    ("detect-out-inside-model", _detect("{export}/det"), "lies inside the input"),
    ("detect-out-contains-images", _detect("{w}"), "contains the input"),
    ("detect-out-is-a-file", _detect("{file}"), "is an existing file"),
    ("detect-model-missing", _detect("{w}/d1", model="{w}/no_export"), "no SavedModel"),
    ("detect-model-is-a-file", _detect("{w}/d2", model="{file}"), "no SavedModel"),
    ("detect-model-empty", _detect("{w}/d3", model="{empty}"), "no SavedModel"),
    ("detect-corrupt-saved-model", _detect("{w}/d4", model="{corrupt}"), "saved_model.pb"),
    ("detect-truncated-saved-model", _detect("{w}/d5", model="{truncated}"), "saved_model.pb"),
    ("detect-no-images", _detect("{w}/d6", images="{empty}"), "no images found"),
    ("detect-bad-min-score", _detect("{w}/d7") + ["--min-score", "2"], "--min-score 2"),
    ("detect-bad-tflite-format", _detect("{w}/d8") + ["--format", "tflite"], "model.tflite"),
    ("evaluate-out-is-run", _evaluate("{run}"), "is the input"),
    ("evaluate-bad-iou", _evaluate("{w}/v3") + ["--iou-threshold", "1.5"],
     "--iou-threshold 1.5"),
    ("evaluate-out-is-data", _evaluate("{data}"), "is the input"),
    ("evaluate-out-is-a-file", _evaluate("{file}"), "is an existing file"),
    ("evaluate-model-dir-is-a-file", _evaluate("{w}/v1", model="{file}"), "is a file"),
    ("evaluate-no-shards", _evaluate("{w}/v2", data="{empty}/test*.tfrecord"),
     "empty/test*.tfrecord: the pattern matches no file"),
    ("inspect-out-is-data", ["data", "inspect", "{data}", "--out", "{data}"], "is the input"),
    ("inspect-out-users-folder", ["data", "inspect", "{data}", "--out", "{users}"],
     "--overwrite"),
    ("quickstart-workdir-users-folder", ["quickstart", "--workdir", "{users}"], "--overwrite"),
    ("quickstart-workdir-is-a-file", ["quickstart", "--workdir", "{file}"], "existing file"),
    ("config-bad-override-value",
     ["config", "show", "--config", str(ROOT / "configs" / "quickstart_shapes_128.yaml"),
      "model.input_size=banana"], "banana"),
    ("config-unknown-override-key",
     ["config", "show", "--config", str(ROOT / "configs" / "quickstart_shapes_128.yaml"),
      "model.input_sise=64"], "input_sise"),
    ("config-missing-file", ["config", "show", "--config", "{w}/nope.yaml"], "nope.yaml"),
    ("zoo-unknown-name", ["zoo", "download", "no-such-model-xyz", "--cache-dir", "{w}/cache"],
     "no-such-model-xyz"),
    ("zoo-cache-dir-is-a-file", ["zoo", "download", "anything", "--cache-dir", "{file}"],
     "--cache-dir"),
    ("zoo-benchmark-out-is-a-folder", ["zoo", "benchmark", "x", "--out", "{users}"],
     "is a folder"),
    ("train-override-after-option-bad-value",
     ["train", "--config", str(ROOT / "configs" / "quickstart_shapes_128.yaml"), "--model-dir",
      "{w}/t1", "--no-progress", "data.train={data}", "train.steps=lots"], "lots"),
    ("detect-out-users-folder", _detect("{users}"), "--overwrite"),
    ("zoo-select-impossible", ["zoo", "select", "--min-ap", "99"], "99"),
    ("unknown-option", ["export", "--model-dir", "{run}", "--out", "{w}/e5", "--bogus"],
     "--bogus"),
]


@pytest.mark.parametrize("argv,expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_command_line_is_a_clean_error(world, capsys, argv, expect):
    link = world["w"] / "link_to_images"
    if not link.exists():
        link.symlink_to(world["images"], target_is_directory=True)
    if "{w}/lm.pbtxt" in argv and not (world["w"] / "lm.pbtxt").exists():
        shutil.copy(world["data"] / "label_map.pbtxt", world["w"] / "lm.pbtxt")
    args = [a.format(**{k: str(v) for k, v in world.items()}) for a in argv]
    before = _tree(world["root"])
    user_before = _tree(world["users"])
    try:
        code = cli.main(args)
    except SystemExit as e:  # argparse errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "od: error:" in err and "Traceback" not in err
    assert expect in err, err
    assert _tree(world["root"]) == before  # the run, data and raw images are untouched
    assert _tree(world["users"]) == user_before


def _tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- outputs: reruns, --overwrite, markers ---------------------------------------------------
def test_rerun_into_own_output_and_overwrite_keeps_users_files(world, tmp_path):
    args = dict(format="voc", images=world["images"], split=(0.5, 0.25, 0.25), workers=1)
    out = tmp_path / "data"
    convert(world["ann"], out, **args)
    convert(world["ann"], out, **args)  # a previous convert output: no --overwrite needed
    assert (out / ".od-output.json").is_file()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (mine / "summary.json").write_text("{}")
    from od.errors import OdError
    with pytest.raises(OdError, match="--overwrite"):
        convert(world["ann"], mine, **args)
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt", "summary.json"]
    convert(world["ann"], mine, overwrite=True, **args)
    assert (mine / "notes.txt").read_text() == "keep me"  # the user's file stays
    assert (mine / "label_map.pbtxt").is_file() and (mine / "summary.json").stat().st_size > 2
    convert(world["ann"], mine, split=(1.0, 0.0, 0.0), format="voc", images=world["images"],
            workers=1)  # now marked: a rerun replaces od's shards only
    names = sorted(p.name for p in mine.iterdir() if not p.name.startswith("."))
    assert "notes.txt" in names and not any(n.startswith(("val-", "test-")) for n in names)


def test_overrides_may_follow_options():
    a = cli.parse_args(["train", "--model-dir", "R", "--no-progress", "train.steps=5",
                        "--config", "c.yaml", "model.input_size=64"])
    assert a.overrides == ["train.steps=5", "model.input_size=64"] and a.no_progress
    a = cli.parse_args(["train", "a.b=1", "--model-dir", "R", "c.d=2"])
    assert a.overrides == ["a.b=1", "c.d=2"] and a.model_dir == "R"
    a = cli.parse_args(["--debug", "config", "show", "--config", "x.yaml", "m.k=1"])
    assert a.overrides == ["m.k=1"]


def test_internal_error_is_one_line_and_debug_reraises(monkeypatch, capsys):
    def boom(a):
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(cli_zoo, "_zoo_list", boom)
    assert cli.main(["zoo", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("od: internal error: ZeroDivisionError: oops (run with --debug")
    with pytest.raises(ZeroDivisionError):
        cli.main(["zoo", "list", "--debug"])


def test_zoo_list_into_a_closed_pipe_is_quiet():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run(f"{sys.executable} -m od.cli zoo list | head -c 10 >/dev/null; "
                       "exit ${PIPESTATUS[0]}", shell=True, executable="/bin/bash", env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stderr == "", p.stderr


# ---- od detect skips unreadable images -------------------------------------------------------
def test_detect_skips_an_unreadable_image_and_names_it(world, tmp_path):
    import json

    from od.detect import detect_folder
    photos = tmp_path / "photos"
    shutil.copytree(world["photos"], photos)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "det"
    r = detect_folder(world["export"], photos, out, min_score=0.0, progress=False)
    assert [s["image"] for s in r["skipped"]] == ["broken.jpg"] and r["skipped"][0]["reason"]
    assert len(r["images"]) == 2
    saved = json.loads((out / "detections.json").read_text())
    assert saved == r and not (out / "broken.jpg").exists()


# ---- crash safety: leftovers, SIGTERM, kill -9 -----------------------------------------------
def test_dead_process_leftovers_are_removed(tmp_path):
    from od import atomic
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (tmp_path / f".OUT.tmp-{dead}").mkdir()
    (tmp_path / f".OUT.tmp-{dead}" / "x").write_text("partial")
    (tmp_path / f".a.json.tmp-{dead}").write_text("partial")
    (tmp_path / f".OUT.old-{dead}").mkdir()
    (tmp_path / f".mine.tmp-{os.getppid()}").write_text("a live process's temp")
    (tmp_path / ".hidden.tmp-notapid").write_text("user")
    atomic.write_text(tmp_path / "new.txt", "ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f".mine.tmp-{os.getppid()}", ".hidden.tmp-notapid", "new.txt"])


def _start_export(run: Path, out: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "od.cli", "export", "--model-dir", str(run),
                             "--out", str(out)], env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def _wait_for_temp(p: subprocess.Popen, out: Path, timeout=300) -> Path:
    tmp = out.with_name(f".{out.name}.tmp-{p.pid}")
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (tmp / "saved_model").exists():
            return tmp
        assert p.poll() is None, "export ended before its temp folder appeared"
        time.sleep(0.2)
    raise AssertionError("no temp folder after {timeout} s")


def _group_alive(pgid: int) -> list[int]:
    alive = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                alive.append(int(d.name))
    return alive


def test_ctrl_c_removes_the_temp_and_exits_130(monkeypatch, tmp_path, capsys):
    from od import atomic

    def interrupted(a):
        with atomic.atomic_path(tmp_path / "OUT") as tmp:
            tmp.mkdir()
            (tmp / "half.bin").write_bytes(b"x" * 100)
            raise KeyboardInterrupt

    monkeypatch.setattr(cli_zoo, "_zoo_list", interrupted)
    assert cli.main(["zoo", "list"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_killed_export_loses_nothing_and_reruns_clean(world, tmp_path, sig):
    run = world["run"]
    before = _tree(run)
    out = tmp_path / "export"
    p = _start_export(run, out, tmp_path / "log1")
    tmp = _wait_for_temp(p, out)
    os.kill(p.pid, sig)
    code = p.wait(timeout=120)
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL and tmp.exists()  # nobody could clean up
    else:
        assert code == 143, (tmp_path / "log1").read_text()
        assert not tmp.exists()  # the handler's exception removed the temp
        assert "Traceback" not in (tmp_path / "log1").read_text()
    time.sleep(0.5)
    assert _group_alive(p.pid) == []  # no orphan process
    assert not out.exists()
    logs = lambda tree: {k: v for k, v in tree.items() if not k.endswith(".log")}  # noqa: E731
    assert logs(_tree(run)) == logs(before)  # every checkpoint byte-identical (od's own
    # RUN/export.log, where library messages go, is the only file export may add)
    p = _start_export(run, out, tmp_path / "log2")
    assert p.wait(timeout=600) == 0, (tmp_path / "log2").read_text()
    assert (out / "saved_model" / "saved_model.pb").is_file()
    assert [x.name for x in tmp_path.iterdir() if ".tmp-" in x.name or ".old-" in x.name] == []
    assert logs(_tree(run)) == logs(before)


def test_python_dash_m_od_is_the_od_command():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "od", "zoo", "list"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "retinanet_mobilenetv2_coco" in proc.stdout, proc.stderr
