"""Hostile inputs to the zoo (download, select, benchmark arguments), label maps and the OD API
pipeline.config import: each test is one defect found by an audit (it failed before its fix).
Downloads go to a server on 127.0.0.1; nothing reaches the internet, nothing builds a model."""
from __future__ import annotations

import errno
import hashlib
import http.server
import io
import json
import os
import re
import tarfile
import threading
import time

import pytest

from od import download as dl
from od import label_map, odapi, zoo_bench, zoo_select
from od.cli import main
from od.errors import ConfigError, LabelMapError, ZooError
from conftest import SHARED, needs_shared, start_http_server


# ---- a tiny server and tarballs ----------------------------------------------------------------
class _Server:
    """127.0.0.1 server: ``files`` (path → bytes) with Range support; any other path answers 200
    with an HTML page (as many web servers do). ``gate``: an Event the body waits for."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.range_start: int | None = None   # answer a Range request from this byte instead
        self.content_length: str | None = None  # send this Content-Length header instead
        self.gate: threading.Event | None = None
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                srv.requests.append((self.path, rng))
                data = srv.files.get(self.path, b"<html>a web page</html>")
                start = 0
                if rng:
                    start = srv.range_start if srv.range_start is not None else \
                        int(re.match(r"bytes=(\d+)-", rng).group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", srv.content_length or str(len(data) - start))
                self.end_headers()
                if srv.gate is not None:
                    srv.gate.wait(10)
                self.wfile.write(data[start:])

        self.httpd, self.url = start_http_server(Handler)


@pytest.fixture
def server():
    s = _Server()
    yield s
    if s.gate is not None:
        s.gate.set()
    s.httpd.shutdown()
    s.httpd.server_close()


def _tarball(top="ckpt", n=20_000) -> bytes:
    """A .tar.gz of ``top/`` with a checkpoint (incompressible data: stored deflate blocks)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("ckpt-1.index", os.urandom(200)),
                           ("ckpt-1.data-00000-of-00001", os.urandom(n)),
                           ("checkpoint", b'model_checkpoint_path: "ckpt-1"\n')):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- od.download ---------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/", "/a/b/", "/a/..", "/a/."])
def test_url_naming_no_file_never_touches_the_cache_folder(server, tmp_path, path):
    # was: the cache root itself became the entry; a server answering 200 to any path made od
    # replace the whole --cache-dir folder, deleting the user's files in it
    cache = tmp_path / "mine"
    cache.mkdir()
    (cache / "precious.txt").write_text("mine")
    with pytest.raises(ZooError, match="names a folder, not a file"):
        dl.download(server.url + path, cache_dir=cache, progress=False)
    assert [p.name for p in cache.iterdir()] == ["precious.txt"] and server.requests == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]


def test_cli_url_naming_no_file_is_exit_2(server, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    assert main(["zoo", "download", server.url + "/", "--cache-dir", str(tmp_path),
                 "--no-progress"]) == 2
    assert "names a folder" in capsys.readouterr().err and (tmp_path / "keep.txt").exists()


def test_malformed_sha256_is_refused_before_downloading(server, tmp_path):
    # was: the whole file was downloaded, then deleted for a "mismatch" with 'sha256:abc'
    server.files["/m.tar.gz"] = _tarball()
    for bad in ("sha256:abc", "0" * 63, "g" * 64, "md5 1234"):
        with pytest.raises(ZooError, match="not a SHA-256 checksum"):
            dl.download(server.url + "/m.tar.gz", cache_dir=tmp_path, sha256=bad, progress=False)
    assert server.requests == []


@pytest.mark.parametrize("source", ["", "file://x.tar.gz", "file://otherhost{tmp}/x.tar.gz"])
def test_empty_source_or_file_url_without_local_path_is_an_error(tmp_path, monkeypatch, source):
    # was: '' and file://x.tar.gz became Path('') = the current folder, returned as a checkpoint;
    # file://otherhost/PATH silently read the local PATH
    (tmp_path / "x.tar.gz").write_bytes(_tarball())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ZooError, match="empty|names no local file"):
        dl.download(source.format(tmp=tmp_path), cache_dir=tmp_path / "c", progress=False)
    assert not (tmp_path / "c" / "x").exists()


