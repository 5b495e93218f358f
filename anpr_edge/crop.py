"""Fixed-size plate crops for the OCR.

The same function cuts training crops (with jittered boxes) and runtime crops (after the detector), so
the OCR trains on exactly what it will see. The box is grown by ``padding`` on each side so a tight or
slightly wrong box loses no character, then grown further along one axis to the output aspect ratio
(more real context, never stretched characters), and resized to ``size``. Parts outside the frame are
filled by replicating the border.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from anpr_edge.values import PlateCrop


def crop_region(
    box: Sequence[float], size: tuple[int, int], padding: float
) -> tuple[float, float, float, float]:
    """The frame region (x1, y1, x2, y2) that ``crop_plate`` maps onto a ``size`` = (width, height) crop."""
    x1, y1, x2, y2 = (float(v) for v in box)
    out_w, out_h = size
    w = max(x2 - x1, 1.0) * (1.0 + 2.0 * padding)
    h = max(y2 - y1, 1.0) * (1.0 + 2.0 * padding)
    if w / h < out_w / out_h:
        w = h * out_w / out_h
    else:
        h = w * out_h / out_w
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0


def crop_plate(
    image: np.ndarray,
    box: Sequence[float],
    size: tuple[int, int],
    padding: float = 0.15,
    *,
    camera_id: str = "",
    frame_index: int = -1,
    detector_confidence: float = 1.0,
) -> PlateCrop:
    """Cut ``box`` (x1, y1, x2, y2 in ``image`` pixels) into a ``size`` = (width, height) crop."""
    out_w, out_h = size
    rx1, ry1, rx2, ry2 = crop_region(box, size, padding)
    # Integer region so the cut is an exact slice; the transform below records the true mapping.
    ix1, iy1 = int(np.floor(rx1)), int(np.floor(ry1))
    ix2, iy2 = max(int(np.ceil(rx2)), ix1 + 1), max(int(np.ceil(ry2)), iy1 + 1)
    height, width = image.shape[:2]
    inside = image[max(iy1, 0) : min(iy2, height), max(ix1, 0) : min(ix2, width)]
    if inside.size == 0:
        region = np.zeros((iy2 - iy1, ix2 - ix1) + image.shape[2:], image.dtype)
    else:
        region = cv2.copyMakeBorder(
            inside,
            max(-iy1, 0),
            max(iy2 - height, 0),
            max(-ix1, 0),
            max(ix2 - width, 0),
            cv2.BORDER_REPLICATE,
        )
    sx, sy = out_w / region.shape[1], out_h / region.shape[0]
    # INTER_AREA averages when shrinking (no aliasing of thin strokes); linear when enlarging.
    interpolation = cv2.INTER_AREA if sx < 1.0 and sy < 1.0 else cv2.INTER_LINEAR
    pixels = cv2.resize(region, (out_w, out_h), interpolation=interpolation)
    transform = np.array([[sx, 0.0, -sx * ix1], [0.0, sy, -sy * iy1]], dtype=np.float32)
    return PlateCrop(
        image=pixels,
        box=tuple(float(v) for v in box),  # type: ignore[arg-type]
        transform=transform,
        camera_id=camera_id,
        frame_index=frame_index,
        detector_confidence=float(detector_confidence),
    )


def fit_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image that already is a plate crop, fitted to ``size`` the same way (aspect kept, no stretch)."""
    height, width = image.shape[:2]
    return crop_plate(image, (0, 0, width, height), size, padding=0.0).image
