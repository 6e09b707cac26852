"""Reading images for a dataset: real size, real format, and the bytes to store in a TFRecord.

Baseline JPEGs in RGB or grayscale are passed through byte for byte (no re-encoding loss, the same
bytes the OD API's converters store). Anything training would see wrongly is decoded with Pillow
and re-encoded as 8-bit RGB JPEG (quality 95): PNG (alpha composited on black), CMYK, palette
images, an EXIF-rotated JPEG (rotated upright), or a file whose extension lies about its format.
So a TFRecord never holds a 16-bit PNG, which ``tf.io.decode_image`` would read as 16-bit
samples (and ``decode_jpeg``/``decode_png(dtype=uint8)`` truncate).

Pixel modes (``to_rgb``; the same function serves convert, inspect and detect):

=============================  ===============================================================
``RGB``, ``L``, ``1``          as is (``1``: black/white)
``CMYK``, ``YCbCr``            Pillow's conversion to RGB
``RGBA``, ``LA``, ``P``,       alpha (or a palette's transparency) composited on black
``PA``, ``La``, ``RGBa``
``I;16``, ``I;16B``, ...       16-bit grey: divided by 257 (65535 → 255, the format's full range,
                               as image viewers show it), never clipped to white
``I`` (32-bit int)             values in 0..255 kept, in 0..65535 divided by 257 (Pillow opens
                               some 16-bit PNGs so); other ranges are refused by name
``F`` (32-bit float)           values in [0, 1] times 255, in [0, 255] kept; else refused
anything else                  refused by name (ImageError)
=============================  ===============================================================

EXIF orientation: images are stored and shown upright (``ImageOps.exif_transpose``).
``EncodedImage.orientation`` says what was applied, so ``od.data.convert`` can move boxes that
were drawn on the stored (unrotated) pixels along with the image (see ``od.boxes.exif_transform``).

Pillow's decompression-bomb guard is kept on (``MAX_PIXELS``); a larger image is an ImageError.
"""
from __future__ import annotations

import functools
import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from od.errors import ImageError, MissingImageError

MAX_PIXELS = 89_478_485  # Pillow's default bomb limit (~0.25 GiB RGB): refuse anything larger
_EXIF_ORIENTATION = 0x0112


def turned(width: int, height: int, orientation: int) -> tuple[int, int]:
    """``(width, height)`` in pixels after EXIF ``orientation`` (1-8) is applied: swapped for the
    orientations that turn the image a quarter (5-8), else as given."""
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


@dataclass(frozen=True)
class EncodedImage:
    """An image ready for a TFRecord.

    Attributes:
      data: encoded bytes (JPEG or, never re-encoded here, the original JPEG bytes).
      format: ``'jpeg'``.
      width, height: size in pixels of the image as stored (after any EXIF rotation).
      reencoded: why the original bytes were not kept (``''`` if they were).
      orientation: the EXIF orientation (1-8) of the file, already applied to ``data``; 1 when
        upright. ``stored_size`` is the size of the file's pixels before that rotation.
    """

    data: bytes
    format: str
    width: int
    height: int
    reencoded: str = ""
    orientation: int = 1

    @property
    def stored_size(self) -> tuple[int, int]:
        return turned(self.width, self.height, self.orientation)


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
    except UnidentifiedImageError:
        raise ImageError(f"{path}: cannot decode image ({_unidentified(data)}). Re-export the "
                         "file or remove it from the annotations.") from None
    except (OSError, ValueError) as e:
        raise ImageError(f"{path}: cannot decode image ({e}). Re-export the file or remove it "
                         "from the annotations.") from None


def _unidentified(data: bytes) -> str:
    """Why Pillow found no image in ``data``, in words (its own message names a BytesIO)."""
    if not data:
        return "the file is empty, 0 bytes"
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftyphevc", b"ftypavif"):
        return "a HEIC/HEIF/AVIF photo, which Pillow cannot read: convert it to JPEG"
    return f"not an image format Pillow reads; the file starts with {data[:16]!r}"


def read_bytes(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise MissingImageError(f"{Path(path)}: image file not found.{_near_names(Path(path))} "
                                "Check the images folder you gave and the filename in the "
                                "annotation.") from None
    except OSError as e:
        raise ImageError(f"{Path(path)}: cannot read image ({e.strerror}).") from None


def _near_names(path: Path) -> str:
    """`` Found X instead.`` when the folder of a missing ``path`` holds files whose name
    differs only by letter case (``a.JPG`` for ``a.jpg``: the same file on Windows and macOS)
    or by the extension; else ``''``. A hint only: `od` does not pick one itself."""
    try:
        names = _listing(str(path.parent))
    except OSError:
        return ""
    want, stem = path.name.casefold(), path.stem.casefold()
    near = sorted(n for n in names if n.casefold() == want or (
        n.rsplit(".", 1)[0].casefold() in (stem, want)
        and "." + n.rsplit(".", 1)[-1].lower() in IMAGE_SUFFIXES))
    if not near:
        return ""
    return f" Found {', '.join(near[:3])} in {path.parent} instead; fix the name."


#: file suffixes read as images where a folder is listed (``od detect``, the near-name hint above;
#: the TFLite runner keeps a copy, checked equal by its tests, as it may not import od)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif",
                  ".tiff")


@functools.lru_cache(maxsize=8)
def _listing(folder: str) -> tuple[str, ...]:
    return tuple(os.listdir(folder))


def probe(path: str | os.PathLike, upright: bool = True) -> tuple[int, int]:
    """Return the ``(width, height)`` in pixels of the upright image (``upright=False``: of the
    stored pixels, EXIF orientation ignored), reading only its header.

    Raises:
      ImageError: missing, unreadable or undecodable file, or a decompression bomb.
    """
    w, h, orientation = header(path)
    return turned(w, h, orientation if upright else 1)


