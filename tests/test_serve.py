"""``od serve`` (TF Serving REST API, dynamic batching) and the TensorFlow-free TFLite runner, on
the shared tiny trained run (tests/conftest.py).

The run is copied with ``model.score_threshold=0`` before export: after 4 steps every score is
about 0.01, under the default threshold, and a comparison of zero detections would prove nothing.
One server subprocess (loopback, a free port) serves the module, the SIGTERM test starts its own;
every request has a timeout. The module took 14 minutes with the 2-core CPU shared (load ~10),
most of it training and exporting the tiny run.
"""
import base64
import http.client
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT

TIMEOUT = 120  # seconds, any one request (the machine may be heavily loaded)


@pytest.fixture(scope="module")
def images(tiny_run):
    """Three (file bytes, decoded uint8 RGB) pairs: two raw images and a 50x70 PNG."""
    from od.detect import load_image

    root, _ = tiny_run
    files = sorted((root / "raw" / "images").iterdir())[:2]
    pairs = [(f.read_bytes(), load_image(f)) for f in files]
    small = np.asarray(Image.fromarray(pairs[0][1]).resize((70, 50)))
    pairs.append((_png(small), small))
    return pairs


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Server:
    def __init__(self, proc, port, log):
        self.proc, self.port, self.log = proc, port, log

    def call(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        return r.status, (json.loads(data) if data else None)

    def predict(self, body, path="/v1/models/tiny:predict"):
        return self.call("POST", path, body, {"Content-Type": "application/json"})


def _start(export_dir, tmp_path, *args):
    """``od serve`` on a free port; waits (bounded) for its startup line."""
    log = tmp_path / "serve.log"
    out = tmp_path / "serve.out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                  "")])}
    with open(out, "wb") as o, open(log, "wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "od.cli", "serve", "--model",
                                 str(export_dir), "--name", "tiny", "--port", "0", *args],
                                stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=env)
    deadline = time.time() + 300
    while time.time() < deadline:
        text = out.read_text()
        if "od serve:" in text:
            port = int(text.split("http://127.0.0.1:")[1].split("/")[0])
            return Server(proc, port, log), text
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"od serve did not start: {out.read_text()}\n{log.read_text()}")


@pytest.fixture(scope="module")
def server(export_dir, tmp_path_factory):
    srv, _ = _start(export_dir, tmp_path_factory.mktemp("serve"), "--max-body-mb", "1")
    try:
        yield srv
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
        srv.proc.wait(timeout=60)


@pytest.mark.slow
def test_startup_health_status_metadata(server):
    assert server.call("GET", "/healthz")[0] == 200
    status, body = server.call("GET", "/v1/models/tiny")
    assert status == 200 and body["model_version_status"][0]["state"] == "AVAILABLE"
    status, body = server.call("GET", "/v1/models/tiny/metadata")
    sig = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert status == 200 and body["model_spec"]["name"] == "tiny"
    (inp,) = sig["inputs"].values()
    assert inp["dtype"] == "DT_UINT8" and len(inp["tensor_shape"]["dim"]) == 4
    assert {"detection_boxes", "detection_scores", "detection_classes",
            "num_detections"} <= set(sig["outputs"])
    log = server.log.read_text()
    assert len(log.splitlines()) <= 3, f"library noise on the server's stderr:\n{log}"


def _assert_same(pred: dict, det, key=None):
    assert pred["num_detections"] == len(det) > 0
    np.testing.assert_allclose(pred["detection_boxes"], det.boxes, atol=1e-4)
    np.testing.assert_allclose(pred["detection_scores"], det.scores, atol=1e-4)
    assert pred["detection_classes"] == det.class_ids.tolist()
    assert len(pred["detection_class_names"]) == len(det)
    assert pred.get("key") == key


