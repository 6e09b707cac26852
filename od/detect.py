"""``od detect``: run an exported SavedModel (or one of its TFLite files) on a folder of images.

For each image in ``--images`` (JPEG, PNG, BMP, GIF, WebP, TIFF; EXIF rotation applied, as in
``od data convert``; other entries of the folder are listed in a note, not read), written to
``OUT/`` (each file atomically; ``<stem>`` is the image's stem, or ``<stem>_<ext>`` for images
whose stems are the same, e.g. ``a.jpg`` and ``a.png``: ``output_stems``):

- ``<stem>.jpg``: the image with boxes, class names and scores drawn (od.visualize);
- ``detections.json``: ``{"images": [per image {"image", "width", "height", "detections":
  [{"class_id", "class", "score", "box": [ymin, xmin, ymax, xmax] normalised, "box_pixels":
  [xmin, ymin, xmax, ymax]}], "output" (only where it is not ``<image stem>.jpg``)}],
  "skipped": [{"image", "reason"}]}``; an unreadable or
  undecodable image is listed in ``skipped`` with the reason and the others are still processed;
- ``detections.csv``: one row per box, the pixel CSV form ``filename,width,height,class,xmin,ymin,
  xmax,ymax`` plus ``score`` (readable by ``od data convert --format csv``);
- with ``voc=True``: ``voc/<stem>.xml`` Pascal VOC pre-labels for review in a labelling tool
  (LabelImg, CVAT);
- with ``crops=True``: ``crops/<stem>_<k>_<class>.jpg``, one crop per box.

Running again into the same ``OUT`` replaces these files and removes those of the earlier run that
this one does not write again and nobody changed since (its marker lists them with their size and
time: ``od.outputs.remove_stale``; a pre-label edited in a labelling tool stays); other files are
left alone.
"""
from __future__ import annotations

import csv
import io
import itertools
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from od import atomic
from od import label_map as label_map_lib
from od import layout
from od import tiling
from od import detect_files
from od.detections import Detections, detect_padded, pad_aspect, unpad
from od.errors import ExportError, ImageError, OdError

