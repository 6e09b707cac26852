"""Model zoo: the table, selection (on a table written here), speeds, downloads (against a real
HTTP server on 127.0.0.1), the CLI, and a benchmark smoke test. Never touches the internet."""
from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import os
import re
import socket
import tarfile
from pathlib import Path

import pytest

from od import download as dl
from od.checkpoints import prefix_in
from od import zoo, zoo_select
from od.errors import CheckpointError, OdError, ZooError
from od.zoo_select import SpeedRecord
from conftest import start_http_server

# ---- selection on a table written here ---------------------------------------------------------
BASE = zoo.ZOO[0]


def _e(name, ap, init="detector"):
    return dataclasses.replace(BASE, name=name, coco_ap=ap if init == "detector" else None,
                               init=init, imagenet_top1=None if init == "detector" else 75.0)


def _s(name, ms, batch=1, machine="test box"):
    return SpeedRecord(name, machine, batch, 256, ms, None if ms is None else 1000.0 / ms,
                       3, "2026-01-01")


TABLE = (_e("tiny", 20.0), _e("small", 28.0), _e("mid", 36.0), _e("big", 44.0),
         _e("huge", 50.0), _e("backbone", None, init="backbone"))
SPEEDS = [_s("tiny", 10.0), _s("small", 25.0), _s("mid", 40.0), _s("big", 120.0),
          _s("backbone", 1.0), _s("tiny", 2.0, batch=8), _s("big", 30.0, batch=8)]
# "huge" has no measured speed


def test_select_best_ap_within_latency():
    # the bound is inclusive
    assert zoo_select.select(TABLE, max_latency_ms=40, speeds=SPEEDS).name == "mid"
    assert zoo_select.select(TABLE, max_latency_ms=39.9, speeds=SPEEDS).name == "small"
    # not the unmeasured one
    assert zoo_select.select(TABLE, max_latency_ms=1000, speeds=SPEEDS).name == "big"
    assert zoo_select.select(TABLE, max_latency_ms=40, min_ap=25, speeds=SPEEDS).name == "mid"
    assert zoo_select.select(TABLE, max_latency_ms=30, min_ap=25, speeds=SPEEDS).name == "small"


def test_select_fastest_above_ap():
    assert zoo_select.select(TABLE, min_ap=25, speeds=SPEEDS).name == "small"
    assert zoo_select.select(TABLE, min_ap=28.0, speeds=SPEEDS).name == "small"  # bound inclusive
    assert zoo_select.select(TABLE, min_ap=28.1, speeds=SPEEDS).name == "mid"
    assert zoo_select.select(TABLE, min_ap=0, speeds=SPEEDS).name == "tiny"


def test_select_ties():
    table = (_e("a_fast", 30.0), _e("b_fast", 30.0), _e("c_better", 31.0))
    speeds = [_s("a_fast", 10.0), _s("b_fast", 20.0), _s("c_better", 20.0)]
    # same AP: the faster wins; same speed: the higher AP wins
    assert zoo_select.select(table[:2], max_latency_ms=50, speeds=speeds).name == "a_fast"
    assert zoo_select.select(table[1:], min_ap=0, speeds=speeds).name == "c_better"
    # full tie: the name decides, so the answer never depends on table order
    tied = (_e("y", 30.0), _e("x", 30.0))
    sp = [_s("y", 10.0), _s("x", 10.0)]
    assert zoo_select.select(tied, max_latency_ms=50, speeds=sp).name == "x"
    assert zoo_select.select(tied[::-1], min_ap=1, speeds=sp).name == "x"


def test_select_batch_uses_that_batch_figures():
    assert zoo_select.select(TABLE, max_latency_ms=40, speeds=SPEEDS, batch=8).name == "big"
    assert zoo_select.select(TABLE, min_ap=40, speeds=SPEEDS, batch=8).name == "big"


def test_select_nothing_fits_names_the_closest():
    with pytest.raises(ZooError) as ei:
        zoo_select.select(TABLE, max_latency_ms=5, speeds=SPEEDS)
    msg = str(ei.value)
    assert "tiny (20.0 AP, 10.0 ms/image at batch 1)" in msg and "huge" in msg  # left out
    with pytest.raises(ZooError) as ei:
        zoo_select.select(TABLE, max_latency_ms=30, min_ap=40, speeds=SPEEDS)
    msg = str(ei.value)
    assert "big (44.0 AP, 120.0 ms/image" in msg and "small (28.0 AP, 25.0 ms/image" in msg
    with pytest.raises(ZooError, match=r"no detector has COCO AP >= 60: the best is huge"):
        zoo_select.select(TABLE, min_ap=60, speeds=SPEEDS)
    with pytest.raises(ZooError, match="huge.*none has a measured speed"):
        zoo_select.select(TABLE, min_ap=45, speeds=SPEEDS)


