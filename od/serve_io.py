"""Bodies of ``od serve``'s predict API: parse a TF Serving / cloud predict request into images,
and turn :class:`od.detections.Detections` into its prediction JSON (forms: ``od.serve`` doc).

Nothing here needs TensorFlow or the event loop; ``parse_predict`` runs in a worker thread.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

import numpy as np

from od.data.images import MAX_PIXELS, decode_rgb
from od.detections import Detections
from od.errors import ImageError

#: Names a row (or a column of ``inputs``) may give its image under.
IMAGE_FIELDS = ("image_bytes", "image", "images", "inputs", "image_tensor")
_ROW_FORMS = ('{"b64": ...}, {"image": {"b64": ...}}, {"image_bytes": {"b64": ...}, "key": ...} '
              "or a uint8 [H][W][3] list")


class BadRequest(Exception):
    """The request is malformed (HTTP 400); the message says what and where."""


@dataclass(frozen=True)
class Predict:
    """A parsed predict request.

    Attributes:
      images: uint8 RGB [H, W, 3] arrays, one per instance.
      keys: the instance's ``key`` (None if it gave none), echoed in its prediction.
      min_score: keep detections scoring >= this, in [0, 1].
      columnar: the request used ``inputs`` (answer with ``outputs``).
    """

    images: list
    keys: list
    min_score: float
    columnar: bool


#: ``signature_name`` values a request may give: the export's two signatures answer alike.
SIGNATURES = ("", "serving_default", "serving_bytes")
_SPACE = str.maketrans("", "", " \t\r\n")


def _min_score(value, where: str) -> float:
    try:
        v = float("nan") if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not 0.0 <= v <= 1.0:
        raise BadRequest(f"{where} min_score {value!r} must be a number in [0, 1].")
    return v


def _decode_b64(value, where: str) -> np.ndarray:
    if not isinstance(value, str):
        raise BadRequest(f"{where}: \"b64\" must be a base64 string, got {type(value).__name__}.")
    try:
        data = b64decode(value)
    except (binascii.Error, ValueError) as e:
        raise BadRequest(f"{where}: invalid base64 ({e}); send the image file's bytes "
                         "base64-encoded (standard or URL-safe alphabet).") from None
    try:
        return np.asarray(decode_rgb(where, data))
    except ImageError as e:
        text = str(e).split(" Re-")[0].split(" Resize it")[0]
        raise BadRequest(f"{text} Send a JPEG, PNG, BMP, GIF or WebP image of at most "
                         f"{MAX_PIXELS:,} pixels.") from None


def b64decode(text: str) -> bytes:
    """Base64 as clients send it: line breaks and spaces (``base64`` wraps at 76 columns) are
    ignored, the URL-safe alphabet (``-_``) is read too, missing ``=`` padding is added. Anything
    else that is not base64 raises ``binascii.Error``."""
    text = text.translate(_SPACE)
    if "-" in text or "_" in text:
        if "+" in text or "/" in text:
            raise binascii.Error("mixes the standard (+/) and URL-safe (-_) alphabets")
        text = text.replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        raise binascii.Error(f"{len(text)} base64 characters cannot be a whole number of bytes")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _decode_array(value: list, where: str) -> np.ndarray:
    try:
        a = np.asarray(value)
    except ValueError:
        raise BadRequest(f"{where}: the nested list is ragged; give a uint8 [H][W][3] "
                         "list of RGB pixels.") from None
    if a.ndim != 3 or a.shape[2] != 3 or 0 in a.shape:
        raise BadRequest(f"{where}: a nested list image must be [H][W][3] (RGB), got shape "
                         f"{list(a.shape)}.")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise BadRequest(f"{where}: {a.shape[0]}x{a.shape[1]} is over the {MAX_PIXELS:,} pixel "
                         "limit.")
    if a.dtype.kind not in "iu" or a.min() < 0 or a.max() > 255:
        raise BadRequest(f"{where}: pixels must be integers in 0..255 (uint8), got "
                         f"{a.dtype.name} values.")
    return a.astype(np.uint8)


def _image(value, where: str) -> np.ndarray:
    if isinstance(value, dict) and set(value) == {"b64"}:
        return _decode_b64(value["b64"], where)
    if isinstance(value, list):
        return _decode_array(value, where)
    raise BadRequest(f"{where}: not an image; give {_ROW_FORMS}.")


def _row(row, where: str):
    """(image, key) of one instance."""
    if not isinstance(row, dict) or "b64" in row:
        if isinstance(row, dict) and set(row) - {"b64", "key"}:
            raise BadRequest(f"{where}: unknown field(s) {sorted(set(row) - {'b64', 'key'})}.")
        key = row.get("key") if isinstance(row, dict) else None
        return _image({"b64": row["b64"]} if isinstance(row, dict) else row, where), key
    fields = [f for f in IMAGE_FIELDS if f in row]
    extra = set(row) - set(IMAGE_FIELDS) - {"key"}
    if len(fields) != 1 or extra:
        raise BadRequest(f"{where}: expected one image field ({', '.join(IMAGE_FIELDS)}) and an "
                         f"optional \"key\", got fields {sorted(row)}; give {_ROW_FORMS}.")
    return _image(row[fields[0]], f"{where}.{fields[0]}"), row.get("key")


def _columns(inputs: dict) -> list[dict]:
    fields = [f for f in IMAGE_FIELDS if f in inputs]
    if len(fields) != 1 or set(inputs) - {fields[0], "key"}:
        raise BadRequest(f"inputs: expected one image column ({', '.join(IMAGE_FIELDS)}) and an "
                         f"optional \"key\" column, got {sorted(inputs)}.")
    images, keys = inputs[fields[0]], inputs.get("key")
    if not isinstance(images, list):
        images = [images]  # one instance, e.g. {"image_bytes": {"b64": ...}}
        keys = None if keys is None else [keys]
    if keys is not None and (not isinstance(keys, list) or len(keys) != len(images)):
        raise BadRequest(f"inputs.key must be a list of {len(images)} keys, one per image.")
    return [{fields[0]: im, **({} if keys is None else {"key": k})}
            for im, k in zip(images, keys or [None] * len(images))]


def parse_predict(body: bytes, query_min_score: str | None = None,
                  max_instances: int = 64) -> Predict:
    """Parse a predict request body (JSON bytes) and decode its images.

    Args:
      body: the request body; query_min_score: the ``?min_score=`` value, if any.
      max_instances: at most this many images in one request.
    Raises:
      BadRequest: malformed JSON, neither or both of ``instances`` / ``inputs``, an empty or
        over-long list, an unknown row form, bad base64, not an image, an image over the pixel
        limit, a bad ``min_score`` (the message names the instance).
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"malformed JSON in the request body ({e}).") from None
    if not isinstance(payload, dict):
        raise BadRequest(f"the request body must be a JSON object with \"instances\" or "
                         f"\"inputs\", got a {type(payload).__name__}.")
    known = {"instances", "inputs", "min_score", "signature_name"}
    if set(payload) - known:
        raise BadRequest(f"unknown field(s) {sorted(set(payload) - known)} in the request body; "
                         "expected \"instances\" (or \"inputs\") and optional \"min_score\".")
    if ("instances" in payload) == ("inputs" in payload):
        raise BadRequest("the request body needs exactly one of \"instances\" (row format) and "
                         "\"inputs\" (columnar format).")
    if payload.get("signature_name", "") not in SIGNATURES:
        raise BadRequest(f"signature_name {payload['signature_name']!r}: this model has the "
                         f"signatures {', '.join(SIGNATURES[1:])} (or leave it out).")
    columnar = "inputs" in payload
    rows = payload["inputs"] if columnar else payload["instances"]
    if columnar and isinstance(rows, dict):
        rows = _columns(rows)
    name = "inputs" if columnar else "instances"
    if not isinstance(rows, list) or not rows:
        raise BadRequest(f"\"{name}\" must be a non-empty list of images, got "
                         f"{json.dumps(rows)[:60]}.")
    if len(rows) > max_instances:
        raise BadRequest(f"{len(rows)} instances in one request; at most {max_instances} "
                         "(--queue-size); split the request.")
    min_score = 0.0
    if "min_score" in payload:
        min_score = _min_score(payload["min_score"], "body")
    if query_min_score is not None:
        min_score = _min_score(query_min_score, "query")
    images, keys = [], []
    for i, row in enumerate(rows):
        image, key = _row(row, f"{name}[{i}]")
        images.append(image)
        keys.append(key)
    return Predict(images, keys, min_score, columnar)


def prediction(det: Detections, label_map=None, key=None) -> dict:
    """One instance's answer (``od.serve`` doc); ``key`` is included when not None."""
    classes = [int(c) for c in det.class_ids]
    out = {"detection_boxes": det.boxes.astype(float).tolist(),
           "detection_scores": det.scores.astype(float).tolist(),
           "detection_classes": classes,
           "detection_class_names": [label_map.title_of(c) if label_map else str(c)
                                     for c in classes],
           "num_detections": len(det)}
    if key is not None:
        out["key"] = key
    return out
