"""Where in a camera's frame the detector looks, and which plates count: its region of interest (ROI).

A camera's ``roi`` is a polygon in fractions of the frame. Plates whose box centre lies outside it are
ignored (``inside_roi``). By default the detector also looks only at the ROI's bounding rectangle, grown
by a margin (``roi_window``): the detector letterboxes whatever it is given to its fixed input size, so a
window half the frame's width gives every plate in it twice the detector pixels at the same cost. Small,
distant plates are what the detector misses first (docs/BENCHMARKS.md, recall per plate width).

Where plates can be anywhere in a wide view, ``detect_tiles`` buys the same at a price: the detector also
looks at overlapping tiles of the window (``tile_windows``), one batch, merged by non-maximum suppression.
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


# ------------------------------------------------------------------------------------------------ tiles
# Neighbouring tiles overlap by this fraction of a tile, so a plate up to that wide is whole in one of them.
TILE_OVERLAP = 0.25
# A box within this many pixels of a tile edge that is inside the window is a plate cut by the tile: dropped,
# the tile next to it (or the pass over the whole window) has it whole.
CUT_EDGE_PX = 2.0


def tile_windows(window: Window, tiles: int, overlap: float = TILE_OVERLAP) -> list[Window]:
    """``tiles`` x ``tiles`` overlapping windows covering ``window``."""
    x1, y1, x2, y2 = window
    if tiles <= 1:
        return [window]
    width, height = (x2 - x1) / (tiles - (tiles - 1) * overlap), (y2 - y1) / (tiles - (tiles - 1) * overlap)
    out = []
    for row in range(tiles):
        for col in range(tiles):
            tx1 = x1 + round(col * width * (1 - overlap))
            ty1 = y1 + round(row * height * (1 - overlap))
            tx2 = x2 if col == tiles - 1 else min(x2, x1 + round(col * width * (1 - overlap) + width))
            ty2 = y2 if row == tiles - 1 else min(y2, y1 + round(row * height * (1 - overlap) + height))
            out.append((tx1, ty1, tx2, ty2))
    return out


def _cut_by_tile(xyxy: np.ndarray, tile: Window, window: Window) -> np.ndarray:
    """Which boxes touch an edge of ``tile`` that lies inside ``window`` (so the plate may go on beyond it)."""
    tx1, ty1, tx2, ty2 = tile
    wx1, wy1, wx2, wy2 = window
    cut = np.zeros(len(xyxy), bool)
    for edge, column, inner in ((tx1, 0, tx1 > wx1), (ty1, 1, ty1 > wy1), (tx2, 2, tx2 < wx2), (ty2, 3, ty2 < wy2)):
        if inner:
            cut |= np.abs(xyxy[:, column] - edge) <= CUT_EDGE_PX
    return cut


def detect_in_windows(detector: PlateDetector, images: Sequence[np.ndarray], windows: Sequence[Window],
                      tiles: Sequence[int] | None = None) -> list[Detections]:
    """The detector on each image's window, boxes in the whole image's pixels; where ``tiles[n]`` > 1 also
    over that many x that many overlapping tiles of the window, each letterboxed to the detector's full input
    (small plates get up to ``tiles`` times the pixels, for 1 + ``tiles``² times the detector work). All
    views go in one batch; a plate cut by a tile's edge is dropped and the rest merged by non-maximum
    suppression."""
    views, owners = [], []
    for n, (window, count) in enumerate(zip(windows, tiles or [1] * len(windows), strict=True)):
        for view in [window] + (tile_windows(window, count) if count > 1 else []):
            views.append(view)
            owners.append(n)
    found = detector.detect([images[n][y1:y2, x1:x2] for n, (x1, y1, x2, y2) in zip(owners, views)])
    parts: list[list[Detections]] = [[] for _ in images]
    for n, view, detections in zip(owners, views, found):
        shifted = detections.shifted(view[0], view[1])
        if view != windows[n] and len(shifted):
            shifted = shifted[~_cut_by_tile(shifted.xyxy, view, windows[n])]
        parts[n].append(shifted)
    return [merge_detections(p, detector.iou, detector.max_detections) if len(p) > 1 else p[0] for p in parts]


def merge_detections(parts: Sequence[Detections], iou: float, max_detections: int) -> Detections:
    """The detections of overlapping views of one frame as one set: non-maximum suppression at ``iou``."""
    xyxy = np.concatenate([p.xyxy for p in parts]).reshape(-1, 4)
    confidence = np.concatenate([p.confidence for p in parts])
    if len(confidence) == 0:
        return Detections.empty()
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1)
    keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), confidence.tolist(), 0.0, iou, top_k=max_detections),
                      np.int64).reshape(-1)
    return Detections(xyxy[keep], confidence[keep]).sorted_by_confidence()