def test_corrupt_gzip_payload_is_refused(server, tmp_path):
    # was: bytes damaged inside the gzip stream unpacked silently (its CRC is only checked at the
    # end of the stream, which extraction never read); zoo entries publish no sha256
    raw = bytearray(_tarball())
    raw[len(raw) // 2: len(raw) // 2 + 64] = bytes(64)
    local = tmp_path / "bad.tar.gz"
    local.write_bytes(raw)
    with pytest.raises(ZooError, match="damaged"):
        dl.download(local, cache_dir=tmp_path / "c", progress=False)
    assert local.exists() and not (tmp_path / "c" / "bad").exists()  # the user's file is kept
    server.files["/bad.tar.gz"] = bytes(raw)
    with pytest.raises(ZooError, match="damaged .*removed"):
        dl.download(server.url + "/bad.tar.gz", cache_dir=tmp_path / "c", progress=False)
    assert not (tmp_path / "c" / "bad").exists()
    assert not list((tmp_path / "c" / "downloads").glob("bad.tar.gz*"))


def test_empty_archive_is_refused(tmp_path):
    buf = io.BytesIO()
    tarfile.open(fileobj=buf, mode="w:gz").close()
    (tmp_path / "empty.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(ZooError, match="holds no files"):
        dl.download(tmp_path / "empty.tar.gz", cache_dir=tmp_path / "c", progress=False)
    assert not (tmp_path / "c" / "empty").exists()


def test_cache_dir_that_is_a_file_is_a_zoo_error(server, tmp_path):
    # was: NotADirectoryError (URL), or "damaged or not a tar archive" for a good local tarball
    (tmp_path / "cache").write_text("a file")
    (tmp_path / "ok.tar.gz").write_bytes(_tarball())
    server.files["/ok.tar.gz"] = _tarball()
    for src in (server.url + "/ok.tar.gz", str(tmp_path / "ok.tar.gz")):
        with pytest.raises(ZooError, match="cannot use the cache folder .*cache"):
            dl.download(src, cache_dir=tmp_path / "cache", progress=False)
    assert (tmp_path / "cache").read_text() == "a file"


def test_write_error_while_unpacking_keeps_the_download(server, tmp_path, monkeypatch):
    # was: any OSError (a full disk) was reported as a damaged archive, which was then deleted
    server.files["/m.tar.gz"] = data = _tarball()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(tarfile.TarFile, "extractall", full)
    with pytest.raises(ZooError, match="free disk space"):
        dl.download(server.url + "/m.tar.gz", cache_dir=tmp_path, progress=False)
    assert (tmp_path / "downloads" / "m.tar.gz").read_bytes() == data
    monkeypatch.undo()
    out = dl.download(server.url + "/m.tar.gz", cache_dir=tmp_path, progress=False)
    assert (out / "checkpoint").exists() and len(server.requests) == 1


def test_folder_od_did_not_make_is_never_replaced(server, tmp_path):
    # was: <cache>/<name> without a marker was replaced whole, the user's files in it deleted
    server.files["/m.tar.gz"] = _tarball()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "notes.txt").write_text("mine")
    with pytest.raises(ZooError, match="not an od cache entry"):
        dl.download(server.url + "/m.tar.gz", cache_dir=tmp_path, progress=False)
    assert (tmp_path / "m" / "notes.txt").read_text() == "mine"
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2" / "m").write_text("a file of mine")
    with pytest.raises(ZooError, match="not an od cache entry"):
        dl.download(server.url + "/m.tar.gz", cache_dir=tmp_path / "c2", progress=False)
    assert (tmp_path / "c2" / "m").read_text() == "a file of mine"


def test_another_file_of_the_same_name_is_not_a_cache_hit(server, tmp_path):
    # was: the first model.tar.gz unpacked was returned for every other source of that name
    cache = tmp_path / "cache"
    for d, top in (("a", "one"), ("b", "two")):
        (tmp_path / d).mkdir()
        (tmp_path / d / "model.tar.gz").write_bytes(_tarball(top))
    assert dl.download(tmp_path / "a" / "model.tar.gz", cache_dir=cache,
                       progress=False).name == "one"
    assert dl.download(tmp_path / "b" / "model.tar.gz", cache_dir=cache,
                       progress=False).name == "two"
    server.files["/v2/model.tar.gz"] = _tarball("three")
    assert dl.download(server.url + "/v2/model.tar.gz", cache_dir=cache,
                       progress=False).name == "three"
    assert dl.download(server.url + "/v2/model.tar.gz", cache_dir=cache,
                       progress=False).name == "three" and len(server.requests) == 1  # a hit
    (tmp_path / "a" / "model.tar.gz").write_bytes(_tarball("rebuilt"))  # rebuilt in place
    assert dl.download(tmp_path / "a" / "model.tar.gz", cache_dir=cache,
                       progress=False).name == "rebuilt"


def test_entry_whose_folder_was_deleted_is_fetched_again(server, tmp_path):
    # was: the marker alone made a hit, returning a folder that no longer exists
    server.files["/m.tar.gz"] = _tarball()
    out = dl.download(server.url + "/m.tar.gz", cache_dir=tmp_path, progress=False)
    for f in out.iterdir():
        f.unlink()
    out.rmdir()
    again = dl.download(server.url + "/m.tar.gz", cache_dir=tmp_path, progress=False)
    assert again == out and (out / "checkpoint").exists() and len(server.requests) == 2


def test_two_downloads_of_one_entry_take_turns(server, tmp_path, capfd):
    # was: the second failed at once ("another process is downloading"), or raced the first's
    # unpacking and deletion of the archive
    server.files["/m.tar.gz"] = data = _tarball()
    server.gate = threading.Event()
    results, errors = [], []

    def fetch():
        try:
            results.append(dl.download(server.url + "/m.tar.gz", cache_dir=tmp_path,
                                       sha256=_sha(data), progress=False))
        except Exception as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)

    first = threading.Thread(target=fetch)
    first.start()
    deadline = time.time() + 10
    while not server.requests and time.time() < deadline:
        time.sleep(0.01)
    second = threading.Thread(target=fetch)
    second.start()
    err = ""
    while "waiting for another process" not in err and time.time() < deadline:
        time.sleep(0.02)
        err += capfd.readouterr().err
    server.gate.set()
    first.join(10)
    second.join(10)
    assert errors == [] and len(results) == 2 and results[0] == results[1]
    assert len(server.requests) == 1 and "waiting for another process" in err


