"""Reading images for a dataset: real size, real format, and the bytes to store in a TFRecord.

Baseline JPEGs in RGB or grayscale are passed through byte for byte (no re-encoding loss, the same
bytes the OD API's converters store). Anything training would see wrongly is decoded with Pillow
and re-encoded as JPEG (quality 95): PNG (alpha composited on black), CMYK, palette images, an
EXIF-rotated JPEG (rotated upright), or a file whose extension lies about its format.

Pillow's decompression-bomb guard is kept on (``MAX_PIXELS``); a larger image is an ImageError.
"""
from __future__ import annotations

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


def encode_for_training(path: str | os.PathLike) -> EncodedImage:
    """Read ``path`` and return the bytes to store as ``image/encoded``.

    JPEG bytes are kept as they are when the image is RGB or grayscale and upright; otherwise the
    image is fully decoded (which also catches truncated files) and re-encoded as RGB JPEG.

    Raises:
      ImageError: missing, unreadable, truncated or undecodable file, or a decompression bomb.
    """
    path = Path(path)
    data = read_bytes(path)
    img = _open(path, data)
    reason = ""
    if img.format != "JPEG":
        reason = f"{img.format or 'unknown'} image"
    elif img.mode not in ("RGB", "L"):
        reason = f"{img.mode} JPEG"
    elif _orientation(img) != 1:
        reason = "EXIF-rotated JPEG"
    try:
        img.load()  # full decode: truncated or corrupt data fails here, by name
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{path}: image data is truncated or corrupt ({e}). Re-download or "
                         "re-export the file, or remove it from the annotations.") from None
    if not reason:
        return EncodedImage(data, "jpeg", img.width, img.height)
    upright = ImageOps.exif_transpose(img)
    if upright.mode in ("RGBA", "LA", "P", "PA"):
        upright = upright.convert("RGBA")
        canvas = Image.new("RGB", upright.size, (0, 0, 0))
        canvas.paste(upright, mask=upright.getchannel("A"))
        upright = canvas
    else:
        upright = upright.convert("RGB")
    buf = io.BytesIO()
    upright.save(buf, format="JPEG", quality=95)
    return EncodedImage(buf.getvalue(), "jpeg", upright.width, upright.height, reason)
