"""Image decoding for `read`/`ocr`/evaluations: every odd file gives a BGR uint8 image or a clear reason."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from anpr_edge import images
from anpr_edge.images import ImageError, decode_image, header_size, load_image


def encode(ext: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` (the pixel data is absent)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


def test_header_size_reads_jpeg_and_png_without_decoding() -> None:
    assert header_size(encode(".jpg", np.zeros((37, 53, 3), np.uint8))) == ("jpeg", 53, 37)
    assert header_size(encode(".png", np.zeros((37, 53), np.uint8))) == ("png", 53, 37)
    assert header_size(png_header_only(20000, 10000)) == ("png", 20000, 10000)
    assert header_size(b"BM not a jpeg") is None


@pytest.mark.parametrize(
    "name, image",
    [
        ("gray", np.full((20, 30), 77, np.uint8)),
        ("rgba", np.dstack([np.full((20, 30, 3), 77, np.uint8), np.zeros((20, 30), np.uint8)])),
        ("16-bit", np.full((20, 30, 3), 77 * 257, np.uint16)),
        ("1x1", np.full((1, 1, 3), 77, np.uint8)),
    ],
)
def test_odd_pixel_formats_become_bgr_uint8(name: str, image: np.ndarray) -> None:
    decoded = decode_image(encode(".png", image))
    assert decoded.dtype == np.uint8 and decoded.ndim == 3 and decoded.shape[2] == 3, name
    assert decoded.shape[:2] == image.shape[:2]
    assert abs(int(decoded[0, 0, 0]) - 77) <= 1  # 16-bit is scaled, not clipped to white


def test_very_large_jpeg_is_decoded_reduced_by_libjpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 100 * 100)
    data = encode(".jpg", np.full((300, 400, 3), 90, np.uint8))  # 12x the limit -> 1/4 scale
    decoded = decode_image(data)
    assert decoded.shape == (75, 100, 3)


def test_oversized_images_are_refused_with_their_size(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImageError, match=r"too large: 20000x20000"):
        decode_image(png_header_only(20000, 20000))
    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 100 * 100)
    with pytest.raises(ImageError, match=r"too large to decode: 400x300 PNG"):
        decode_image(encode(".png", np.zeros((300, 400, 3), np.uint8)))


def test_broken_files_give_reasons(tmp_path: Path) -> None:
    good = encode(".jpg", np.full((64, 64, 3), 120, np.uint8))
    cases = {
        "empty.jpg": (b"", "empty file"),
        "text.jpg": (b"hello, not an image", "not an image"),
        "truncated.jpg": (good[:40], "not an image"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageError, match=reason):
            load_image(tmp_path / name)
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path)
    (tmp_path / "ok.jpg").write_bytes(good)
    assert load_image(tmp_path / "ok.jpg").shape == (64, 64, 3)