def test_select_without_speeds_and_bad_bounds():
    with pytest.raises(ZooError, match="no detector has a measured speed at batch 1"):
        zoo_select.select(TABLE, max_latency_ms=100, speeds=[_s("tiny", None)])
    with pytest.raises(ZooError, match="give a bound"):
        zoo_select.select(TABLE, speeds=SPEEDS)
    with pytest.raises(ZooError, match="max_latency_ms must be"):
        zoo_select.select(TABLE, max_latency_ms=-1, speeds=SPEEDS)
    with pytest.raises(ZooError, match="no detector entries"):
        zoo_select.select(TABLE[-1:], min_ap=1, speeds=SPEEDS)
    assert issubclass(ZooError, OdError)


def _f(name, ap):  # a Faster R-CNN entry: an architecture with a backbone checkpoint only
    return dataclasses.replace(BASE, name=name, coco_ap=ap, init="backbone",
                               init_checkpoint_modules="backbone", model_architecture="faster_rcnn",
                               arch_only=True, ap_note="box AP of a related model")


MIXED = (_e("rn_small", 28.0), _e("rn_big", 37.0), _f("fr_big", 42.0), _f("fr_mobile", None),
         _e("backbone", None, init="backbone"))
MIXED_SPEEDS = [_s("rn_small", 30.0), _s("rn_big", 900.0), _s("fr_big", 1500.0),
                _s("fr_mobile", 100.0)]


def test_select_ranks_across_both_architectures():
    sel = lambda **kw: zoo_select.select(MIXED, speeds=MIXED_SPEEDS, **kw).name  # noqa: E731
    assert sel(max_latency_ms=2000) == "fr_big"       # best AP of both architectures
    assert sel(max_latency_ms=1000) == "rn_big"
    assert sel(min_ap=30) == "rn_big"                 # fastest above 30 AP
    assert sel(min_ap=40) == "fr_big"
    assert sel(max_latency_ms=2000, coco_checkpoint_only=True) == "rn_big"
    assert sel(max_latency_ms=2000, architecture="retinanet") == "rn_big"
    assert sel(min_ap=0, architecture="faster_rcnn") == "fr_big"
    ranked = zoo_select.rank(MIXED, max_latency_ms=2000, speeds=MIXED_SPEEDS)
    assert [e.name for e in ranked] == ["fr_big", "rn_big", "rn_small"]  # no AP: not ranked
    assert [e.name for e in zoo_select.rank(MIXED, min_ap=0, speeds=MIXED_SPEEDS)] == [
        "rn_small", "rn_big", "fr_big"]
    lines = zoo_select.ranking(ranked, MIXED_SPEEDS).splitlines()
    assert lines[0].split()[:4] == ["1.", "fr_big", "faster_rcnn", "42.0"]
    assert "no COCO checkpoint" in lines[0] and "1500.0 ms" in lines[0]
    assert lines[1].endswith("COCO checkpoint") and "no COCO" not in lines[1]
    # the one Faster R-CNN within 200 ms has no published AP: the error says so
    with pytest.raises(ZooError, match="architecture faster_rcnn fits.*want of a published "
                                       "COCO AP: fr_mobile"):
        zoo_select.select(MIXED, max_latency_ms=200, architecture="faster_rcnn",
                          speeds=MIXED_SPEEDS)
    with pytest.raises(ZooError, match="fr_big \\(42.0 AP, no COCO checkpoint, 1500.0 ms"):
        zoo_select.select(MIXED, max_latency_ms=1000, min_ap=40, speeds=MIXED_SPEEDS)
    with pytest.raises(ZooError, match="no detector entries of architecture faster_rcnn with a "
                                       "COCO checkpoint"):
        zoo_select.select(MIXED, min_ap=1, architecture="faster_rcnn", coco_checkpoint_only=True,
                   speeds=MIXED_SPEEDS)
    with pytest.raises(ZooError, match="'ssd' is not one of retinanet, faster_rcnn"):
        zoo_select.select(MIXED, min_ap=1, architecture="ssd", speeds=MIXED_SPEEDS)


def test_zoo_architectures_are_the_configs():
    from od import config, config_check
    assert zoo.ARCHITECTURES == config_check.CHOICES["model.architecture"]
    for e in zoo.ZOO:
        if e.is_detector:
            cfg = config.load(config.configs_dir() / e.config)
            assert cfg.model.architecture == e.model_architecture, e.name


# ---- the shipped table ---------------------------------------------------------------------------
PUBLISHED_AP = {"retinanet_resnet50_fpn_coco": 36.8, "retinanet_spinenet49_coco": 44.2,
                "retinanet_spinenet96_coco": 48.5, "retinanet_spinenet143_coco": 50.0,
                "retinanet_mobile_spinenet49_coco": 28.1, "retinanet_mobilenetv2_coco": 23.3}
