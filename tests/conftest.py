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


def construct_head(run, box_share: tuple, seed: int = 0) -> None:
    """Set the last layers of a TINY run's heads so that every runtime must give the same boxes
    in the same order, and save the model as the run's newest checkpoint (and its best, if
    RUN/best/ exists), in the form od.model.restore reads.

    - box head: kernel 0, bias (0, 0, log s, log s) for anchor k of each location, s =
      ``box_share[k]``: anchor k's box is s times the anchor's side, at its centre, in every
      photo (the boxes, and so every IoU NMS sees, are known in advance);
    - class head: class 1 keeps a kernel drawn normal and scaled so that its logits spread by
      about 2 over the anchors of a training image (after 4 steps every score is about 0.0101
      and differs from the next in the 6th digit, below the float noise between TF and TFLite
      kernels); any other class gets kernel 0 and bias -30 (never above a score threshold), so
      per-class and class-agnostic NMS are the same.
    """
    import numpy as np
    import tensorflow as tf

    from od.data import tfrecord, tfrecord_io
    from od.evaluate import decode_image
    from od.layout import BEST_DIR, latest_checkpoint
    from od.model import build_model, load_run, restore
    from od.tflite import preprocess

    cfg, _ = load_run(run)
    model = build_model(cfg)
    restore(model, latest_checkpoint(run))
    box, cls = model.head._box_regressor, model.head._classifier
    assert box.bias.shape[-1] == 4 * len(box_share)
    box.kernel.assign(tf.zeros_like(box.kernel))
    box.bias.assign(np.array([[0.0, 0.0, np.log(s), np.log(s)] for s in box_share],
                             np.float32).ravel())
    classes = cls.bias.shape[-1] // len(box_share)  # with the background column 0
    kept = np.zeros(cls.bias.shape[-1], bool)
    kept[1::classes] = True
    kernel = np.random.default_rng(seed).normal(0, 1, cls.kernel.shape).astype(np.float32)
    kernel[..., ~kept] = 0.0
    cls.kernel.assign(kernel)
    cls.bias.assign(np.where(kept, 0.0, -30.0).astype(np.float32))
    shard = tfrecord.record_files(cfg.data.train)[0]
    raw = next(iter(tfrecord_io.iter_records(shard)))
    x = preprocess(decode_image(tfrecord.parse_example(raw, str(shard)).encoded),
                   cfg.model.input_size)[0]
    logits = model.head(model.decoder(model.backbone(x)))[0]  # (scores, boxes[, attributes])
    spread = float(np.std(np.concatenate([v.numpy()[..., kept].ravel() for v in logits.values()])))
    cls.kernel.assign(cls.kernel * (2.0 / spread))
    for folder in (run, run / BEST_DIR):
        if folder.is_dir():
            prefix = tf.train.Checkpoint(model=model).write(str(folder / "ckpt-5"))
            tf.compat.v1.train.update_checkpoint_state(str(folder), prefix)
    assert latest_checkpoint(run) == str(run / "ckpt-5")


def start_http_server(handler) -> tuple:
    """A ThreadingHTTPServer on 127.0.0.1 (a free port) serving ``handler`` in a daemon thread:
    (server, base URL). The zoo and download tests' stand-in for the internet."""
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                     daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"

