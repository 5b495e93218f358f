"""Decoding image files for `read`, `ocr` and the evaluations: any photo in, a BGR uint8 image out, or a reason.

What users hand to ``anpr-edge read`` is whatever a camera, phone or export tool wrote: grayscale, RGBA,
16-bit, CMYK JPEGs, multi-hundred-megapixel panoramas, 1x1 pixel files, truncated downloads. Every case
either yields an 8-bit 3-channel BGR image or raises ``ImageError`` with a reason naming the problem.

Large files are the one case that needs care: a full decode of a 20,000 x 15,000 photo takes 900 MB, over
the `read` process's memory budget. The header gives the size without decoding (JPEG SOF, PNG IHDR), and
JPEGs above ``MAX_DECODE_PIXELS`` are decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (OpenCV's
``IMREAD_REDUCED_*``), which never materialises the full image; other formats above ``MAX_PIXELS`` are
refused. A plate that needs more than 24 MP to be seen is not one the detector would find anyway.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

MAX_DECODE_PIXELS = 24_000_000  # decode at most this many pixels (a 6000x4000 photo)
MAX_PIXELS = 200_000_000  # larger images are refused outright (header size)
_REDUCED = ((2, cv2.IMREAD_REDUCED_COLOR_2), (4, cv2.IMREAD_REDUCED_COLOR_4), (8, cv2.IMREAD_REDUCED_COLOR_8))


class ImageError(ValueError):
    """An image file that cannot be used; the message says why (without the path: callers add it)."""


def header_size(data: bytes | np.ndarray) -> tuple[str, int, int] | None:
    """(format, width, height) from a JPEG or PNG header without decoding, or None when unknown."""
    # The frame header follows EXIF/ICC segments (thumbnails included), well inside the first MiB.
    raw = bytes(data[: 1 << 20])
    if raw[:8] == b"\x89PNG\r\n\x1a\n" and len(raw) >= 24 and raw[12:16] == b"IHDR":
        width, height = struct.unpack(">II", raw[16:24])
        return "png", int(width), int(height)
    if raw[:2] == b"\xff\xd8":
        return _jpeg_size(raw)
    return None


def _jpeg_size(raw: bytes) -> tuple[str, int, int] | None:
    pos = 2
    while pos + 4 <= len(raw):
        if raw[pos] != 0xFF:
            return None
        marker = raw[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack(">H", raw[pos + 2 : pos + 4])
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(raw):
                return None
            height, width = struct.unpack(">HH", raw[pos + 5 : pos + 9])
            return "jpeg", int(width), int(height)
        pos += 2 + length
    return None


def decode_image(data: bytes | np.ndarray) -> np.ndarray:
    """Encoded image bytes -> H x W x 3 uint8 BGR; ``ImageError`` with the reason otherwise."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if buffer.size == 0:
        raise ImageError("empty file")
    flags = cv2.IMREAD_COLOR  # grayscale -> 3 channels, alpha dropped, 16-bit scaled to 8-bit, CMYK -> BGR
    size = header_size(buffer)
    if size is not None:
        kind, width, height = size
        pixels = width * height
        if pixels == 0:
            raise ImageError(f"{kind.upper()} header says the image is {width}x{height}")
        if pixels > MAX_PIXELS:
            raise ImageError(f"image too large: {width}x{height} ({pixels / 1e6:.0f} MP; at most {MAX_PIXELS / 1e6:.0f} MP)")
        if pixels > MAX_DECODE_PIXELS:
            if kind != "jpeg":
                raise ImageError(
                    f"image too large to decode: {width}x{height} {kind.upper()} ({pixels / 1e6:.0f} MP; "
                    f"at most {MAX_DECODE_PIXELS / 1e6:.0f} MP, or a JPEG up to {MAX_PIXELS / 1e6:.0f} MP)"
                )
            flags = next((flag for factor, flag in _REDUCED if pixels / factor**2 <= MAX_DECODE_PIXELS), _REDUCED[-1][1])
    try:
        image = cv2.imdecode(buffer, flags)
    except cv2.error as error:  # e.g. OpenCV's own pixel limit for formats whose header we do not read
        raise ImageError(f"cannot decode: {str(error).strip().splitlines()[-1]}") from None
    if image is None:
        raise ImageError("not an image OpenCV can decode (corrupt, truncated or an unsupported format)")
    if image.ndim == 2:  # some decoders ignore IMREAD_COLOR for exotic inputs
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    return np.ascontiguousarray(image[:, :, :3])


def load_image(path: str | Path) -> np.ndarray:
    """Read and decode an image file; ``ImageError`` with a reason for a missing, unreadable or non-image file."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageError("file not found") from None
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except PermissionError:
        raise ImageError("not readable (permissions)") from None
    except OSError as error:
        raise ImageError(f"cannot read: {error.strerror or error}") from None
    return decode_image(data)