#: images of one size per SavedModel call in detect_folder. Measured on an idle 2-core Xeon
#: (bench/bench_detect.py, 200 images, best of 2 rounds): 640x480 camera photos 15.6 images/s
#: with 8 against 11.9 with 1; raccoon photos of 133 sizes 13.8 against 11.5.
BATCH_SIZE = 8
#: images above this many pixels run one at a time (a batch of 12 MP photos would hold GBs of
#: float pixels in the model's resize, for little gain: decoding and resizing dominate then)
BATCH_MAX_PIXELS = 1920 * 1080
#: decoded pixels detect_folder holds per pass (about 100 MB of uint8 RGB): large photos make
#: shorter passes
WINDOW_PIXELS = 32_000_000


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to uint8 RGB [H, W, 3] as training sees it (``od.data.images.decode_rgb``:
    EXIF orientation applied, transparency composited on black).

    Raises:
      ImageError: missing, undecodable, truncated, or larger than the decompression-bomb limit.
    """
    from od.data.images import decode_rgb

    return np.asarray(decode_rgb(path))


def load_saved_model(export_dir: Path):
    """``(model, serving_default signature)`` of the SavedModel in ``EXPORT/saved_model`` (or
    ``export_dir`` itself). Raises ExportError: none there, or a corrupt/truncated file."""
    import tensorflow as tf

    sm = export_dir / layout.SAVED_MODEL_DIR
    sm = sm if sm.is_dir() else export_dir
    if not (sm / "saved_model.pb").is_file():
        raise ExportError(f"{export_dir}: no SavedModel (saved_model.pb) found; give the "
                          "folder written by `od export --out ...`.")
    try:
        model = tf.saved_model.load(str(sm))
        return model, model.signatures["serving_default"]
    except Exception as e:  # noqa: BLE001 - TF raises many kinds for a damaged SavedModel
        text = str(e).strip()
        why = f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"
        raise ExportError(f"{sm / 'saved_model.pb'}: cannot load the SavedModel ({why}); the "
                          "file is corrupt, truncated or not a detector export. Export the "
                          "run again with `od export`.") from None


class Detector:
    """An exported detector (``od export`` folder, or any SavedModel with the same signature).

    ``format`` 'saved_model' (default), or 'tflite' / 'tflite_fp16' / 'tflite_int8' for the
    folder's model.tflite / model_fp16.tflite / model_int8.tflite (od.tflite.TFLiteModel: resizes
    and normalises the image, maps boxes back to it). Call with uint8 RGB [H, W, 3] →
    :class:`od.detections.Detections` (boxes normalised to that image, class ids from the label
    map, sorted by score).
    """

    def __init__(self, export_dir: str | os.PathLike, format: str = "saved_model"):

        from od import tflite

        export_dir = Path(export_dir)
        lm_path = layout.label_map_path(export_dir)
        self.label_map = label_map_lib.read(lm_path) if lm_path.is_file() else None
        self._tflite = None
        if format != "saved_model":
            if format not in tflite.FILES:
                raise ExportError(f"{export_dir}: unknown detector format {format!r}; choose "
                                  f"saved_model, {', '.join(tflite.FILES)}.")
            self._tflite = tflite.TFLiteModel(export_dir / tflite.FILES[format])
            return
        self._model, self._fn = load_saved_model(export_dir)

    @property
    def signature(self):
        """The SavedModel's ``serving_default`` concrete function (uint8 [N, H, W, 3] →
        outputs), or None for a TFLite format."""
        return None if self._tflite is not None else self._fn

    @property
    def input_size(self) -> int | None:
        """A TFLite model's square input side in pixels; None for the SavedModel (any size)."""
        return None if self._tflite is None else self._tflite.input_size

    def __call__(self, image: np.ndarray) -> Detections:
        image = np.asarray(image, np.uint8)
        if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise ImageError(f"expected a uint8 RGB image [H, W, 3], got shape {image.shape}.")
        if self._tflite is not None:
            return self._tflite(image)  # pads a strip itself
        return detect_padded(self._detect, image)

    def _detect(self, image: np.ndarray) -> Detections:
        import tensorflow as tf

        return Detections.from_outputs(self._fn(tf.constant(image[None])), image.shape[1],
                                       image.shape[0])

    def batch(self, images: list[np.ndarray]) -> list[Detections]:
        """Detect on uint8 RGB [H, W, 3] images that all have the same shape: one call of the
        SavedModel with [N, H, W, 3] (TFLite: one image after another). Returns one
        :class:`Detections` per image, in order, each exactly as ``self(image)`` returns it.

        Raises:
          ImageError: an image is not [H, W, 3], or the shapes differ.
        """
        import tensorflow as tf

        if self._tflite is not None or len(images) == 1:
            return [self(im) for im in images]
        shapes = {np.shape(im) for im in images}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
            raise ImageError(f"Detector.batch: expected uint8 RGB images [H, W, 3] of one shape, "
                             f"got shapes {sorted(shapes)}; call it per group of one size.")
        h, w = images[0].shape[:2]
        padded = [pad_aspect(np.asarray(im, np.uint8)) for im in images]
        out = {k: v.numpy() for k, v in self._fn(tf.constant(np.stack(padded))).items()}
        ph, pw = padded[0].shape[:2]
        return [unpad(Detections.from_outputs({k: v[i:i + 1] for k, v in out.items()}, pw, ph),
                      w, h) for i in range(len(images))]


def _run_detector(model, checkpoint: str | None):
    """A Predictor for a run folder (pipeline.yaml, no saved_model/), else None; a checkpoint
    named for an export folder is an ExportError."""
    from od.model import Predictor

    folder = Path(model)
    if layout.is_run(folder):
        return Predictor.from_run(folder, checkpoint)
    if checkpoint:
        raise ExportError(f"--checkpoint {checkpoint}: {model} is an export, which holds one "
                          "model; give the run folder of `od train` as --model to choose a "
                          "checkpoint.")
    return None


