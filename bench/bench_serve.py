"""Benchmark: ``od serve`` with and without dynamic batching against the in-process ``Detector``.

In one run, on the same images and the same export: images/s and p50/p99 latency of

- the in-process ``Detector`` (decode the JPEG + detect, one image after another): the baseline;
- ``od serve --max-batch 8 --batch-timeout-ms 5`` (batching on) and ``--max-batch 1`` (off), at
  concurrency 1, 4 and 16 (threads with one keep-alive connection each; every request one
  base64 JPEG, ``{"instances": [{"b64": ...}]}``).

Without ``--export`` a model is made first (not timed): synthetic images (od.synthetic) of
``--image-size``, the MobileNetV2-FPN RetinaNet of configs/retinanet_mobilenetv2_fpn_256.yaml at
``--input-size`` trained 2 steps from scratch, exported. Only
speed is measured, so an untrained model is as good as a trained one. Both servers run at once and
the measurements are interleaved, ``--repeats`` rounds, the best round of each kept (a shared CPU
makes single rounds noisy). Also measured: the SavedModel alone at batch 1 vs 8 (ms per image,
CPU cores kept busy: what batching can gain at most on this CPU), ``GET /healthz`` p50 (the
server's floor per request) and the load average at start and end. Prints the figures, a verdict
on the issue's two goals, and writes bench/out/serve.json.

Usage: python bench/bench_serve.py [--export EXPORT] [--input-size 256] [--requests 64] [--keep]
"""
from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def make_export(work: Path, input_size: int, image_size: tuple[int, int]) -> Path:
    from od import export, synthetic, train
    from od.data.convert import convert

    synthetic.generate(work / "raw", 16, size=image_size, seed=0)
    convert(work / "raw" / "annotations", work / "data", format="voc",
            images=work / "raw" / "images", split=(0.5, 0.25, 0.25), workers=1)
    train.fine_tune(ROOT / "configs" / "retinanet_mobilenetv2_fpn_256.yaml", work / "run", overrides=[
        f"data.train={work / 'data'}", f"model.input_size={input_size}", "train.batch_size=2",
        "train.fine_tune_checkpoint=",
        "train.steps=2", "train.steps_per_loop=1", "train.checkpoint_every=2",
        "train.warmup_steps=1"], progress=False)
    export.export(work / "run", work / "export")
    return work / "export"