@pytest.mark.slow
def test_every_body_form_equals_detector(server, export_dir, images):
    from od.detect import Detector

    detector = Detector(export_dir)
    want = [detector(a) for _, a in images]
    (raw0, a0), (raw1, _), (png2, _) = images
    forms = [
        ({"instances": [{"b64": _b64(raw0)}, {"b64": _b64(raw1)}, {"b64": _b64(png2)}]},
         [0, 1, 2], [None] * 3),
        ({"instances": [{"image": {"b64": _b64(raw1)}}]}, [1], [None]),
        ({"instances": [{"image_bytes": {"b64": _b64(raw0)}, "key": "id-7"},
                        {"image_bytes": {"b64": _b64(png2)}, "key": "id-8"}]}, [0, 2],
         ["id-7", "id-8"]),
        ({"instances": [a0.tolist()]}, [0], [None]),
        ({"instances": [{"b64": _b64(raw1), "key": 3}]}, [1], [3]),
    ]
    for body, idx, keys in forms:
        status, answer = server.predict({**body, "min_score": 0})
        assert status == 200, answer
        assert len(answer["predictions"]) == len(idx)
        for pred, i, k in zip(answer["predictions"], idx, keys):
            _assert_same(pred, want[i], k)
    # columnar, the versioned and the cloud paths, min_score in the query
    body = {"inputs": {"image_bytes": [{"b64": _b64(raw0)}, {"b64": _b64(raw1)}],
                       "key": ["a", "b"]}}
    status, answer = server.predict(body, "/v1/models/tiny/versions/1:predict?min_score=0")
    assert status == 200, answer
    out = answer["outputs"]
    for j, i in enumerate([0, 1]):
        _assert_same({n: out[n][j] for n in out}, want[i], "ab"[j])
    status, answer = server.predict({"inputs": [{"b64": _b64(raw1)}]},
                                    "/v1/projects/p/models/tiny/versions/v3:predict?min_score=0")
    assert status == 200
    _assert_same({n: v[0] for n, v in answer["outputs"].items()}, want[1])
    # the default min_score keeps everything; a high one keeps what Detector keeps
    status, answer = server.predict({"instances": [{"b64": _b64(raw0)}], "min_score": 0.011})
    assert answer["predictions"][0]["num_detections"] == len(want[0].above(0.011))


def _bomb_png() -> bytes:
    """A valid PNG whose header claims 10000 x 9000 pixels (over Pillow's bomb limit)."""
    png = bytearray(_png(np.zeros((2, 2, 3), np.uint8)))
    ihdr = png.index(b"IHDR")
    png[ihdr + 4:ihdr + 12] = (10000).to_bytes(4, "big") + (9000).to_bytes(4, "big")
    crc = zlib.crc32(bytes(png[ihdr:ihdr + 17]))
    png[ihdr + 17:ihdr + 21] = crc.to_bytes(4, "big")
    return bytes(png)


