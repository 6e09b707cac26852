"""od/outputs.py: an output folder never overwrites a command's inputs or a user's files.

Through every command: tests/test_hostile_cli.py."""
import pytest

from od import outputs
from od.outputs import OutputError


def test_out_may_not_be_contain_or_lie_inside_an_input(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(OutputError, match="is the input"):
        outputs.prepare_out(data, inputs=[f"train={data}"], command="convert")
    with pytest.raises(OutputError, match="contains the input"):
        outputs.prepare_out(tmp_path, inputs=[str(data / "*.tfrecord")], command="evaluate")
    with pytest.raises(OutputError, match="lies inside the input"):
        outputs.prepare_out(data / "out", inputs=[data], command="inspect")
    assert outputs.prepare_out(data / "inspect", inputs=[data, None], command="inspect",
                               inside_ok=[data]) == data / "inspect"
    assert outputs.prepare_out(tmp_path / "new", inputs=[data], command="export") == \
        tmp_path / "new"


def test_a_users_folder_needs_overwrite_and_a_previous_output_does_not(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputError, match="is not an output of od.*--overwrite"):
        outputs.prepare_out(mine, command="detect")
    outputs.prepare_out(mine, command="detect", overwrite=True)
    done = outputs.start_output(tmp_path / "det", "detect")
    (done / "detections.json").write_text("{}")
    outputs.prepare_out(done, command="detect")
    with pytest.raises(OutputError, match="an output of `od detect`"):
        outputs.prepare_out(done, command="export")


def test_markers_signatures_and_entries(tmp_path):
    out = outputs.start_output(tmp_path / "o", "evaluate")
    assert outputs.read_marker(out) == {"command": "evaluate", "entries": []}
    outputs.write_marker(out, "evaluate", ["metrics.json"])
    outputs.write_marker(out, "evaluate", ["plots"])
    assert outputs.read_marker(out)["entries"] == ["metrics.json", "plots"]
    old = tmp_path / "old"  # written before markers existed: known by its files
    (old / "saved_model").mkdir(parents=True)
    (old / "export_check.json").write_text("{}")
    assert outputs.output_of(old) == "export" and outputs.output_of(tmp_path / "none") is None
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / outputs.MARKER).write_text("[1]")
    assert outputs.read_marker(tmp_path / "bad") is None


def test_files_and_folders_in_the_way(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(OutputError, match="existing file, not a folder"):
        outputs.prepare_out(tmp_path / "f", command="export")
    with pytest.raises(OutputError, match="is a file, so the folder cannot be created"):
        outputs.prepare_folder(tmp_path / "f" / "sub", "OD_CACHE_DIR")
    with pytest.raises(OutputError, match="is a folder; give a file path"):
        outputs.prepare_file(tmp_path, "--out")
    outputs.prepare_file(tmp_path / "speeds.json")
    outputs.prepare_file(None)
