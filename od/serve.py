"""``od serve``: an exported detector behind TF Serving's REST API, with dynamic batching.

A Starlette app served by uvicorn. Paths and bodies are TF Serving's (and the cloud predict API's)::

    GET  /healthz                                   {"status": "ok"}
    GET  /v1/models/NAME                            model status (version "1", AVAILABLE)
    GET  /v1/models/NAME/metadata                   signature: input/output names, dtypes, shapes
    POST /v1/models/NAME:predict                    (also /v1/models/NAME/versions/1:predict and
    POST /v1/projects/P/models/NAME/versions/V:predict)

Predict body (``od.serve_io.parse_predict``): row format ``{"instances": [ROW, ...]}`` where a ROW
is ``{"b64": ...}``, ``{"image": {"b64": ...}}``, ``{"image_bytes": {"b64": ...}, "key": ...}`` or
a uint8 ``[H][W][3]`` nested list, or columnar ``{"inputs": [ROW, ...]}`` / ``{"inputs":
{"image_bytes": [...], "key": [...]}}``; optional ``"min_score"`` in the body or the query.
Encoded images are decoded as ``od detect`` decodes files (EXIF rotation, alpha on black).
Answer: ``{"predictions": [{"detection_boxes": [[ymin, xmin, ymax, xmax], ...] normalised to the
image, "detection_scores", "detection_classes" (label-map ids), "detection_class_names",
"num_detections", "key" (if given)}]}`` (columnar: ``{"outputs": {name: [per instance]}}``).

Dynamic batching: images wait in a bounded asyncio queue; one batcher task takes the first, then
whatever else is queued, and waits up to ``batch_timeout_ms`` for more only while other requests
are being read (a lone request runs at once), up to ``max_batch`` images, and runs them as one
batch on the single model thread (never on the event loop). A full queue answers 503 at once.
Errors are TF Serving's ``{"error": "..."}``: 400 bad request, 404 unknown model or path, 405 wrong
method, 503 busy. SIGTERM: uvicorn stops accepting, in-flight requests finish, exit status 0.
"""
from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys
from dataclasses import dataclass

import numpy as np

from od.errors import OdError
from od.serve_batch import FORMATS, BatchModel, Batcher, Busy  # noqa: F401 (FORMATS: API)
from od.serve_io import BadRequest, parse_predict, prediction

VERSION = "1"
#: A request body up to this size that finds the model idle is parsed on the event loop
#: (``make_app``).
INLINE_PARSE_BYTES = 1 << 20


@dataclass(frozen=True)
class ServeConfig:
    """``od serve`` options (CLI flags of the same names)."""

    model: str
    name: str = "default"
    host: str = "127.0.0.1"
    port: int = 8501
    format: str = "saved_model"
    max_batch: int = 8
    batch_timeout_ms: float = 5.0
    max_body_mb: float = 20.0
    queue_size: int = 64


# ---- the app -----------------------------------------------------------------------------------
_PREDICT = re.compile(r"^/v1/(?:models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?|"
                      r"projects/[^/:]+/models/(?P<cname>[^/:]+)/versions/[^/:]+):predict$")
_STATUS = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?"
                     r"(?P<metadata>/metadata)?$")