BAD = [  # (method, path, body, status, words in the error)
    ("POST", "/v1/models/tiny:predict", "{not json", 400, "malformed JSON"),
    ("POST", "/v1/models/tiny:predict", b"\xff\xfe\x00", 400, "malformed JSON"),
    ("POST", "/v1/models/tiny:predict", "[1, 2]", 400, "JSON object"),
    ("POST", "/v1/models/tiny:predict", {"signature_name": "x"}, 400, "\"instances\""),
    ("POST", "/v1/models/tiny:predict", {"instances": [], "inputs": []}, 400, "exactly one"),
    ("POST", "/v1/models/tiny:predict", {"instances": []}, 400, "non-empty"),
    ("POST", "/v1/models/tiny:predict", {"instances": "x"}, 400, "non-empty list"),
    ("POST", "/v1/models/tiny:predict", {"instances": [{"b64": "@@@"}]}, 400,
     "instances[0]: invalid base64"),
    ("POST", "/v1/models/tiny:predict", {"instances": [{"b64": _b64(b"hello")}]}, 400,
     "instances[0]: cannot decode image"),
    ("POST", "/v1/models/tiny:predict", {"instances": [{"b64": _b64(_bomb_png())}]}, 400,
     "too large"),
    ("POST", "/v1/models/tiny:predict", {"instances": [[[1, 2], [3, 4]]]}, 400, "[H][W][3]"),
    ("POST", "/v1/models/tiny:predict", {"instances": [[[[300, 0, 0]]]]}, 400, "0..255"),
    ("POST", "/v1/models/tiny:predict", {"instances": [{"photo": 1}]}, 400, "image field"),
    ("POST", "/v1/models/tiny:predict?min_score=abc", {"instances": [[[[0, 0, 0]]]]}, 400,
     "min_score"),
    ("POST", "/v1/models/tiny:predict", {"instances": [[[[0, 0, 0]]]], "min_score": 2}, 400,
     "min_score"),
    ("POST", "/v1/models/tiny:predict", '{"instances": ["' + "A" * 1_300_000 + '"]}', 400,
     "--max-body-mb"),
    ("POST", "/v1/models/other:predict", {"instances": [[[[0, 0, 0]]]]}, 404, "'other'"),
    ("POST", "/v1/models/tiny/versions/2:predict", {"instances": [[[[0, 0, 0]]]]}, 404,
     "version"),
    ("GET", "/v1/models/tiny:predict", None, 405, "POST"),
    ("DELETE", "/v1/models/tiny", None, 405, "GET"),
    ("GET", "/v2/anything", None, 404, "no such path"),
]


@pytest.mark.slow
def test_bad_requests_get_their_error_and_the_server_goes_on(server, images):
    good = {"instances": [{"b64": _b64(images[0][0]), "key": "ok"}]}
    assert len(BAD) >= 20
    for method, path, body, status, words in BAD:
        got, answer = server.call(method, path, body, {"Content-Type": "application/json"})
        assert (got, words in answer.get("error", "")) == (status, True), (path, body, answer)
        got, answer = server.predict(good)
        assert got == 200 and answer["predictions"][0]["key"] == "ok"


@pytest.mark.slow
def test_concurrent_clients_get_their_own_keys(server, images):
    raw = [_b64(r) for r, _ in images]
    _, before = server.call("GET", "/healthz")

    def client(c):
        errors = []
        for i in range(25):
            key = f"client{c}-{i}"
            status, answer = server.predict({"instances": [{"b64": raw[(c + i) % 3], "key": key}]})
            if status != 200 or answer["predictions"][0]["key"] != key:
                errors.append((status, answer))
        return errors

    with ThreadPoolExecutor(8) as pool:
        errors = [e for errs in pool.map(client, range(8), timeout=600) for e in errs]
    assert errors == []
    _, after = server.call("GET", "/healthz")
    images_run = after["images"] - before["images"]
    batches = after["batches"] - before["batches"]
    assert images_run == 200 and batches < 200, after  # some requests shared a batch


@pytest.mark.slow
def test_sigterm_drains_in_flight_requests_then_exits_0(export_dir, images, tmp_path):
    srv, _ = _start(export_dir, tmp_path)
    try:
        body = json.dumps({"instances": [{"b64": _b64(images[0][0]), "key": "late"}]}).encode()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        conn.putrequest("POST", "/v1/models/tiny:predict")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        conn.send(body[:100])  # in flight: headers and part of the body received
        time.sleep(1.0)
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        conn.send(body[100:])
        r = conn.getresponse()
        answer = json.loads(r.read())
        conn.close()
        assert r.status == 200 and answer["predictions"][0]["key"] == "late"
        assert srv.proc.wait(timeout=120) == 0, srv.log.read_text()
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait(timeout=60)


# ---- the TFLite runner ---------------------------------------------------------------------
BLOCK = '''import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "od", "tf_keras", "keras"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, _Block())
'''


