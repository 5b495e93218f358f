"""Synthetic OCR reads, detections and frames for the tracking, voting and passage tests.

Reads look like the bundled OCR's: trained with label smoothing 0.1, it gives the read character about
0.9 and spreads the rest, so a correct 7-character read has a confidence near 0.5.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

from anpr_edge.ocr import DEFAULT_CHARSET, decode_greedy
from anpr_edge.values import Detections, Frame, PlateRead

CHARSET = DEFAULT_CHARSET
MAX_LEN = 12
T0 = 1_763_764_200.0  # 2025-11-21T22:30:00Z
FPS = 10.0


def char_probs(
    text: str,
    *,
    p: float = 0.9,
    alternatives: Mapping[int, tuple[str, float]] | None = None,
    max_len: int = MAX_LEN,
) -> np.ndarray:
    """(max_len, 1 + charset) distributions reading ``text`` with probability ``p`` per position.

    ``alternatives`` {position: (char, q)} gives a second character q at a position (the read one keeps
    p - q): how the OCR hesitates between look-alikes.
    """
    n = len(CHARSET) + 1
    probs = np.full((max_len, n), (1.0 - p) / (n - 1))
    symbols = [CHARSET.index(c) + 1 for c in text] + [0] * (max_len - len(text))
    for i, s in enumerate(symbols):
        probs[i, s] = p
    for i, (char, q) in (alternatives or {}).items():
        probs[i, CHARSET.index(char) + 1] += q
        probs[i, symbols[i]] -= q
    return probs


def make_read(
    text: str,
    box: Sequence[float] | None = None,
    *,
    p: float = 0.9,
    alternatives: Mapping[int, tuple[str, float]] | None = None,
    crop_image: np.ndarray | None = None,
    frame_index: int = -1,
) -> PlateRead:
    probs = char_probs(text, p=p, alternatives=alternatives)
    decoded, confidence, chars = decode_greedy(probs[None], CHARSET)[0]
    return PlateRead(
        text=decoded,
        confidence=confidence,
        char_confidences=chars,
        char_probs=probs.astype(np.float32),
        box=None if box is None else tuple(float(v) for v in box),  # type: ignore[arg-type]
        frame_index=frame_index,
        crop_image=crop_image,
    )


def detections(*boxes: Sequence[float], confidence: float | Sequence[float] = 0.9) -> Detections:
    if not boxes:
        return Detections.empty()
    scores = [confidence] * len(boxes) if isinstance(confidence, (int, float)) else list(confidence)
    return Detections(np.array(boxes, dtype=np.float32), np.array(scores, dtype=np.float32))


@lru_cache(maxsize=4)
def _texture(width: int, height: int) -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    image.flags.writeable = False  # shared by every frame
    return image


def frame(index: int, *, width: int = 640, height: int = 480, camera_id: str = "gate", t0: float = T0) -> Frame:
    """A textured frame (so crops encode to real JPEGs) at ``t0 + index / FPS``."""
    return Frame(camera_id, index, t0 + index / FPS, _texture(width, height))


def moving_box(start: Sequence[float], velocity: Sequence[float], step: int, size: Sequence[float] = (100.0, 25.0)) -> tuple[float, float, float, float]:
    """The box of a plate whose top-left corner starts at ``start`` and moves ``velocity`` px per frame."""
    x, y = start[0] + velocity[0] * step, start[1] + velocity[1] * step
    return (x, y, x + size[0], y + size[1])