def make_app(model: BatchModel, config: ServeConfig, on_ready=None):
    """The Starlette app serving ``model`` under ``config.name`` (module doc).

    ``on_ready()`` is called once the batcher runs (startup logging)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    state: dict = {}
    limit = int(config.max_body_mb * 1024 * 1024)

    def error(status: int, message: str, **headers) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    def unknown(name: str) -> JSONResponse:
        return error(404, f"Servable not found for request: model {name!r}; this server serves "
                          f"{config.name!r} (od serve --name).")

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        too_big = BadRequest(f"request body is larger than the {config.max_body_mb:g} MB limit "
                             "(--max-body-mb); send fewer or smaller images per request.")
        if declared.isdigit() and int(declared) > 4 * limit:
            raise too_big
        chunks, size = [], 0
        async for chunk in request.stream():  # read it all, so the client gets the answer
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
        if size > limit:
            raise too_big
        return b"".join(chunks)

    async def predict(request: Request, name: str, version: str | None) -> JSONResponse:
        if name != config.name:
            return unknown(name)
        if version is not None and version != VERSION:
            return error(404, f"Servable not found for request: version {version!r} of model "
                              f"{name!r}; the only version is {VERSION}.")
        batcher = state["batcher"]
        with batcher.arriving():
            body = await body_of(request)
            args = (body, request.query_params.get("min_score"), config.queue_size)
            # With the model idle, a small body (a camera frame or two) is parsed right here: a hop
            # to a worker thread and back costs more than decoding it, and nothing else waits for
            # the loop. Under load, parsing goes to worker threads so the loop keeps batching.
            parsed = (parse_predict(*args) if len(body) <= INLINE_PARSE_BYTES and batcher.idle
                      else await run_in_threadpool(parse_predict, *args))
            futures = batcher.submit(parsed.images)
        dets = await asyncio.gather(*futures)
        lm = model.label_map
        preds = [prediction(d.above(parsed.min_score), lm, k) for d, k in zip(dets, parsed.keys)]
        if not parsed.columnar:
            return JSONResponse({"predictions": preds})
        names = dict.fromkeys(k for p in preds for k in p)
        return JSONResponse({"outputs": {n: [p.get(n) for p in preds] for n in names}})

    async def dispatch(request: Request) -> JSONResponse:
        path, method = request.url.path, request.method
        m = _PREDICT.match(path)
        if m:
            if method != "POST":
                return error(405, f"{method} {path}: predict takes POST.", allow="POST")
            try:
                return await predict(request, m["name"] or m["cname"], m["version"])
            except BadRequest as e:
                return error(400, str(e))
            except Busy as e:
                return error(503, str(e))
            except Exception as e:  # noqa: BLE001 - the model failed on this batch; keep serving
                return error(500, f"the model failed on this request ({type(e).__name__}: {e}).")
        m = _STATUS.match(path)
        if m:
            if method != "GET":
                return error(405, f"{method} {path}: model status and metadata take GET.",
                             allow="GET")
            if m["name"] != config.name:
                return unknown(m["name"])
            if m["version"] not in (None, VERSION):
                return error(404, f"version {m['version']!r} of model {m['name']!r} not found; "
                                  f"the only version is {VERSION}.")
            spec = {"name": config.name, "signature_name": "", "version": VERSION}
            if m["metadata"]:
                return JSONResponse({"model_spec": spec, "metadata": {"signature_def": {
                    "signature_def": state["signature"]}}})
            return JSONResponse({"model_version_status": [{
                "version": VERSION, "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""}}]})
        return error(404, f"{path}: no such path; use /v1/models/{config.name}[:predict|/metadata]"
                          " or /healthz.")

    async def healthz(request: Request) -> JSONResponse:
        if request.method != "GET":
            return error(405, f"{request.method} /healthz: use GET.", allow="GET")
        b = state["batcher"]
        return JSONResponse({"status": "ok", "model": config.name, "batches": b.batches,
                             "images": b.images})

    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return error(404, f"{request.url.path}: no such path; use /v1/models/{config.name}"
                              "[:predict|/metadata] or /healthz.")
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        state["signature"] = model.signature()
        state["batcher"] = Batcher(model, config.max_batch, config.batch_timeout_ms / 1000.0,
                                   config.queue_size)
        if on_ready:
            on_ready()
        try:
            yield
        finally:
            await state["batcher"].close()

    methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    return Starlette(routes=[Route("/healthz", healthz, methods=methods),
                             Route("/v1/{rest:path}", dispatch, methods=methods)],
                     exception_handlers={HTTPException: http_error}, lifespan=lifespan)


def _check(config: ServeConfig) -> None:
    if config.max_batch < 1 or config.queue_size < config.max_batch:
        raise OdError(f"--max-batch {config.max_batch} / --queue-size {config.queue_size}: need "
                      "max-batch >= 1 and queue-size >= max-batch.")
    if config.batch_timeout_ms < 0 or config.max_body_mb <= 0:
        raise OdError(f"--batch-timeout-ms {config.batch_timeout_ms:g} must be >= 0 and "
                      f"--max-body-mb {config.max_body_mb:g} > 0.")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", config.name):
        raise OdError(f"--name {config.name!r}: use letters, digits, '_', '-', '.'.")


def listen(host: str, port: int) -> socket.socket:
    """The server's listening TCP socket on ``host``:``port`` (0: a free port), with
    ``TCP_NODELAY``, which the connections it accepts inherit: without it every response after the
    first on a keep-alive connection waits ~40 ms (Nagle's algorithm against the client's delayed
    ACK, since uvicorn writes a response's headers and body separately; measured: GET /healthz
    44 ms → 1 ms). Raises OdError when the address cannot be bound (port in use)."""
    try:
        sock = socket.create_server((host, port), reuse_port=False)
    except OSError as e:
        raise OdError(f"cannot listen on {host}:{port} ({e.strerror}); choose "
                      "another --port or stop the process using it.") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def serve(config: ServeConfig, log=print) -> int:
    """Load the model, bind ``host:port`` (0: a free port), serve until SIGTERM or Ctrl-C.

    Logs one line with the URL once the server is ready. Returns 0 after a graceful stop.
    Raises:
      OdError: bad options, an export folder that cannot be served, or a port in use.
    """
    import uvicorn

    from od import logs

    _check(config)
    with logs.native_stderr(None):  # TensorFlow's/LiteRT's C++ start-up lines: not the console
        model = BatchModel(config.model, config.format)
        model.run([np.zeros((32, 32, 3), np.uint8)])  # warm up before serving
    sock = listen(config.host, config.port)
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}"

    def ready() -> None:
        log(f"od serve: model {config.name!r} ({config.format}, max batch {config.max_batch}, "
            f"batch timeout {config.batch_timeout_ms:g} ms) at {url}/v1/models/{config.name}"
            f":predict ; health {url}/healthz", flush=True)

    app = make_app(model, config, ready)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           timeout_graceful_shutdown=30, lifespan="on"))
    # uvicorn re-raises the stopping signal after its graceful shutdown; a no-op SIGTERM handler
    # makes that a normal return (exit status 0) instead of death by signal.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    if not server.started:
        raise OdError(f"od serve on {url} failed to start; see the messages above.")
    print("od serve: stopped", file=sys.stderr, flush=True)
    return 0
