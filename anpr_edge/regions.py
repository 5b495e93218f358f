"""Where in a camera's frame the detector looks, and which plates count: its region of interest (ROI).

A camera's ``roi`` is a polygon in fractions of the frame. Plates whose box centre lies outside it are
ignored (``inside_roi``). By default the detector also looks only at the ROI's bounding rectangle, grown
by a margin (``roi_window``): the detector letterboxes whatever it is given to its fixed input size, so a
window half the frame's width gives every plate in it twice the detector pixels at the same cost. Small,
distant plates are what the detector misses first (docs/BENCHMARKS.md, recall per plate width).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from anpr_edge.values import Detections

if TYPE_CHECKING:
    from anpr_edge.detector import PlateDetector

# Margin around the ROI's bounding rectangle, as a fraction of the frame's width and height. A plate
# whose centre sits on the ROI's edge must still be whole in the window (a cut box gives a cut crop):
# 10% of a 1920 px frame keeps plates up to 384 px wide whole, wider than plates at a gate.
ROI_WINDOW_MARGIN = 0.1
# A window this close to the whole frame buys nothing: the frame is used as it is.
WHOLE_FRAME_FRACTION = 0.9

Window = tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels


def inside_roi(xyxy: np.ndarray, roi: Sequence[tuple[float, float]], shape: tuple[int, ...]) -> np.ndarray:
    """Which boxes have their centre inside the polygon ``roi`` (fractions of a frame of ``shape``)."""
    height, width = shape[:2]
    polygon = np.array([[x * width, y * height] for x, y in roi], np.float32).reshape(-1, 1, 2)
    centres = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2], axis=1)
    return np.array([cv2.pointPolygonTest(polygon, (float(x), float(y)), False) >= 0 for x, y in centres], bool)


def roi_window(roi: Sequence[tuple[float, float]] | None, shape: tuple[int, ...],
               margin: float = ROI_WINDOW_MARGIN) -> Window:
    """The part of a frame of ``shape`` the detector looks at: the ROI's bounding rectangle grown by
    ``margin`` (fractions of the frame) and clipped to the frame; the whole frame without an ROI or when
    the window would cover nearly all of it anyway."""
    height, width = shape[:2]
    whole = (0, 0, width, height)
    if not roi:
        return whole
    xs, ys = [float(x) for x, _ in roi], [float(y) for _, y in roi]
    x1 = max(0, int(np.floor((min(xs) - margin) * width)))
    y1 = max(0, int(np.floor((min(ys) - margin) * height)))
    x2 = min(width, int(np.ceil((max(xs) + margin) * width)))
    y2 = min(height, int(np.ceil((max(ys) + margin) * height)))
    if x2 - x1 < 2 or y2 - y1 < 2 or (x2 - x1) * (y2 - y1) >= WHOLE_FRAME_FRACTION * width * height:
        return whole
    return x1, y1, x2, y2


def detect_in_windows(detector: PlateDetector, images: Sequence[np.ndarray], windows: Sequence[Window]) -> list[Detections]:
    """The detector on each image's window (one batch), boxes in the whole image's pixels."""
    views = [image[y1:y2, x1:x2] for image, (x1, y1, x2, y2) in zip(images, windows, strict=True)]
    return [found.shifted(x1, y1) for found, (x1, y1, _, _) in zip(detector.detect(views), windows)]
