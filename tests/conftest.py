import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CONFIGS = ROOT / "configs"

needs_shared = pytest.mark.skipif(not (SHARED / "data").is_dir(),
                                  reason="../shared (real datasets and weights) is not present")

# The tiny model the pipeline tests train: 64 px, 16-filter FPN/head, 4 steps of batch 4.
TINY = ["model.input_size=64", "model.fpn_filters=16", "model.head_filters=16",
        "model.head_convs=1", "train.batch_size=4", "train.steps=4", "train.steps_per_loop=2",
        "train.checkpoint_every=2", "train.warmup_steps=1"]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """24 generated 80x64 images (``root/raw``) converted with a 0.5/0.25/0.25 split
    (``root/data``) and the TINY model trained on them for 4 steps (``root/run``).

    Returns (root, TrainResult). Shared by the pipeline and TFLite tests (trained once)."""
    from od import synthetic, train
    from od.data.convert import convert

    root = tmp_path_factory.mktemp("pipe")
    synthetic.generate(root / "raw", 24, size=(80, 64), seed=3)
    convert(root / "raw" / "annotations", root / "data", format="voc",
            images=root / "raw" / "images", split=(0.5, 0.25, 0.25))
    result = train.fine_tune(CONFIGS / "quickstart_shapes_128.yaml", root / "run",
                             overrides=[f"data.train={root / 'data'}", *TINY], progress=False)
    return root, result


@pytest.fixture(scope="session")
def export_dir(tiny_run):
    """The tiny run exported (SavedModel + tflite_int8) with score threshold 0 (the serving,
    TFLite-runner and inference-audit tests share it)."""
    import shutil

    from od import config, export

    root, _ = tiny_run
    run = root / "run_zero"
    shutil.copytree(root / "run", run)
    cfg = config.load(run / "pipeline.yaml")
    config.save(config.set_key(cfg, "model.score_threshold", 0.0), run / "pipeline.yaml")
    out = root / "export_zero"
    export.export(run, out, formats=("saved_model", "tflite_int8"), calibration_images=8)
    return out


def start_http_server(handler) -> tuple:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) serving ``handler`` in a daemon thread:
    (server, base URL). The zoo and download tests' stand-in for the internet."""
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"