class _Inline:
    """An executor without threads: ``submit`` runs the job at once in the calling thread."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as e:  # noqa: BLE001 - raised again by future.result(), as a pool's
            future.set_exception(e)
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _pool(workers: int, name: str):
    return ThreadPoolExecutor(workers, thread_name_prefix=name) if workers > 0 else _Inline()


def _decode(path: Path) -> tuple:
    """``(image, None)``, or ``(None, reason)`` for an unreadable or undecodable file."""
    try:
        return load_image(path), None
    except (ImageError, OSError) as e:
        return None, str(e)


def _decoded(pool, files: list[Path], ahead: int):
    """``(path, image or None, reason)`` per file, in order; ``pool`` decodes up to ``ahead``
    files in advance (while the model runs on the previous ones)."""
    pending: deque = deque()
    todo = iter(files)
    for path in itertools.islice(todo, ahead):
        pending.append((path, pool.submit(_decode, path)))
    while pending:
        path, future = pending.popleft()
        nxt = next(todo, None)
        if nxt is not None:
            pending.append((nxt, pool.submit(_decode, nxt)))
        yield (path, *future.result())


def _chunks(stream, most: int, pixels: int):
    """Lists of up to ``most`` items of ``stream`` (``(path, image or None, reason)``), ended
    early once their images hold ``pixels`` pixels."""
    chunk, held = [], 0
    for item in stream:
        chunk.append(item)
        held += 0 if item[1] is None else item[1].shape[0] * item[1].shape[1]
        if len(chunk) >= most or held >= pixels:
            yield chunk
            chunk, held = [], 0
    if chunk:
        yield chunk


def _detect_all(detector, images: list[np.ndarray], batch_size: int, tile: int,
                tile_overlap: float) -> list[Detections]:
    """Detections per image, in order: images of the same shape go through the SavedModel
    together, ``batch_size`` at a time (``Detector.batch``), those over ``BATCH_MAX_PIXELS``
    one at a time; tiled or other detectors per image."""
    batch = getattr(detector, "batch", None)
    if tile or batch is None or batch_size <= 1:
        return [tiling.detect_tiled(detector, im, tile, tile_overlap) if tile else detector(im)
                for im in images]
    found: list = [None] * len(images)
    groups: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):
        alone = im.shape[0] * im.shape[1] > BATCH_MAX_PIXELS
        groups.setdefault((i,) if alone else im.shape, []).append(i)
    for idx in groups.values():
        for k in range(0, len(idx), batch_size):
            part = idx[k:k + batch_size]
            for i, det in zip(part, batch([images[i] for i in part])):
                found[i] = det
    return found


def _tileable(item: tuple, tile: int, overlap: float) -> tuple:
    """``(path, image, reason)`` as it is, or with the image dropped and the reason given when
    it needs more than ``tiling.MAX_TILES`` windows (the reason names a tile size that fits)."""
    path, image, _ = item
    if image is None:
        return item
    try:
        tiling.check_count(image.shape[1], image.shape[0], tile, overlap)
    except OdError as e:
        return path, None, str(e)
    return item


def auto_workers() -> int:
    """Decode/write threads for ``detect_folder`` on this machine: ``min(4, cores - 2)``, 0 on
    2 cores or fewer, where TensorFlow's two threads use the cores and extra threads only
    preempt them (measured: bench/bench_detect.py)."""
    return max(0, min(4, (os.cpu_count() or 1) - 2))


def detect_folder(model: str | os.PathLike, images: str | os.PathLike, out: str | os.PathLike,
                  *, min_score: float = 0.5, voc: bool = False, crops: bool = False,
                  progress: bool = True, format: str = "saved_model",
                  overwrite: bool = False, tile: int = 0, tile_overlap: float = 0.2,
                  checkpoint: str | None = None, batch_size: int | None = None,
                  workers: int | None = None) -> dict:
    """Detect objects in every image of ``images`` (not recursive) and write ``out`` (module doc).

    Images of the same size run through the SavedModel ``batch_size`` at a time; with
    ``workers`` images are decoded ahead of the model and drawn, encoded and written in the
    background. The outputs are the same as one image after another.

    Args:
      model: export folder (or a SavedModel folder).
      images: folder of images, or a single image file.
      min_score: keep detections with score >= this, in [0, 1].
      format: which model of the export folder runs (``Detector``).
      overwrite: write into an existing folder that is not a previous detect output (files of
        the same names are replaced, nothing else; od.outputs).
      tile: > 0: also detect on overlapping ``tile`` px tiles and merge them
        (``od.tiling.detect_tiled``), for small objects in large photos; tile_overlap: fraction.
      checkpoint: with a run folder of ``od train`` as ``model``: best, latest or a checkpoint
        path (None: best when ``RUN/best/`` exists, else latest), run in memory.
      batch_size: images of one size per SavedModel call (None: ``BATCH_SIZE``; 1: one at a
        time; tiles, TFLite, run folders and images over ``BATCH_MAX_PIXELS`` always run one
        at a time).
      workers: threads that decode ahead, and threads that draw/encode/write, each; 0: none,
        all in this thread, one image after another (None: ``auto_workers()``).
    Returns:
      The dict written to ``detections.json`` (``images`` and ``skipped``, module doc).
    Raises:
      OdError: no images found, bad ``min_score`` or ``batch_size``; ExportError: not an
        export; OutputError: ``out`` is, holds or lies inside the images or the model folder
        (od.outputs.prepare_out).
    """
    from tqdm import tqdm

    from od import outputs

    images, out = Path(images), Path(out)
    outputs.prepare_out(out, inputs=[images, model], command="detect", overwrite=overwrite)
    files, others = detect_files.list_images(images)
    suffixes = detect_files.IMAGE_SUFFIXES
    if not files:
        raise OdError(f"{images}: no images found (looked for {', '.join(suffixes)}"
                      + (f"; found only {', '.join(others[:5])}" if others else "") + ").")
    if not 0.0 <= min_score <= 1.0:
        raise OdError(f"--min-score {min_score} must be in [0, 1].")
    batch_size = BATCH_SIZE if batch_size is None else batch_size
    if int(batch_size) < 1:
        raise OdError(f"--batch-size {batch_size} must be >= 1 (1: one image at a time).")
    tiling.check_options(tile, tile_overlap)  # before any work (overlap without tile too)
    detector = _run_detector(model, checkpoint) or Detector(model, format)
    lm = detector.label_map
    if others and progress:
        print(f"note: {len(others)} entr{'y' if len(others) == 1 else 'ies'} of {images} not "
              f"read (not {'/'.join(s[1:] for s in suffixes)} files; sub-folders are not "
              f"searched): {', '.join(others[:10])}{' ...' if len(others) > 10 else ''}",
              flush=True)
    stems = detect_files.output_stems(files)
    previous = outputs.written_files(out, "detect")  # an earlier run's files here
    outputs.start_output(out, "detect")
    workers = auto_workers() if workers is None else max(0, int(workers))
    window = max(2 * int(batch_size), 2 * workers)  # images grouped by size per model pass
    results, rows, skipped, written, made = [], [], [], set(), set()
    jobs: deque = deque()  # pending writes, oldest first
    last: dict[str, Future] = {}  # output name → the job that writes it last
    decode_pool, write_pool = _pool(workers, "od-decode"), _pool(workers, "od-write")
    bar = tqdm(total=len(files), desc="detect", unit="img", disable=not progress)
    try:
        # decoded ahead: enough to keep the decode threads busy (without threads, the next one)
        stream = _decoded(decode_pool, files, 2 * workers if workers else 1)
        for chunk in _chunks(stream, window, WINDOW_PIXELS):
            if tile:  # a photo needing over MAX_TILES windows is skipped, not the whole folder
                chunk = [_tileable(c, tile, tile_overlap) for c in chunk]
            ok = [c for c in chunk if c[1] is not None]
            dets = iter(_detect_all(detector, [c[1] for c in ok], int(batch_size), tile,
                                    tile_overlap))
            for path, image, reason in chunk:
                if image is None:
                    skipped.append({"image": path.name, "reason": reason})
                    continue
                det = next(dets).above(min_score)
                recs = detect_files.records(det, lm)
                stem = stems[path]
                results.append({"image": path.name, "width": det.width, "height": det.height,
                                "detections": recs,
                                **({} if stem == path.stem else {"output": f"{stem}.jpg"})})
                for r in recs:
                    rows.append([path.name, det.width, det.height, r["class"], *r["box_pixels"],
                                 r["score"]])
                cut = detect_files.crop_names(stem, recs) if crops else []
                names = [f"{stem}.jpg", *([f"voc/{stem}.xml"] if voc else []),
                         *("crops/" + n for n, _ in cut)]
                after = [last[n] for n in names if n in last]
                job = write_pool.submit(detect_files.write_image, out, path, stem, image, det,
                                        recs, lm, min_score, voc, cut, after)
                last.update(dict.fromkeys(names, job))
                jobs.append(job)
                made.update(names)
                written |= {f"{stem}.jpg", *(["voc"] if voc else []),
                            *(["crops"] if cut else [])}
                while len(jobs) > 2 * window:  # bounded memory: wait for the oldest writes
                    jobs.popleft().result()
            bar.update(len(chunk))
        while jobs:
            jobs.popleft().result()
    finally:
        bar.close()
        decode_pool.shutdown(wait=True, cancel_futures=True)
        write_pool.shutdown(wait=True, cancel_futures=True)
    doc = {"images": results, "skipped": skipped}
    atomic.write_json(out / "detections.json", doc)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax", "score"])
    w.writerows(rows)
    atomic.write_text(out / "detections.csv", buf.getvalue())
    # an earlier run's drawings, crops and pre-labels that this run did not write, if unchanged
    outputs.remove_stale(out, {k: v for k, v in previous.items() if k not in made})
    outputs.write_marker(out, "detect", [*written, "detections.json", "detections.csv"],
                         files=outputs.stamps(out, made), prune=True)
    return doc
