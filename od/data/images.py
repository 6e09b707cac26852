"""Reading images for a dataset: real size, real format, and the bytes to store in a TFRecord.

Baseline JPEGs in RGB or grayscale are passed through byte for byte (no re-encoding loss, the same
bytes the OD API's converters store). Anything training would see wrongly is decoded with Pillow
and re-encoded as JPEG (quality 95): PNG (alpha composited on black), CMYK, palette images, an
EXIF-rotated JPEG (rotated upright), or a file whose extension lies about its format.

Pillow's decompression-bomb guard is kept on (``MAX_PIXELS``); a larger image is an ImageError.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from od.errors import ImageError

MAX_PIXELS = 89_478_485  # Pillow's default bomb limit (~0.25 GiB RGB): refuse anything larger
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class EncodedImage:
    """An image ready for a TFRecord.

    Attributes:
      data: encoded bytes (JPEG or, never re-encoded here, the original JPEG bytes).
      format: ``'jpeg'``.
      width, height: size in pixels of the image as stored (after any EXIF rotation).
      reencoded: why the original bytes were not kept (``''`` if they were).
    """

    data: bytes
    format: str
    width: int
    height: int
    reencoded: str = ""


def _open(path: Path, data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_PIXELS:
                raise Image.DecompressionBombError("too many pixels")
            return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{path}: image is too large to decode safely (more than {MAX_PIXELS:,} "
                         "pixels; a decompression bomb?). Resize it or remove it.") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise ImageError(f"{path}: cannot decode image ({e}). Re-export the file or remove it "
                         "from the annotations.") from None


def read_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"{path}: image file not found. Check the images folder you gave and "
                         "the filename in the annotation.") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read image ({e.strerror}).") from None


def probe(path: str | os.PathLike) -> tuple[int, int]:
    """Return the ``(width, height)`` in pixels of the upright image, reading only its header.

    Raises:
      ImageError: missing, unreadable or undecodable file, or a decompression bomb.
    """
    path = Path(path)
    img = _open(path, read_bytes(path))
    w, h = img.size
    if _orientation(img) in (5, 6, 7, 8):
        w, h = h, w
    return w, h


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # malformed EXIF block: treat as upright, as most decoders do
        return 1


def _is_complete_jpeg(data: bytes) -> bool:
    """True if the JPEG ends with its EOI marker (a cut-off download does not)."""
    return data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"


def encode_for_training(path: str | os.PathLike, data: bytes | None = None, *,
                        verify: str = "fast") -> EncodedImage:
    """Return the bytes to store as ``image/encoded`` for the image at ``path``.

    JPEG bytes are kept as they are when the image is RGB or grayscale and upright; otherwise the
    image is fully decoded and re-encoded as RGB JPEG (quality 95) upright, alpha on black.

    Args:
      path: the image file; also the name used in error messages.
      data: the encoded bytes if already in memory (e.g. from a TFRecord); else ``path`` is read.
      verify: ``'fast'``: a kept JPEG is fully decoded only when it does not end with its EOI
        marker (which catches cut-off files at the cost of a header parse); ``'full'``: always
        decode every pixel (also catches corruption inside the data).
    Raises:
      ImageError: missing, unreadable, truncated or undecodable file, or a decompression bomb;
        the message names ``path``.
    """
    path = Path(path)
    data = read_bytes(path) if data is None else data
    img = _open(path, data)
    reason = ""
    if img.format != "JPEG":
        reason = f"{img.format or 'unknown'} image"
    elif img.mode not in ("RGB", "L"):
        reason = f"{img.mode} JPEG"
    elif _orientation(img) != 1:
        reason = "EXIF-rotated JPEG"
    if not reason and verify == "fast" and _is_complete_jpeg(data):
        return EncodedImage(data, "jpeg", img.width, img.height)
    _load(path, img)
    if not reason:
        return EncodedImage(data, "jpeg", img.width, img.height)
    upright = to_rgb(img)
    buf = io.BytesIO()
    upright.save(buf, format="JPEG", quality=95)
    return EncodedImage(buf.getvalue(), "jpeg", upright.width, upright.height, reason)


def _load(path: Path, img: Image.Image) -> None:
    try:
        img.load()  # full decode: truncated or corrupt data fails here, by name
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{path}: image data is truncated or corrupt ({e}). Re-download or "
                         "re-export the file, or remove it from the annotations.") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """The pixels training sees: EXIF-rotated upright, RGB, transparency composited on black."""
    upright = ImageOps.exif_transpose(img)
    if upright.mode in ("RGBA", "LA", "P", "PA", "RGBa", "La"):
        upright = upright.convert("RGBA")
        canvas = Image.new("RGB", upright.size, (0, 0, 0))
        canvas.paste(upright, mask=upright.getchannel("A"))
        return canvas
    return upright.convert("RGB")


def decode_rgb(path: str | os.PathLike, data: bytes | None = None) -> Image.Image:
    """Fully decode an image as training sees it (see ``to_rgb``): an RGB ``PIL.Image``.

    Raises:
      ImageError: as ``encode_for_training``.
    """
    path = Path(path)
    data = read_bytes(path) if data is None else data
    img = _open(path, data)
    _load(path, img)
    return to_rgb(img)


def pixel_md5(path: str | os.PathLike, data: bytes | None = None) -> str:
    """Hex MD5 of the decoded upright RGB pixels (uint8 [H, W, 3]) and the size: equal for the
    same picture stored as different files or formats (e.g. a PNG and its lossless copy)."""
    img = decode_rgb(path, data)
    h = hashlib.md5(f"{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()