PUBLISHED_TOP1 = {"resnet50_imagenet": 77.1, "resnet101_imagenet": 78.3,
                  "resnet152_imagenet": 78.7, "mobilenetv2_imagenet": 72.78}


def test_table_matches_reference_doc():
    names = [e.name for e in zoo.ZOO]
    assert len(names) == len(set(names)) == 12
    assert {e.name: e.coco_ap for e in zoo.ZOO if e.has_coco_checkpoint} == PUBLISHED_AP
    assert {e.name: e.imagenet_top1 for e in zoo.ZOO if not e.is_detector} == PUBLISHED_TOP1
    sizes = {e.name: e.input_size for e in zoo.ZOO}
    assert (sizes["retinanet_spinenet96_coco"], sizes["retinanet_spinenet143_coco"],
            sizes["retinanet_mobile_spinenet49_coco"], sizes["retinanet_mobilenetv2_coco"]) == (
        1024, 1280, 384, 256)
    for e in zoo.ZOO:
        assert e.url.startswith(("https://storage.googleapis.com/", "gs://")), e.name
        assert e.url.endswith(".tar.gz") or "prefix" in e.note, e.name
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256)
        assert (e.init, e.init_checkpoint_modules) in {("detector", "all"),
                                                       ("backbone", "backbone")}
        assert e.source and e.experiment
        assert e.input_size % 128 == 0 or e.init == "backbone"  # multiple of 2**max_level
    assert zoo.get("retinanet_spinenet49_coco").gflops == 85.4
    assert zoo.get("retinanet_mobilenetv2_coco").gflops is None


def test_faster_rcnn_entries_say_they_have_no_coco_checkpoint():
    """Model Garden publishes no Faster R-CNN (or Mask R-CNN) COCO checkpoint: the entries are
    architectures with an ImageNet backbone as checkpoint, and the R50 AP is Mask R-CNN's."""
    frcnn = {e.name: e for e in zoo.ZOO if e.model_architecture == "faster_rcnn"}
    assert set(frcnn) == {"fasterrcnn_resnet50_fpn_imagenet", "fasterrcnn_mobilenetv2_fpn_imagenet"}
    for e in frcnn.values():
        assert e.arch_only and e.is_detector and not e.has_coco_checkpoint
        assert (e.init, e.init_checkpoint_modules) == ("backbone", "backbone")
        assert e.config.startswith("fasterrcnn_") and e.params_m is None and e.gflops is None
        assert "no COCO checkpoint" in e.note and e.ap_note
    r50 = frcnn["fasterrcnn_resnet50_fpn_imagenet"]
    mnv2 = frcnn["fasterrcnn_mobilenetv2_fpn_imagenet"]
    assert r50.coco_ap == 42.3 and "Mask R-CNN R50-FPN" in r50.ap_note
    assert "from scratch" in r50.ap_note and "mask head" in r50.ap_note
    assert r50.url == zoo.RESNET50_INIT and r50.input_size == 640
    assert mnv2.coco_ap is None and mnv2.url == zoo.get("mobilenetv2_imagenet").url
    assert "../shared/weights/mobilenet_v2_1.0_imagenet" in mnv2.note
    assert r50.ap_label == "42.3 AP, no COCO checkpoint"
    assert zoo.get("retinanet_resnet50_fpn_coco").ap_label == "36.8 AP"
    assert "no COCO checkpoint published" in zoo.ap_source(r50)
    assert "downloadable COCO checkpoint" in zoo.ap_source(zoo.get("retinanet_spinenet49_coco"))
    table = zoo_select.list_table(speeds=[])
    row = next(line for line in table.splitlines() if line.startswith(r50.name))
    assert "faster_rcnn" in row and "NO COCO CKPT" in row and "42.3*" in row
    assert "Mask R-CNN R50-FPN" in table.split("NO COCO CKPT:", 1)[1]


def test_frcnn_r50_checkpoint_is_model_gardens_own_init():
    import official.vision.configs.maskrcnn  # noqa: F401
    from official.core import exp_factory
    exp = exp_factory.get_exp_config("fasterrcnn_resnetfpn_coco")
    assert exp.task.init_checkpoint == zoo.get("fasterrcnn_resnet50_fpn_imagenet").url
    assert exp.task.init_checkpoint_modules == "backbone" and not exp.task.model.include_mask


def test_get_suggests_nearest():
    with pytest.raises(ZooError, match="did you mean retinanet_spinenet49_coco"):
        zoo.get("retinanet_spinenet49")


def test_experiments_exist():
    import official.vision.configs.maskrcnn  # noqa: F401
    import official.vision.configs.retinanet  # noqa: F401
    from official.core import exp_factory
    for e in zoo.ZOO:
        assert exp_factory.get_exp_config(e.experiment).task.model.backbone.type, e.name