def header(path: str | os.PathLike, data: bytes | None = None, *,
           complete: bool = False) -> tuple[int, int, int]:
    """``(width, height, orientation)``: the stored pixels' size and the EXIF orientation (1-8; 1
    when absent or malformed), reading only the header of ``data`` (else the file at ``path``,
    which also names it in errors). ``complete``: a JPEG without its end marker (cut off?) is
    fully decoded, as ``encode_for_training`` does, so a truncated file is an error here too.

    Raises:
      ImageError: missing, unreadable, undecodable (or, with ``complete``, truncated) image, or
        a decompression bomb.
    """
    path = Path(path)
    data = read_bytes(path) if data is None else data
    img = _open(path, data)
    if complete and img.format == "JPEG" and not _is_complete_jpeg(data):
        _load(path, img)
    return img.width, img.height, _orientation(img)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation 1-8 of ``img``; 1 when absent, out of range or malformed."""
    try:
        value = int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # malformed EXIF block: treat as upright, as most decoders do
        return 1
    return value if 1 <= value <= 8 else 1


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
    path = path if isinstance(path, Path) else Path(path)
    data = read_bytes(path) if data is None else data
    img = _open(path, data)
    orientation = _orientation(img)
    reason = ""
    if img.format != "JPEG":
        reason = f"{img.format or 'unknown'} image"
    elif img.mode not in ("RGB", "L"):
        reason = f"{img.mode} JPEG"
    elif orientation != 1:
        reason = "EXIF-rotated JPEG"
    if not reason and verify == "fast" and _is_complete_jpeg(data):
        return EncodedImage(data, "jpeg", img.width, img.height)
    _load(path, img)
    if not reason:
        return EncodedImage(data, "jpeg", img.width, img.height)
    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        reason = f"{img.mode} (high bit depth) {img.format or 'image'}, scaled to 8 bits"
    upright = to_rgb(img, path)
    return EncodedImage(encode_jpeg(upright), "jpeg", upright.width, upright.height, reason,
                        orientation)


def encode_jpeg(image: Image.Image, quality: int = 95) -> bytes:
    """JPEG bytes of an RGB or L Pillow image (baseline, ``quality`` 1-95). The one JPEG encoder
    of `od`: training records, generated datasets and drawn detections all go through it."""
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _load(path: Path, img: Image.Image) -> None:
    try:
        img.load()  # full decode: truncated or corrupt data fails here, by name
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{path}: image data is truncated or corrupt ({e}). Re-download or "
                         "re-export the file, or remove it from the annotations.") from None


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA = ("RGBA", "LA", "P", "PA", "RGBa", "La")
_PLAIN = ("RGB", "L", "1", "CMYK", "YCbCr")


def _to_8bit(img: Image.Image, path) -> Image.Image:
    """A 16-bit, 32-bit int or float grey image as 8-bit ``L`` (rules in the module doc)."""
    import numpy as np  # here only: convert's workers need it for these rare images alone

    a = np.asarray(img)
    if img.mode in _SIXTEEN_BIT:
        a = a.astype(np.float64) / 257.0
    else:
        a = a.astype(np.float64)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0:
            raise _mode_error(path, img.mode, f"values {lo}..{hi}")
        if img.mode == "F" and hi <= 1.0:
            a = a * 255.0
        elif hi > 255 and (img.mode == "F" or hi > 65535):
            raise _mode_error(path, img.mode, f"values {lo:g}..{hi:g}")
        elif hi > 255:
            a = a / 257.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _mode_error(path, mode: str, detail: str = "") -> ImageError:
    return ImageError(f"{path or 'image'}: pixel mode {mode!r}"
                      + (f" ({detail})" if detail else "") + " has no unambiguous 8-bit RGB "
                      "form. Convert the image to 8-bit RGB (or 16-bit grey) PNG or JPEG.")


def to_rgb(img: Image.Image, path=None) -> Image.Image:
    """The pixels training sees: EXIF-rotated upright, 8-bit RGB, transparency composited on
    black, high bit depths scaled (module doc). ``path`` names the image in errors.

    Raises:
      ImageError: a pixel mode with no unambiguous RGB form (the message names it).
    """
    upright = ImageOps.exif_transpose(img)
    mode = upright.mode
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        return _to_8bit(upright, path).convert("RGB")
    if mode in _ALPHA:
        if mode == "P" and "transparency" not in upright.info:
            return upright.convert("RGB")
        upright = upright.convert("RGBA")
        canvas = Image.new("RGB", upright.size, (0, 0, 0))
        canvas.paste(upright, mask=upright.getchannel("A"))
        return canvas
    if mode in _PLAIN:
        return upright.convert("RGB")
    raise _mode_error(path, mode)


def decode_rgb(path: str | os.PathLike, data: bytes | None = None) -> Image.Image:
    """Fully decode an image as training sees it (see ``to_rgb``): an RGB ``PIL.Image``.

    Raises:
      ImageError: as ``encode_for_training``.
    """
    path = Path(path)
    data = read_bytes(path) if data is None else data
    img = _open(path, data)
    _load(path, img)
    return to_rgb(img, path)


def pixel_md5(path: str | os.PathLike, data: bytes | None = None) -> str:
    """Hex MD5 of the decoded upright RGB pixels (uint8 [H, W, 3]) and the size: equal for the
    same picture stored as different files or formats (e.g. a PNG and its lossless copy)."""
    img = decode_rgb(path, data)
    h = hashlib.md5(f"{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()