def same_size(path: Path, size: tuple[int, int]) -> bytes:
    """The image resized to ``size`` (W, H) as a JPEG: one camera's frames, so that concurrent
    requests can share a batch (the server batches images of the same size together)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.open(path).convert("RGB").resize(size).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def stats(latencies: list[float], wall: float) -> dict:
    import numpy as np

    ms = np.asarray(latencies) * 1000.0
    return {"images_per_s": round(len(ms) / wall, 2), "p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p99_ms": round(float(np.percentile(ms, 99)), 1), "n": len(ms)}


def in_process_detector(export: Path, jpegs: list[bytes]):
    from od.data.images import decode_rgb
    from od.detect import Detector
    import numpy as np

    detector = Detector(export)
    detector(np.asarray(decode_rgb("warm-up", jpegs[0])))
    return detector


def in_process(detector, jpegs: list[bytes], n: int) -> dict:
    """Decode + detect, one image after another, in this process."""
    from od.data.images import decode_rgb
    import numpy as np

    lat, t0 = [], time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        detector(np.asarray(decode_rgb("image", jpegs[i % len(jpegs)])))
        lat.append(time.perf_counter() - t)
    return stats(lat, time.perf_counter() - t0)


def model_batch_gain(export: Path, jpegs: list[bytes], rounds: int = 3) -> dict:
    """The SavedModel alone (decoded images, in this process), batch 1 vs one batch of 8: ms per
    image and CPU cores kept busy (process CPU time / wall time), best of ``rounds``. Batching
    saves compute only where a batch of 1 leaves cores idle; its ms/img ratio is the most that
    the batching server can gain over the non-batching one."""
    from od.data.images import decode_rgb
    from od.serve import BatchModel
    import numpy as np
    import tensorflow as tf

    model = BatchModel(export)
    images = [np.asarray(decode_rgb("image", j)) for j in jpegs[:8]]
    model.run(images)
    single, batch = [], []
    for _ in range(rounds):
        for runs, out in (([[im] for im in images], single), ([images], batch)):
            t, c = time.perf_counter(), time.process_time()
            for b in runs:
                model.run(b)
            wall = time.perf_counter() - t
            out.append((wall * 1000 / len(images), (time.process_time() - c) / wall))
    b1, b8 = min(single), min(batch)
    n = len(images)
    return {"batch_1": round(b1[0], 1), f"batch_{n}": round(b8[0], 1),
            "max_gain": round(b1[0] / b8[0], 2),
            "cpu_cores_busy_batch_1": round(b1[1], 2), f"cpu_cores_busy_batch_{n}": round(b8[1], 2),
            "tf_threads_intra_inter": [tf.config.threading.get_intra_op_parallelism_threads(),
                                       tf.config.threading.get_inter_op_parallelism_threads()]}


def hop(port: int, n: int = 50) -> float:
    """p50 ms of ``GET /healthz`` on a keep-alive connection: the server's floor per request
    (HTTP, the event loop, no model), which a loaded CPU raises."""
    import numpy as np

    conn, lat = http.client.HTTPConnection("127.0.0.1", port, timeout=60), []
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        lat.append(time.perf_counter() - t)
    conn.close()
    return round(float(np.percentile(np.asarray(lat) * 1000, 50)), 2)


def start_server(export: Path, log: Path, *args) -> tuple[subprocess.Popen, int]:
    out = log.with_suffix(".out")
    with open(out, "wb") as o, open(log, "wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "od.cli", "serve", "--model", str(export),
                                 "--port", "0", *args], stdout=o, stderr=e,
                                stdin=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 900  # a loaded CPU can take minutes to import TF and load
    while time.time() < deadline and proc.poll() is None:
        text = out.read_text()
        if "od serve:" in text:
            return proc, int(text.split("http://127.0.0.1:")[1].split("/")[0])
        time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"od serve did not start: {log.read_text()}")


def load(port: int, bodies: list[bytes], concurrency: int, n: int) -> dict:
    """``n`` requests from ``concurrency`` threads, each with its own keep-alive connection."""
    lat, lock, counter, errors = [], threading.Lock(), iter(range(n)), []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            t = time.perf_counter()
            conn.request("POST", "/v1/models/default:predict", body=bodies[i % len(bodies)],
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            with lock:
                lat.append(time.perf_counter() - t)
                if r.status != 200:
                    errors.append(r.status)
        conn.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for f in [pool.submit(client) for _ in range(concurrency)]:
            f.result()
    return {**stats(lat, time.perf_counter() - t0), "errors": len(errors)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", help="export folder (default: make one, see module doc)")
    ap.add_argument("--input-size", type=int, default=256)
    ap.add_argument("--image-size", default="640x480", help="WxH of the generated images")
    ap.add_argument("--requests", type=int, default=64, help="requests per measurement")
    ap.add_argument("--concurrency", default="1,4,16")
    ap.add_argument("--repeats", type=int, default=2, help="rounds; the best round is kept")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work folder (generated model, images, server logs)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    try:
        run(a, work)
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def run(a, work: Path) -> None:
    w, h = (int(v) for v in a.image_size.split("x"))
    export = Path(a.export) if a.export else make_export(work, a.input_size, (w, h))
    images = sorted((work / "raw" / "images").glob("*")) if not a.export else []
    if not images:
        from od import synthetic
        synthetic.generate(work / "pics", 8, size=(w, h), seed=1)
        images = sorted((work / "pics" / "images").glob("*"))
    jpegs = [same_size(p, (w, h)) for p in images[:8]]
    bodies = [json.dumps({"instances": [{"b64": base64.b64encode(j).decode()}]}).encode()
              for j in jpegs]
    result = {"export": str(export), "cpus": os.cpu_count(), "requests": a.requests,
              "image_size": a.image_size, "repeats": a.repeats,
              "load_average_at_start": [round(v, 2) for v in os.getloadavg()]}
    print("load average (1, 5, 15 min) at start:", result["load_average_at_start"], flush=True)
    levels = [int(v) for v in a.concurrency.split(",")]
    servers = {}
    try:  # both servers up at once; measurements interleaved, best of --repeats (shared CPU)
        for mode, args in (("batching", ["--max-batch", "8", "--batch-timeout-ms", "5"]),
                           ("no_batching", ["--max-batch", "1", "--batch-timeout-ms", "0"])):
            servers[mode] = start_server(export, work / f"{mode}.log", *args)
            load(servers[mode][1], bodies, 4, 8)  # warm-up
        detector = in_process_detector(export, jpegs)
        runs: dict = {}
        for rep in range(a.repeats):
            runs.setdefault("in_process_detector", []).append(in_process(detector, jpegs,
                                                                         a.requests))
            for c in levels:
                for mode, (_, port) in servers.items():
                    runs.setdefault((mode, c), []).append(load(port, bodies, c, a.requests))
        result["healthz_p50_ms"] = {mode: hop(port) for mode, (_, port) in servers.items()}
        result["model_ms_per_image"] = model_batch_gain(export, jpegs)
        print("model alone, ms per image:", result["model_ms_per_image"], flush=True)
        print("GET /healthz p50 ms:", result["healthz_p50_ms"], flush=True)
        best = lambda rs: max(rs, key=lambda r: r["images_per_s"])  # noqa: E731
        result["in_process_detector"] = best(runs["in_process_detector"])
        print("in-process Detector:", result["in_process_detector"], flush=True)
        for mode in servers:
            for c in levels:
                result.setdefault(mode, {})[f"c{c}"] = r = best(runs[(mode, c)])
                print(f"{mode} concurrency {c}:", r, flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=120)
    top = max(int(v) for v in a.concurrency.split(","))
    result["throughput_ratio_batching_vs_not_at_c%d" % top] = round(
        result["batching"][f"c{top}"]["images_per_s"] /
        result["no_batching"][f"c{top}"]["images_per_s"], 2)
    p99 = None  # the c=1 goal is judged only when concurrency 1 was measured
    if "c1" in result["batching"]:
        p99 = result["p99_ratio_c1_batching_vs_in_process"] = round(
            result["batching"]["c1"]["p99_ms"] / result["in_process_detector"]["p99_ms"], 2)
    result["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    gain = result["model_ms_per_image"]["max_gain"]
    result["verdict"] = {
        "batching_goal_1.5x": result["throughput_ratio_batching_vs_not_at_c%d" % top] >= 1.5,
        "p99_goal_1.15x": None if p99 is None else p99 <= 1.15,
        "why": (f"the model alone runs a batch of 8 at {gain}x the per-image speed of batch 1 on "
                f"{os.cpu_count()} cores, so batching can gain at most about {gain}x here")}
    print(json.dumps({k: v for k, v in result.items() if "ratio" in k or "load" in k}))
    print("verdict:", json.dumps(result["verdict"]))
    out = ROOT / "bench" / "out" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