def test_shipped_speeds_cover_every_detector_and_list_shows_them():
    recs = zoo_select.read_speeds(zoo_select.SHIPPED_SPEEDS)
    detectors = {e.name for e in zoo.ZOO if e.is_detector}
    for b in (1, 8):
        got = {r.name: r for r in recs if r.batch == b}
        assert detectors <= set(got), f"batch {b}: missing {detectors - set(got)}"
        for r in got.values():
            assert r.measured or r.note  # a figure, or why there is none
            assert r.input_size == zoo.get(r.name).input_size
    table = zoo_select.list_table(speeds=recs)
    assert all(e.name in table for e in zoo.ZOO)
    b1 = {r.name: r for r in recs if r.batch == 1 and r.measured}
    if "retinanet_mobilenetv2_coco" in b1:
        r = b1["retinanet_mobilenetv2_coco"]
        assert f"{r.latency_ms:.1f}" in table and r.machine in table


def test_load_speeds_user_file_first(tmp_path):
    from od.zoo_bench import write_speeds
    p = write_speeds([_s("tiny", 99.0, machine="mine")], tmp_path / "s.json")
    write_speeds([_s("small", 5.0, machine="mine")], p)  # merged, not overwritten
    got = {(r.name, r.machine): r.latency_ms
           for r in zoo_select.load_speeds([p, zoo_select.SHIPPED_SPEEDS])}
    assert got[("tiny", "mine")] == 99.0 and got[("small", "mine")] == 5.0
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ZooError, match="bad.json"):
        zoo_select.load_speeds([tmp_path / "bad.json"])