def test_resume_answered_with_another_range_fetches_the_whole_file(server, tmp_path):
    # was: the body of a 206 starting at byte 10 was written at byte 0 (a corrupt archive)
    server.files["/m.tar.gz"] = data = _tarball()
    server.range_start = 10
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "m.tar.gz.part").write_bytes(data[:500])
    out = dl.download(server.url + "/m.tar.gz", cache_dir=tmp_path, sha256=_sha(data),
                      progress=False)
    assert (out / "checkpoint").exists()
    assert server.requests == [("/m.tar.gz", "bytes=500-"), ("/m.tar.gz", None)]


def test_bad_content_length_header_is_not_a_crash(server, tmp_path):
    # was: int('abc') → ValueError, an internal error
    server.files["/m.tar.gz"] = data = _tarball()
    server.content_length = "abc"
    out = dl.download(server.url + "/m.tar.gz", cache_dir=tmp_path, sha256=_sha(data),
                      progress=False)
    assert (out / "checkpoint").exists()


# ---- od zoo select / list / benchmark ------------------------------------------------------------
def _speed_file(tmp_path, **fields):
    rec = {"name": "retinanet_mobilenetv2_coco", "batch": 1, "input_size": 256,
           "latency_ms": 30.0, "images_per_s": 33.0, "repeats": 3, **fields}
    path = tmp_path / "speeds.json"
    path.write_text(json.dumps({"machines": {"m": {"date": "2026-01-01", "records": [rec]}}}))
    return path


