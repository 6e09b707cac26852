"""The model side of ``od serve`` (:mod:`od.serve`): ``BatchModel``, an export folder's detector
that runs a list of images as batches, and ``Batcher``, which collects the images of concurrent
requests into batches for one model thread (see od.serve's module doc for the policy).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from od.detections import Detections
from od.errors import ExportError

FORMATS = ("saved_model", "tflite", "tflite_fp16", "tflite_int8")


class Busy(Exception):
    """The batching queue is full (HTTP 503)."""


class BatchModel:
    """An export folder's model that runs a list of images as batches.

    ``format`` 'saved_model': the ``serving_default`` signature (uint8 [N, H, W, 3]) called once
    per group of images of the same size; 'tflite*': ``od.detect.Detector`` per image (the .tflite
    files take one image). ``run(images)`` takes uint8 RGB [H, W, 3] arrays and returns one
    :class:`Detections` per image (boxes normalised to it, label-map ids, sorted by score).

    Raises:
      ExportError: not an export folder, unknown format, missing .tflite file.
    """

    def __init__(self, export_dir: str | os.PathLike, format: str = "saved_model"):

        from od.detect import Detector

        export_dir = Path(export_dir)
        if format not in FORMATS:
            raise ExportError(f"--format {format!r}: choose one of {', '.join(FORMATS)}.")
        self.format = format
        self._detector = Detector(export_dir, format)  # pads a 3x5000 strip itself
        self.label_map = self._detector.label_map

    def run(self, images: list[np.ndarray]) -> list[Detections]:
        results: list[Detections | None] = [None] * len(images)
        groups: dict[tuple, list[int]] = {}
        for i, im in enumerate(images):
            groups.setdefault(im.shape, []).append(i)
        for idx in groups.values():  # Detector.batch: one serving_default call per size
            for i, det in zip(idx, self._detector.batch([images[i] for i in idx])):
                results[i] = det
        return results

    def signature(self) -> dict:
        """TF Serving's ``signature_def`` map of what the server accepts and answers."""
        if self.format == "saved_model":
            fn = self._detector.signature
            inputs, outputs = fn.structured_input_signature[1], fn.structured_outputs
            sig = {"inputs": {k: _tensor_info(s.dtype.name, s.shape.as_list(), k)
                              for k, s in inputs.items()},
                   "outputs": {k: _tensor_info(s.dtype.name, s.shape.as_list(), k)
                               for k, s in outputs.items()}}
        else:
            size = self._detector.input_size
            sig = {"inputs": {"images": _tensor_info("uint8", [1, None, None, 3], "images")},
                   "outputs": {k: _tensor_info(d, s, k) for k, d, s in (
                       ("detection_boxes", "float32", [1, None, 4]),
                       ("detection_scores", "float32", [1, None]),
                       ("detection_classes", "int32", [1, None]),
                       ("num_detections", "int32", [1]))}}
            sig["tflite_input_size"] = size
        sig["method_name"] = "tensorflow/serving/predict"
        return {"serving_default": sig}


def _tensor_info(dtype: str, shape, name: str) -> dict:
    return {"dtype": "DT_" + dtype.upper(), "name": name,
            "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""}
                                     for d in shape], "unknown_rank": False}}


class Batcher:
    """Collects images from concurrent requests into batches for one model thread (module doc)."""

    def __init__(self, model: BatchModel, max_batch: int, timeout_s: float, queue_size: int):
        self.model, self.max_batch, self.timeout_s = model, max_batch, timeout_s
        self.queue: asyncio.Queue = asyncio.Queue(queue_size)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="od-model")
        self.batches = self.images = 0  # run so far (GET /healthz)
        self._arriving, self._changed = 0, asyncio.Event()  # requests being read (arriving())
        self._running = False  # a batch is in the model thread
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def submit(self, images: list[np.ndarray]) -> list[asyncio.Future]:
        """Queue all of ``images`` or none. Raises Busy when the queue has too little room."""
        if self.queue.maxsize - self.queue.qsize() < len(images):
            raise Busy(f"server busy: the batching queue ({self.queue.maxsize} images, "
                       "--queue-size) is full; retry later.")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in images]
        for im, fut in zip(images, futures):
            self.queue.put_nowait((im, fut))
        self._changed.set()
        return futures

    @property
    def idle(self) -> bool:
        """No batch is running and none is waiting."""
        return not self._running and self.queue.empty()

    @contextlib.contextmanager
    def arriving(self):
        """Mark a request as being read and parsed while inside: a batch being formed waits for
        its images (up to the timeout). With none arriving, a batch runs at once."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._changed.set()  # it may have left without submitting: stop waiting for it

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.timeout_s
            while len(batch) < self.max_batch:
                if not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0 or not self._arriving:  # nothing more is coming: run now
                    break
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = [(im, f) for im, f in batch if not f.done()]  # cancelled: client went away
            if not batch:
                continue
            self.batches, self.images = self.batches + 1, self.images + len(batch)
            self._running = True
            try:
                dets = await loop.run_in_executor(self._executor, self.model.run,
                                                  [im for im, _ in batch])
            except Exception as e:  # noqa: BLE001 - reported to each waiting request
                for _, f in batch:
                    if not f.done():
                        f.set_exception(e)
            else:
                for (_, f), d in zip(batch, dets):
                    if not f.done():
                        f.set_result(d)
            finally:
                self._running = False

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._executor.shutdown(wait=True)
