"""Errors raised by `od`.

Every error a user can cause by their input is a subclass of :class:`OdError`, and its message
names the file, the offending value and the fix. Code that catches ``OdError`` catches all of them.
"""
from __future__ import annotations


class OdError(Exception):
    """Base class of every error `od` raises on bad input, config or environment."""


class AnnotationError(OdError):
    """An annotation file cannot be read or says something impossible (bad box, unknown class...)."""


class ImageError(OdError):
    """An image is missing, undecodable, too large, or disagrees with its annotation."""


class MissingImageError(ImageError):
    """An image file named by an annotation does not exist."""


class LabelMapError(OdError):
    """A label map file is malformed or inconsistent (ids < 1, duplicates, missing names)."""


class ConfigError(OdError):
    """A pipeline config or override is invalid (unknown key, wrong type, impossible value)."""


class CheckpointError(OdError):
    """A checkpoint is missing or does not fit the model being built."""


class ZooError(OdError):
    """A model-zoo lookup, selection or download failed."""


class ExportError(OdError):
    """An export could not be written or does not match the trained model."""


class UnsafePathError(OdError):
    """A path from an annotation file points outside the roots the user gave."""


def undecodable_at(e: UnicodeDecodeError) -> tuple[int, bytes]:
    """(line number from 1, the offending bytes and up to 3 after them) of a decoding error,
    counted in what the decoder saw (``e.object``: the data after a byte-order mark it stripped),
    for the "not UTF-8 text" messages of the CSV and label map readers."""
    seen = bytes(e.object)
    return seen[:e.start].count(b"\n") + 1, seen[e.start:e.end + 3]