@pytest.mark.parametrize("fields", [{"latency_ms": "fast"}, {"latency_ms": float("nan")},
                                    {"latency_ms": -4}, {"batch": "1"}, {"batch": 0},
                                    {"name": ["x"]}, {"images_per_s": True}])
def test_malformed_speed_records_are_a_clean_error(tmp_path, capsys, fields):
    # was: internal errors (TypeError, ValueError), or NaN / negative latencies chosen
    path = _speed_file(tmp_path, **fields)
    with pytest.raises(ZooError, match=r"record 0 of machine 'm'"):
        zoo_select.read_speeds(path)
    for cmd in (["zoo", "select", "--max-latency-ms", "40"], ["zoo", "list"]):
        assert main(cmd + ["--speeds", str(path)]) == 2
        assert "not a speed file" in capsys.readouterr().err


def test_missing_speeds_file_given_on_the_command_line_is_an_error(tmp_path, capsys):
    # was: silently no figures ("none has a measured speed"); `zoo list` showed none
    for cmd in (["zoo", "select", "--min-ap", "20"], ["zoo", "list"]):
        assert main(cmd + ["--speeds", str(tmp_path / "typo.json")]) == 2
        assert "typo.json: no such file" in capsys.readouterr().err


def test_non_speed_file_is_never_to_be_deleted(tmp_path):
    # was: "speed file README.md is unreadable or malformed (...); delete it and run ..."
    (tmp_path / "README.md").write_text("# my notes\n")
    with pytest.raises(ZooError) as e:
        zoo_select.read_speeds(tmp_path / "README.md")
    assert "delete" not in str(e.value) and "not a speed file" in str(e.value)


@pytest.mark.parametrize("batch", [0, -3])
def test_batch_below_one_is_named(batch):
    # was: "no detector has a measured speed at batch 0"
    with pytest.raises(ZooError, match="batch must be an integer >= 1"):
        zoo_select.select(max_latency_ms=40, batch=batch, speeds=[])


@pytest.mark.parametrize("size", [0, -64])
def test_benchmark_input_size_below_one_is_refused(size):
    # was: 0 silently meant "each entry's size" (a long benchmark of the wrong thing)
    with pytest.raises(ZooError, match="input size must be an integer >= 1"):
        zoo_bench.benchmark(["retinanet_mobilenetv2_coco"], input_size=size, log=None)


# ---- label maps ----------------------------------------------------------------------------------
def test_blank_names_are_refused_and_display_name_fills_a_blank_name(tmp_path):
    # was: name: ' ' accepted as a class called ' '
    with pytest.raises(LabelMapError, match="no name"):
        label_map.parse("item { id: 1 name: '  ' }")
    lm = label_map.parse("item { id: 1 name: ' ' display_name: 'Cat' }")
    assert lm.items[0].name == "Cat"
    for names in (["a", ""], ["a", 2]):
        with pytest.raises(LabelMapError, match="non-blank name"):
            label_map.LabelMap.from_names(names)
    with pytest.raises(LabelMapError, match="not an integer"):
        label_map.LabelMap((label_map.LabelMapItem(True, "a"),))


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_non_utf8_label_map_names_the_line_and_bytes(tmp_path, bom):
    # was: "not UTF-8 text (byte offset 48)" only; the README promises the line and the bytes
    path = tmp_path / "lm.pbtxt"
    path.write_bytes(bom + b"item { id: 1 name: 'a' }\nitem { id: 2 name: 'caf\xe9' }\n")
    with pytest.raises(LabelMapError, match=r"lm\.pbtxt:2: .*not UTF-8.*xe9"):
        label_map.read(path)