# ---- downloads -----------------------------------------------------------------------------------
class _Server:
    """A threaded HTTP server on 127.0.0.1 serving ``files`` (url path → bytes)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.sent = 0
        self.honour_range = True
        self.drop_after: int | None = None  # bytes of body sent before dropping, once
        srv = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                srv.requests.append((self.path, rng))
                data = srv.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and srv.honour_range:
                    start = int(re.match(r"bytes=(\d+)-", rng).group(1))
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if srv.drop_after is not None:
                    cut, srv.drop_after = srv.drop_after, None
                    self.wfile.write(body[:cut])
                    srv.sent += cut
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)
                srv.sent += len(body)

        self.httpd, self.url = start_http_server(Handler)


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _tarball(tmp_path, name="mini_ckpt", extra=None) -> bytes:
    """A .tar.gz holding ``name/`` with checkpoint-like files (~300 KB, incompressible)."""
    files = {"ckpt-7.index": os.urandom(1000), "ckpt-7.data-00000-of-00001": os.urandom(300_000),
             "checkpoint": b'model_checkpoint_path: "ckpt-7"\n'}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for fname, data in files.items():
            info = tarfile.TarInfo(f"{name}/{fname}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, data in (extra or []):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _complete_entries(cache: Path):
    return [p for p in cache.glob("*") if (p / dl.MARKER).exists()]


def test_download_fresh_then_cache_hit(server, tmp_path):
    data = _tarball(tmp_path)
    server.files["/m/mini.tar.gz"] = data
    cache = tmp_path / "cache"
    digest = hashlib.sha256(data).hexdigest()
    out = dl.download(server.url + "/m/mini.tar.gz", cache_dir=cache, sha256=digest.upper(),
                      progress=False)
    assert out == cache / "mini" / "mini_ckpt"
    assert prefix_in(out) == str(out / "ckpt-7")
    assert prefix_in(cache / "mini") == str(out / "ckpt-7")
    marker = json.loads((cache / "mini" / dl.MARKER).read_text())
    assert marker["sha256"] == digest and marker["root"] == "mini_ckpt"
    assert not list((cache / "downloads").glob("mini.tar.gz*"))  # archive and .part gone
    assert server.requests == [("/m/mini.tar.gz", None)]
    again = dl.download(server.url + "/m/mini.tar.gz", cache_dir=cache, progress=False)
    assert again == out and len(server.requests) == 1  # cache hit: no request


def test_download_without_checksum_records_hash(server, tmp_path, monkeypatch):
    data = _tarball(tmp_path)
    server.files["/x.tgz"] = data
    monkeypatch.setenv(dl.CACHE_ENV, str(tmp_path / "envcache"))
    out = dl.download(server.url + "/x.tgz", progress=False)
    assert out.parent == tmp_path / "envcache" / "x"
    assert json.loads((out.parent / dl.MARKER).read_text())["sha256"] == \
        hashlib.sha256(data).hexdigest()


def test_resume_requests_only_the_remainder(server, tmp_path):
    data = _tarball(tmp_path)
    server.files["/mini.tar.gz"] = data
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / "mini.tar.gz.part").write_bytes(data[:100_000])
    out = dl.download(server.url + "/mini.tar.gz", cache_dir=cache,
                      sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert server.requests == [("/mini.tar.gz", "bytes=100000-")]
    assert server.sent == len(data) - 100_000
    assert (out / "checkpoint").exists()


def test_server_ignoring_range_restarts(server, tmp_path):
    data = _tarball(tmp_path)
    server.files["/mini.tar.gz"] = data
    server.honour_range = False
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / "mini.tar.gz.part").write_bytes(b"stale bytes" * 100)
    out = dl.download(server.url + "/mini.tar.gz", cache_dir=cache,
                      sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert server.sent == len(data) and (out / "ckpt-7.index").exists()


def test_dropped_connection_leaves_nothing_complete_and_retry_resumes(server, tmp_path):
    data = _tarball(tmp_path)
    server.files["/mini.tar.gz"] = data
    server.drop_after = 120_000
    cache = tmp_path / "cache"
    url = server.url + "/mini.tar.gz"
    with pytest.raises(ZooError, match="run again to resume"):
        dl.download(url, cache_dir=cache, progress=False)
    assert _complete_entries(cache) == [] and not (cache / "mini").exists()
    part = cache / "downloads" / "mini.tar.gz.part"
    assert 0 < part.stat().st_size <= 120_000 and not (cache / "downloads" / "mini.tar.gz").exists()
    have = part.stat().st_size
    out = dl.download(url, cache_dir=cache, sha256=hashlib.sha256(data).hexdigest(),
                      progress=False)
    assert server.requests[-1] == ("/mini.tar.gz", f"bytes={have}-")
    assert (out / "ckpt-7.data-00000-of-00001").stat().st_size == 300_000


def test_wrong_checksum_removes_file_and_extracts_nothing(server, tmp_path):
    server.files["/mini.tar.gz"] = _tarball(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(ZooError, match="SHA-256 .* expected 0{64}; the file was removed"):
        dl.download(server.url + "/mini.tar.gz", cache_dir=cache, sha256="0" * 64,
                    progress=False)
    assert not (cache / "mini").exists()
    assert not [p for p in (cache / "downloads").iterdir() if not p.name.startswith(".")]


def test_http_error_and_unreachable(server, tmp_path):
    with pytest.raises(ZooError, match="HTTP 404"):
        dl.download(server.url + "/missing.tar.gz", cache_dir=tmp_path, progress=False)
    port = server.httpd.server_address[1]
    server.httpd.shutdown()
    server.httpd.server_close()
    with pytest.raises(ZooError, match="cannot reach .*offline"):
        dl.download(f"http://127.0.0.1:{port}/x.tar.gz", cache_dir=tmp_path, progress=False)


def test_folder_without_marker_is_not_a_cache_hit(server, tmp_path):
    server.files["/mini.tar.gz"] = _tarball(tmp_path)
    cache = tmp_path / "cache"
    (cache / "mini" / "mini_ckpt").mkdir(parents=True)  # e.g. a crashed manual copy
    out = dl.download(server.url + "/mini.tar.gz", cache_dir=cache, progress=False)
    assert len(server.requests) == 1 and (out / "ckpt-7.index").exists()


def test_checkpoint_prefix_url(server, tmp_path):
    server.files["/ckpt/ckpt-9.index"] = b"index" + dl._INDEX_MAGIC  # a table's footer magic
    server.files["/ckpt/ckpt-9.data-00000-of-00001"] = b"data"
    out = dl.download(server.url + "/ckpt/ckpt-9", cache_dir=tmp_path, progress=False)
    assert prefix_in(out) == str(out / "ckpt-9")
    assert (out / "ckpt-9.data-00000-of-00001").read_bytes() == b"data"
    server.files["/web/page-1.index"] = b"<html>not found</html>"  # 200 for every path
    server.files["/web/page-1.data-00000-of-00001"] = b"<html>not found</html>"
    with pytest.raises(ZooError, match="not a TensorFlow checkpoint index .*<html>"):
        dl.download(server.url + "/web/page-1", cache_dir=tmp_path, progress=False)
    assert not (tmp_path / "page-1").exists()
    with pytest.raises(ZooError, match="single-shard"):
        dl.download(server.url + "/ckpt/other-1", cache_dir=tmp_path, progress=False)


def test_file_url_local_tarball_folder_and_prefix(tmp_path):
    data = _tarball(tmp_path)
    tgz = tmp_path / "local.tar.gz"
    tgz.write_bytes(data)
    cache = tmp_path / "cache"
    out = dl.download(tgz.as_uri(), cache_dir=cache, sha256=hashlib.sha256(data).hexdigest(),
                      progress=False)
    assert out == cache / "local" / "mini_ckpt" and tgz.exists()  # the user's file is kept
    assert dl.download(str(tgz), cache_dir=cache, progress=False) == out
    with pytest.raises(ZooError, match="expected 1{64}"):
        dl.download(str(tgz), cache_dir=tmp_path / "c2", sha256="1" * 64, progress=False)
    assert not (tmp_path / "c2" / "local").exists() and tgz.exists()
    assert dl.download(out, progress=False) == out  # a folder: as is
    assert dl.download(out / "ckpt-7", progress=False) == out / "ckpt-7"  # a prefix: as is
    with pytest.raises(ZooError, match="neither a zoo name"):
        dl.download(tmp_path / "nope" / "x", progress=False)
    with pytest.raises(ZooError, match="no zoo entry named 'retinanet_spinenet_49'"):
        dl.download("retinanet_spinenet_49", progress=False)


def test_prefilled_cache_for_zoo_name_needs_no_network(tmp_path):
    cache = tmp_path / "cache"
    # 1) a finished cache entry (with marker)
    e = zoo.get("retinanet_mobilenetv2_coco")
    dl._unpack_cached(_write(tmp_path / "a.tar.gz", _tarball(tmp_path)), cache / e.name,
                      e.url, None, keep_archive=True)
    assert dl.download(e.name, cache_dir=cache, progress=False) == cache / e.name / "mini_ckpt"
    # 2) the archive alone, dropped into <cache>/downloads/
    e2 = zoo.get("retinanet_spinenet49_coco")
    _write(cache / "downloads" / "spinenet-49-i640.tar.gz", _tarball(tmp_path, "sn49"))
    assert dl.download(e2.name, cache_dir=cache, progress=False) == cache / e2.name / "sn49"


def _write(p: Path, data: bytes) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("member,link", [("../evil.txt", None), ("/abs/evil.txt", None),
                                         ("mini_ckpt/link", "../../outside"),
                                         ("mini_ckpt/abslink", "/etc/passwd")])
def test_unsafe_tar_members_are_refused(tmp_path, member, link):
    info = tarfile.TarInfo(member)
    payload = b"x"
    if link:
        info.type, info.linkname, payload = tarfile.SYMTYPE, link, None
    else:
        info.size = 1
    tgz = _write(tmp_path / "evil.tar.gz", _tarball(tmp_path, extra=[(info, payload)]))
    cache = tmp_path / "cache"
    with pytest.raises(ZooError, match="unsafe member"):
        dl.download(tgz, cache_dir=cache, progress=False)
    assert _complete_entries(cache) == [] and not (cache / "evil").exists()
    assert not (tmp_path / "evil.txt").exists() and not (cache / "evil.txt").exists()


def test_damaged_archive(tmp_path):
    tgz = _write(tmp_path / "broken.tar.gz", _tarball(tmp_path)[:5000])
    with pytest.raises(ZooError, match="cannot unpack"):
        dl.download(tgz, cache_dir=tmp_path / "cache", progress=False)
    assert _complete_entries(tmp_path / "cache") == []


def test_gs_urls_and_checkpoint_path_with_real_tf_checkpoint(tmp_path):
    assert dl.to_https("gs://tf_model_garden/vision/x.tar.gz") == \
        "https://storage.googleapis.com/tf_model_garden/vision/x.tar.gz"
    import tensorflow as tf
    ckpt = tf.train.Checkpoint(v=tf.Variable([1.0, 2.0]))
    ckpt.save(str(tmp_path / "run" / "ckpt"))
    ckpt.save(str(tmp_path / "run" / "ckpt"))
    assert prefix_in(tmp_path / "run") == tf.train.latest_checkpoint(tmp_path / "run")
    (tmp_path / "run" / "checkpoint").unlink()
    with pytest.raises(CheckpointError, match="cannot tell the checkpoint"):
        prefix_in(tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not exist"):
        prefix_in(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="holds no TensorFlow checkpoint"):
        prefix_in(tmp_path / "empty")


# ---- CLI -----------------------------------------------------------------------------------------
def test_cli_list_select_download(tmp_path, capsys):
    from od.cli import main
    from od.zoo_bench import write_speeds
    speeds = write_speeds([_s("retinanet_mobilenetv2_coco", 20.0),
                           _s("retinanet_mobile_spinenet49_coco", 35.0),
                           _s("retinanet_resnet50_fpn_coco", 900.0)], tmp_path / "s.json")
    assert main(["zoo", "select", "--max-latency-ms", "40", "--min-ap", "25",
                 "--speeds", str(speeds)]) == 0
    assert capsys.readouterr().out.strip() == "retinanet_mobile_spinenet49_coco"
    assert main(["zoo", "select", "--max-latency-ms", "10", "--speeds", str(speeds)]) == 2
    assert "retinanet_mobilenetv2_coco (23.3 AP, 20.0 ms/image" in capsys.readouterr().err
    assert main(["zoo", "list", "--speeds", str(speeds)]) == 0
    out = capsys.readouterr().out
    assert "retinanet_spinenet143_coco" in out and "900.0" in out and "test box" in out
    tgz = _write(tmp_path / "m.tar.gz", _tarball(tmp_path))
    assert main(["zoo", "download", tgz.as_uri(), "--cache-dir", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "c" / "m" / "mini_ckpt")


# ---- benchmark smoke test ------------------------------------------------------------------------
def test_benchmark_smoke(tmp_path):
    from od import zoo_bench
    recs = zoo_bench.benchmark(["retinanet_mobilenetv2_coco"], batch_sizes=(1, 2), repeats=1,
                               input_size=128, log=None)
    assert [(r.name, r.batch, r.input_size) for r in recs] == [
        ("retinanet_mobilenetv2_coco", 1, 128), ("retinanet_mobilenetv2_coco", 2, 128)]
    for r in recs:
        assert r.latency_ms > 0 and r.repeats == 1
        assert r.images_per_s == pytest.approx(1000.0 / r.latency_ms, rel=0.01)
        assert ("CPU" in r.machine) or r.machine.startswith("GPU: ")
    p = zoo_bench.write_speeds(recs, tmp_path / "speeds.json")
    assert zoo_select.load_speeds([p]) and not list(tmp_path.glob(".*tmp*"))
    with pytest.raises(ZooError, match="backbone checkpoint"):
        zoo_bench.benchmark(["resnet50_imagenet"], log=None)


# ---- where speeds come from and go (issue 10) ---------------------------------------------------
def test_benchmark_writes_user_cache_never_the_package(tmp_path, monkeypatch):
    from od import zoo_bench
    monkeypatch.delenv(zoo_select.SPEEDS_ENV, raising=False)
    monkeypatch.setenv("OD_CACHE_DIR", str(tmp_path / "cache"))
    assert zoo_bench.default_out() == tmp_path / "cache" / "zoo_speeds.json"
    assert zoo_select.SHIPPED_SPEEDS not in (zoo_bench.default_out(), zoo_select.user_speeds_path())
    monkeypatch.setenv(zoo_select.SPEEDS_ENV, str(tmp_path / "mine.json"))
    assert zoo_bench.default_out() == tmp_path / "mine.json"


def test_select_prefers_this_machine_and_says_where(tmp_path, monkeypatch):
    # a machine of its own: the shipped figures may come from one labelled like this one
    monkeypatch.setattr(zoo_select, "cpu_label", lambda: "2-core CPU (a test machine")
    from od.zoo_bench import write_speeds
    monkeypatch.setenv("OD_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(zoo_select.SPEEDS_ENV, raising=False)
    user = write_speeds([_s("retinanet_mobilenetv2_coco", 12.0, machine="my GPU box")],
                        zoo_select.user_speeds_path())
    assert user == tmp_path / "zoo_speeds.json"
    speeds = {r.name: r for r in zoo_select.load_speeds() if r.batch == 1}
    mine = speeds["retinanet_mobilenetv2_coco"]
    assert mine.latency_ms == 12.0 and mine.origin == zoo_select.HERE  # beats the shipped figure
    other = speeds["retinanet_resnet50_fpn_coco"]
    assert other.origin == zoo_select.ELSEWHERE  # only shipped: another machine
    line = zoo_select.describe(zoo.get("retinanet_mobilenetv2_coco"))
    assert "12.0 ms/image" in line and "my GPU box = this machine" in line
    assert "mixes machines" in line                             # the rest is from elsewhere
    assert "another machine" in zoo_select.describe(zoo.get("retinanet_resnet50_fpn_coco"))
    assert "[this machine]" in zoo_select.list_table()


def test_cli_select_prints_name_then_origin(tmp_path, monkeypatch, capsys):
    # a machine of its own: the shipped figures may come from one labelled like this one
    monkeypatch.setattr(zoo_select, "cpu_label", lambda: "2-core CPU (a test machine")
    from od.cli import main
    monkeypatch.setenv("OD_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(zoo_select.SPEEDS_ENV, raising=False)
    assert main(["zoo", "select", "--max-latency-ms", "40"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "retinanet_mobilenetv2_coco"
    assert "measured on" in err and "another machine" in err


# ---- Faster R-CNN through the zoo (issue 14) -------------------------------------------------
def test_cli_select_across_architectures_says_which_ap_has_a_checkpoint(tmp_path, capsys):
    from od.cli import main
    from od.zoo_bench import write_speeds
    speeds = write_speeds([_s("retinanet_mobilenetv2_coco", 20.0),
                           _s("retinanet_resnet50_fpn_coco", 900.0),
                           _s("fasterrcnn_resnet50_fpn_imagenet", 1500.0),
                           _s("fasterrcnn_mobilenetv2_fpn_imagenet", 90.0)], tmp_path / "s.json")
    sp = ["--speeds", str(speeds)]
    assert main(["zoo", "select", "--max-latency-ms", "2000", *sp]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "fasterrcnn_resnet50_fpn_imagenet"   # 42.3 > 36.8, both fit
    assert "no COCO checkpoint published" in err and "Mask R-CNN R50-FPN" in err
    ranked = err.split("best first:\n", 1)[1].splitlines()
    assert [r.split()[1] for r in ranked] == ["fasterrcnn_resnet50_fpn_imagenet",
                                              "retinanet_resnet50_fpn_coco",
                                              "retinanet_mobilenetv2_coco"]
    assert "no COCO checkpoint" in ranked[0] and "no COCO" not in ranked[1]
    assert main(["zoo", "select", "--max-latency-ms", "2000", "--coco-checkpoint-only",
                 *sp]) == 0
    assert capsys.readouterr().out.strip() == "retinanet_resnet50_fpn_coco"
    assert main(["zoo", "select", "--min-ap", "0", "--architecture", "retinanet", *sp]) == 0
    assert capsys.readouterr().out.strip() == "retinanet_mobilenetv2_coco"
    assert main(["zoo", "select", "--max-latency-ms", "500", "--architecture", "faster_rcnn",
                 *sp]) == 2
    assert "want of a published COCO AP: fasterrcnn_mobilenetv2_fpn_imagenet" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        main(["zoo", "select", "--min-ap", "1", "--architecture", "ssd", *sp])
    assert ei.value.code == 2 and "invalid choice: 'ssd'" in capsys.readouterr().err


def test_model_equals_frcnn_zoo_name_takes_its_config_and_backbone_checkpoint(
        server, tmp_path, monkeypatch):
    """`model=fasterrcnn_*_imagenet` builds the Faster R-CNN config with the ImageNet backbone as
    a backbone checkpoint. The MobileNetV2 backbone is fetched from the 127.0.0.1 server (its zoo
    URL pointed there) and restores into the Faster R-CNN backbone."""
    from od import checkpoints, config, experiment
    from od import download as dl_mod
    from tests.conftest import CONFIGS, SHARED

    cfg = config.load(CONFIGS / "retinanet_mobilenetv2_fpn_256.yaml",
                      overrides=["model=fasterrcnn_resnet50_fpn_imagenet"])
    ref = config.load(CONFIGS / "fasterrcnn_resnet50_fpn_coco.yaml")
    assert cfg.model == ref.model and cfg.model.architecture == "faster_rcnn"
    assert cfg.train.fine_tune_checkpoint == "fasterrcnn_resnet50_fpn_imagenet"
    assert cfg.train.fine_tune_checkpoint_type == "backbone"

    name = "fasterrcnn_mobilenetv2_fpn_imagenet"
    cfg = config.load(overrides=[f"model={name}", "model.num_classes=4"])
    ref = config.load(CONFIGS / "fasterrcnn_mobilenetv2_fpn_256.yaml",
                      overrides=["model.num_classes=4"])
    assert cfg.model == ref.model
    assert (cfg.train.fine_tune_checkpoint, cfg.train.fine_tune_checkpoint_type) == (name,
                                                                                     "backbone")
    exp = experiment.to_experiment(cfg)
    assert type(exp.task).__name__ == "MaskRCNNTask"
    assert exp.task.init_checkpoint == name and exp.task.init_checkpoint_modules == ["backbone"]

    weights = SHARED / "weights" / "mobilenet_v2_1.0_imagenet"
    if not weights.is_dir():
        pytest.skip("../shared is not present")
    for suffix in (".index", ".data-00000-of-00001"):
        server.files[f"/mnv2/ckpt-180648{suffix}"] = \
            (weights / f"mobilenet_v2_1.0_imagenet{suffix}").read_bytes()
    entry = dataclasses.replace(zoo.get(name), url=server.url + "/mnv2/ckpt-180648")
    monkeypatch.setattr(dl_mod, "get", lambda n: entry if n == name else zoo.get(n))
    monkeypatch.setenv(dl_mod.CACHE_ENV, str(tmp_path / "cache"))
    prefix = checkpoints.resolve(name, progress=False)
    assert prefix == str(tmp_path / "cache" / name / "ckpt-180648")
    assert [p for p, _ in server.requests] == ["/mnv2/ckpt-180648.index",
                                               "/mnv2/ckpt-180648.data-00000-of-00001"]
    assert checkpoints.resolve(name, progress=False) == prefix and len(server.requests) == 2

    import tensorflow as tf
    from od import model as model_lib
    small = config.set_key(cfg, "model.input_size", 64)
    net = model_lib.build_model(small)
    tf.train.Checkpoint(backbone=net.backbone).read(prefix).assert_existing_objects_matched()