@pytest.mark.slow
def test_tflite_runner_without_tensorflow_equals_detector(export_dir, images, tmp_path):
    from od.detect import Detector

    assert (export_dir / "labels.txt").read_text().splitlines()[0] == "???"
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "sitecustomize.py").write_text(BLOCK)
    board = tmp_path / "board"  # the export folder copied to the board
    shutil.copytree(export_dir, board, ignore=shutil.ignore_patterns("saved_model"))
    pics = tmp_path / "pics"
    pics.mkdir()
    for k, (data, _) in enumerate(images):
        (pics / f"im{k}.png").write_bytes(data)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "block")}
    blocked = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env,
                             capture_output=True, timeout=TIMEOUT, cwd=tmp_path)
    assert blocked.returncode != 0 and b"blocked" in blocked.stderr
    r = subprocess.run([sys.executable, str(board / "detect_tflite.py"), "--model",
                        str(board / "model_int8.tflite"), "--images", str(pics), "--out",
                        str(tmp_path / "out"), "--min-score", "0"], env=env, capture_output=True,
                       text=True, timeout=TIMEOUT, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert got["skipped"] == []  # the form od detect writes
    got = got["images"]
    assert [g["image"] for g in got] == ["im0.png", "im1.png", "im2.png"]
    assert all((tmp_path / "out" / f"im{k}.jpg").is_file() for k in range(3))
    detector = Detector(export_dir, format="tflite_int8")
    for g, (_, a) in zip(got, images):
        det = detector(a)
        assert (g["width"], g["height"]) == (a.shape[1], a.shape[0])
        # the 4-step int8 model puts every box in the background class (dropped by both), so the
        # values are compared before that drop in test_tflite_runner_raw_outputs_equal_od_tflite
        assert len(g["detections"]) == len(det)
        np.testing.assert_allclose(np.reshape([d["box"] for d in g["detections"]], (-1, 4)),
                                   det.boxes, atol=1e-4)
        np.testing.assert_allclose([d["score"] for d in g["detections"]], det.scores, atol=1e-4)
        assert [d["class_id"] for d in g["detections"]] == det.class_ids.tolist()


@pytest.mark.slow
def test_tflite_runner_strip_collisions_and_a_broken_image(export_dir, images, tmp_path):
    """A 3x400 strip is padded as od pads it, a.jpg/a.png get their own outputs, a broken file
    is listed under skipped and the others still run."""
    from od.detect import Detector

    runner = _runner()
    pics = tmp_path / "pics"
    pics.mkdir()
    strip = np.asarray(Image.fromarray(images[0][1]).resize((400, 3)))
    Image.fromarray(strip).save(pics / "strip.png")
    Image.fromarray(images[1][1]).save(pics / "a.png")
    Image.fromarray(images[2][1]).save(pics / "a.jpg", quality=95)
    (pics / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    out = tmp_path / "out"
    assert runner.main(["--model", str(export_dir / "model_int8.tflite"), "--images", str(pics),
                        "--out", str(out), "--min-score", "0"]) == 0
    doc = json.loads((out / "detections.json").read_text())
    assert [s["image"] for s in doc["skipped"]] == ["broken.jpg"]
    assert [(g["image"], g.get("output")) for g in doc["images"]] == [
        ("a.jpg", "a_jpg.jpg"), ("a.png", "a_png.jpg"), ("strip.png", None)]
    assert sorted(p.name for p in out.glob("*.jpg")) == ["a_jpg.jpg", "a_png.jpg", "strip.jpg"]
    got = doc["images"][2]
    det = Detector(export_dir, format="tflite_int8")(strip)
    assert (got["width"], got["height"]) == (400, 3) and len(got["detections"]) == len(det)
    np.testing.assert_allclose(np.reshape([d["box"] for d in got["detections"]], (-1, 4)),
                               det.boxes, atol=1e-4)


# ---- no model needed -----------------------------------------------------------------------
class _FakeModel:
    """Records the batch sizes it is given; each image's answer is its own first pixel."""

    def __init__(self):
        self.sizes, self.gate = [], threading.Event()

    def run(self, images):
        self.gate.wait(10)
        self.sizes.append(len(images))
        return [int(im[0, 0, 0]) for im in images]


def test_batcher_batches_up_to_max_and_answers_busy_when_full():
    import asyncio

    from od.serve import Batcher, Busy

    async def scenario():
        model = _FakeModel()
        batcher = Batcher(model, max_batch=3, timeout_s=5, queue_size=4)
        with batcher.arriving():  # another request is being read: the batch waits for it
            first = batcher.submit([np.full((2, 2, 3), 9, np.uint8)])
            await asyncio.sleep(0.01)  # the batcher took it and waits (at most 5 s) for more
            futures = batcher.submit([np.full((2, 2, 3), v, np.uint8) for v in (1, 2)])
        await asyncio.sleep(0.1)  # batch [9, 1, 2] is now running (held by the gate)
        futures += batcher.submit([np.full((2, 2, 3), v, np.uint8) for v in (3, 4, 5, 6)])
        with pytest.raises(Busy, match="--queue-size"):
            batcher.submit([np.zeros((2, 2, 3), np.uint8)])
        model.gate.set()
        got = await asyncio.wait_for(asyncio.gather(*first, *futures), 10)
        await batcher.close()
        return model.sizes, got, (batcher.batches, batcher.images)

    sizes, got, counts = asyncio.run(scenario())
    assert got == [9, 1, 2, 3, 4, 5, 6]
    assert sizes == [3, 3, 1] and counts == (3, 7)


def test_batcher_runs_a_lone_request_without_waiting_for_the_timeout():
    """Nothing else queued or being read: the batch runs at once, not after --batch-timeout-ms;
    a request that was being read but never submitted (a bad request) ends the wait too."""
    import asyncio

    from od.serve import Batcher

    async def scenario():
        model = _FakeModel()
        model.gate.set()
        batcher = Batcher(model, max_batch=8, timeout_s=60, queue_size=8)
        t = time.perf_counter()
        alone = await asyncio.wait_for(asyncio.gather(*batcher.submit(
            [np.full((2, 2, 3), 5, np.uint8)])), 30)
        lone_s = time.perf_counter() - t
        t = time.perf_counter()
        with batcher.arriving():  # e.g. a request that turns out malformed (400)
            futures = batcher.submit([np.full((2, 2, 3), 6, np.uint8)])
            await asyncio.sleep(0.05)
        got = await asyncio.wait_for(asyncio.gather(*futures), 30)
        abandoned_s = time.perf_counter() - t
        await batcher.close()
        return alone + got, model.sizes, lone_s, abandoned_s

    got, sizes, lone_s, abandoned_s = asyncio.run(scenario())
    assert got == [5, 6] and sizes == [1, 1]
    assert lone_s < 20 and abandoned_s < 20  # far below the 60 s timeout, even on a loaded CPU


def test_listening_socket_has_tcp_nodelay_and_a_taken_port_is_an_od_error():
    """Connections inherit TCP_NODELAY from the listening socket (else every keep-alive response
    after the first waits for the client's delayed ACK, ~40 ms); a port in use is an OdError
    naming it."""
    import socket

    from od.errors import OdError
    from od.serve import listen

    sock = listen("127.0.0.1", 0)
    try:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        port = sock.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        conn, _ = sock.accept()
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        conn.close()
        client.close()
        with pytest.raises(OdError, match=f"cannot listen on 127.0.0.1:{port}"):
            listen("127.0.0.1", port)
    finally:
        sock.close()


def test_parse_predict_forms_and_errors():
    from od.detections import Detections
    from od.serve_io import BadRequest, parse_predict, prediction

    png = _b64(_png(np.full((4, 6, 3), 7, np.uint8)))
    p = parse_predict(json.dumps({"instances": [{"b64": png, "key": "k"}, [[[1, 2, 3]]],
                                                {"image": {"b64": png}}]}).encode(), "0.25")
    assert [im.shape for im in p.images] == [(4, 6, 3), (1, 1, 3), (4, 6, 3)]
    assert p.keys == ["k", None, None] and p.min_score == 0.25 and not p.columnar
    assert int(p.images[0][0, 0, 0]) == 7
    p = parse_predict(json.dumps({"inputs": {"image_bytes": {"b64": png}, "key": 5}}).encode())
    assert p.columnar and p.keys == [5] and len(p.images) == 1
    with pytest.raises(BadRequest, match="at most 2"):
        parse_predict(json.dumps({"instances": [[[[0, 0, 0]]]] * 3}).encode(), max_instances=2)
    with pytest.raises(BadRequest, match=r"inputs.key must be a list of 1"):
        parse_predict(json.dumps({"inputs": {"image": [{"b64": png}], "key": [1, 2]}}).encode())
    det = Detections.make([[0.1, 0.2, 0.3, 0.4]], [0.5], [1], 6, 4)
    assert prediction(det, None, "x") == {
        "detection_boxes": [[pytest.approx(0.1), pytest.approx(0.2), pytest.approx(0.3),
                             pytest.approx(0.4)]], "detection_scores": [0.5],
        "detection_classes": [1], "detection_class_names": ["1"], "num_detections": 1,
        "key": "x"}


def test_runner_preprocessing_equals_od_tflite():
    """The runner's numpy resize/normalise/box mapping against Model Garden's (od.tflite)."""
    from od import tflite

    runner = _runner()
    rng = np.random.default_rng(0)
    for shape in [(64, 80, 3), (100, 37, 3), (50, 70, 3), (64, 64, 3), (13, 200, 3)]:
        image = rng.integers(0, 256, shape, np.uint8)
        want_x, want_info = tflite.preprocess(image, 64)
        got_x, got_info = runner.preprocess(image, 64)
        np.testing.assert_allclose(got_x, want_x, atol=2e-6)
        np.testing.assert_array_equal(got_info, want_info)
        boxes = rng.uniform(0, 1, (5, 4)).astype(np.float32)
        np.testing.assert_allclose(runner.to_image_boxes(boxes, got_info, 64),
                                   tflite.to_image_boxes(boxes, want_info, 64), atol=1e-6)


def _runner():
    """The runner od export writes (od/lite/detect_tflite.py), imported as a module."""
    import importlib.util

    from od import lite

    spec = importlib.util.spec_from_file_location("detect_tflite", lite.RUNNER)
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)
    return runner


@pytest.mark.slow
def test_tflite_runner_raw_outputs_equal_od_tflite(export_dir, images):
    """All K rows (background class included) of the runner's LiteRT run, its input and box
    mapping, against od.tflite's (TensorFlow's interpreter, Model Garden's preprocessing)."""
    from od import tflite

    runner = _runner()
    path = export_dir / "model_int8.tflite"
    mine, ref = runner.Detector(path), tflite.TFLiteModel(path)
    for _, a in images:
        x, info = runner.preprocess(a, mine.input_size)
        want_x, want_info = tflite.preprocess(a, ref.input_size)
        got, want = mine.raw(x), ref.raw(want_x)
        n = int(want["num_detections"][0])
        assert n > 0 and int(got["num_detections"][0]) == n
        np.testing.assert_allclose(got["detection_scores"], want["detection_scores"], atol=1e-4)
        np.testing.assert_array_equal(got["detection_classes"], want["detection_classes"])
        np.testing.assert_allclose(
            runner.to_image_boxes(got["detection_boxes"][0, :n], info, mine.input_size),
            tflite.to_image_boxes(want["detection_boxes"][0, :n], want_info, ref.input_size),
            atol=1e-4)