def test_an_empty_label_map_is_not_written(tmp_path):
    # was: an empty file written, which `label_map.read` then refuses
    with pytest.raises(LabelMapError, match="no classes"):
        label_map.write(label_map.LabelMap(()), tmp_path / "lm.pbtxt")
    assert not (tmp_path / "lm.pbtxt").exists()


@needs_shared
def test_coco_label_map_with_gaps_and_odd_names_round_trip(tmp_path):
    coco = label_map.read(SHARED / "label_maps" / "mscoco_label_map.pbtxt")
    assert len(coco.items) == 80 and coco.max_id == 90
    names = ["quote ' \" end", "new\nline", "é 漢字 😀", "back\\slash", "tab\there", "{#}"]
    lm = label_map.LabelMap.from_names(names, [n + "!" for n in names])
    back = label_map.read(label_map.write(lm, tmp_path / "lm.pbtxt"))
    assert back.items == lm.items


# ---- OD API pipeline.config import ---------------------------------------------------------------
SSD = SHARED / "data" / "odapi_configs" / "ssd_mobilenet_v2_320x320_coco17_tpu-8.config"
FILL = ["data.train=train-*.tfrecord", "data.val=", "data.label_map=",
        "train.fine_tune_checkpoint="]


def _ssd(tmp_path, *subs, name="p.config", prefix=""):
    text = SSD.read_text()
    for old, new in subs:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / name
    path.write_text(prefix + text, encoding="utf-8")
    return path


@needs_shared
def test_pipeline_config_with_a_bom_is_read(tmp_path):
    # was: "Expected identifier or number, got \ufeff", and a file starting "\ufeffmodel {" was
    # not even recognised as a pipeline.config by `od train --config`
    path = _ssd(tmp_path, prefix="\ufeff")
    assert odapi.import_config(path, nearest=True, overrides=FILL).cfg.model.num_classes == 91
    first = tmp_path / "first.config"
    first.write_text("\ufeffmodel { ssd { num_classes: 2 feature_extractor { "
                     "type: 'ssd_mobilenet_v2_fpn_keras' } } }\n", encoding="utf-8")
    assert odapi.is_pipeline_config(first)
    assert odapi.import_config(first, overrides=FILL).cfg.model.num_classes == 3


@needs_shared
def test_num_classes_absent_zero_or_negative(tmp_path):
    # was: absent or 0 → model.num_classes = 1 (no object class; a confusing error much later);
    # -5 → "model.num_classes = -4" (an od key and a value the file does not have)
    for sub in ("", "num_classes: 0"):
        path = _ssd(tmp_path, ("num_classes: 90", sub))
        imported = odapi.import_config(path, nearest=True, overrides=FILL)
        assert imported.cfg.model.num_classes == 0  # from the label map, as od does
        assert any("num_classes" in r.field and r.target == "model.num_classes=0"
                   for r in imported.rows)
    with pytest.raises(ConfigError, match=r"model\.ssd\.num_classes = -5"):
        odapi.import_config(_ssd(tmp_path, ("num_classes: 90", "num_classes: -5")),
                            nearest=True, overrides=FILL)


@needs_shared
@pytest.mark.parametrize("side", ["0", "-300"])
def test_resizer_size_below_one_is_refused(tmp_path, side):
    # was: height 0 → input_size 0 ("auto"), -300 → 128, both silently
    path = _ssd(tmp_path, ("height: 300", f"height: {side}"), ("width: 300", f"width: {side}"))
    with pytest.raises(ConfigError, match="fixed_shape_resizer height x width"):
        odapi.import_config(path, nearest=True, overrides=FILL)


@needs_shared
def test_resizer_defaults_are_the_od_apis(tmp_path):
    # was: a keep_aspect_ratio_resizer without max_dimension gave input_size 0 (od's "auto")
    # instead of the API's default 1024
    path = _ssd(tmp_path, ("fixed_shape_resizer {\n        height: 300\n        width: 300\n",
                           "keep_aspect_ratio_resizer {\n min_dimension: 600\n"))
    imported = odapi.import_config(path, nearest=True, overrides=FILL)
    assert imported.cfg.model.input_size == 1024
    assert any(r.target == "model.input_size=1024" for r in imported.rows)


@needs_shared
def test_config_import_never_overwrites_a_table_file(tmp_path, capsys):
    # was: only --out was checked; OUT_STEM.mapping.txt / .json of the user were overwritten
    (tmp_path / "od.mapping.txt").write_text("my notes")
    assert main(["config", "import", str(SSD), "--nearest", "--out",
                 str(tmp_path / "od.yaml")]) == 2
    assert "od.mapping.txt exists" in capsys.readouterr().err
    assert (tmp_path / "od.mapping.txt").read_text() == "my notes"
    assert not (tmp_path / "od.yaml").exists()


@needs_shared
def test_adjacent_strings_are_one_value(tmp_path):
    # was: valid protobuf text ('"a" "b"' is one string) refused as "not a valid pipeline.config"
    path = _ssd(tmp_path, ('label_map_path: "PATH_TO_BE_CONFIGURED/label_map.txt"',
                           'label_map_path: "my_" "labels.pbtxt"'))
    imported = odapi.import_config(path, nearest=True, placeholders="keep")
    assert imported.cfg.data.label_map == "my_labels.pbtxt"
    assert any(r.value == "my_labels.pbtxt" for r in imported.rows)


def test_absurdly_nested_config_is_a_config_error(tmp_path):
    # was: RecursionError (an internal error)
    path = tmp_path / "deep.config"
    path.write_text("model " + "{ a " * 3000 + "}" * 3000)
    with pytest.raises(ConfigError, match="nested too deeply"):
        odapi.import_config(path)


def test_binary_pipeline_config_names_the_byte(tmp_path):
    path = tmp_path / "p.config"
    path.write_bytes(b"model {" + bytes(range(128, 256)))
    with pytest.raises(ConfigError, match="not a text file"):
        odapi.import_config(path)


@needs_shared
@pytest.mark.parametrize("sub", ["num_steps: 0", ""])
def test_num_steps_zero_or_absent_says_what_od_does(tmp_path, sub):
    # was: a 0 row "ignored: no counterpart in od's config", and the cosine row said
    # "od's cosine decays to 0 at train.steps (None)"
    imported = odapi.import_config(_ssd(tmp_path, ("num_steps: 50000", sub)), nearest=True,
                                   overrides=FILL)
    steps = imported.cfg.train.steps
    rows = [r for r in imported.rows if "num_steps" in r.field]
    assert len(rows) == 1 and "without end" in rows[0].note and f"= {steps}" in rows[0].note
    assert not any("(None)" in r.note for r in imported.rows)


# ---- od.zoo --------------------------------------------------------------------------------------
def test_unknown_name_in_other_case_gets_the_close_name():
    # was: no suggestion at all for RETINANET_RESNET50_FPN_COCO (close names compared by case)
    from od import zoo
    with pytest.raises(ZooError, match="did you mean retinanet_resnet50_fpn_coco"):
        zoo.get("RETINANET_RESNET50_FPN_COCO")


def test_display_names_of_another_length_are_refused():
    # was: zip() dropped the classes without a display name: ['a', 'b'], ['A'] → one class
    with pytest.raises(LabelMapError, match="2 class names but 1 display names"):
        label_map.LabelMap.from_names(["a", "b"], ["A"])
    assert label_map.LabelMap.from_names(iter(["a", "b"])).names == ["a", "b"]


@pytest.mark.parametrize("kw", [{"batch_sizes": (0,)}, {"repeats": 0}])
def test_measure_checks_its_arguments_like_benchmark(kw):
    # was: ZeroDivisionError / StatisticsError after building the model
    from od import zoo
    with pytest.raises(ZooError, match="must be >= 1"):
        zoo_bench.measure(zoo.get("retinanet_mobilenetv2_coco"), machine="m", **kw)
