"""Fixed-size plate crops for the OCR.

The same function cuts training crops (with jittered boxes) and runtime crops (after the detector), so
the OCR trains on exactly what it will see. The box is grown by ``padding`` on each side so a tight or
slightly wrong box loses no character, then grown further along one axis to the output aspect ratio
(more real context, never stretched characters), and resized to ``size``. Parts outside the frame are
filled by replicating the border.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

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


# A plate whose box comes this close to the frame's border (fraction of the frame's width for left/right,
# of its height for top/bottom; at least FRAME_EDGE_MIN_PX) is taken to be cut by it: the detector boxes the
# visible part, flush with the border. Measured on the French test photos: the boxes of plates cut by the
# border end 0.5-5.3 px (0.05-0.5%) from it; no whole plate's box came within 3% of it.
FRAME_EDGE_MARGIN = 0.005
FRAME_EDGE_MIN_PX = 2.0


def at_frame_edge(box: Sequence[float], shape: tuple[int, ...]) -> bool:
    """Is the plate in ``box`` (x1, y1, x2, y2) cut by the border of a frame of ``shape`` (h, w, ...)?

    Such a plate shows only part of its text: its read is a partial plate, not a plate (a car entering or
    leaving the view, a car parked at the side).
    """
    height, width = shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    margin_x = max(FRAME_EDGE_MARGIN * width, FRAME_EDGE_MIN_PX)
    margin_y = max(FRAME_EDGE_MARGIN * height, FRAME_EDGE_MIN_PX)
    return x1 <= margin_x or y1 <= margin_y or x2 >= width - margin_x or y2 >= height - margin_y


# Rectification: rolls below this many degrees are left alone (the OCR reads them as they are), and the
# estimate is trusted only when the gradients agree on an orientation this much (0: none, 1: all).
RECTIFY_MIN_DEG = 4.0
RECTIFY_MIN_COHERENCE = 0.25
RECTIFY_MAX_DEG = 35.0


def estimate_roll(image: np.ndarray) -> tuple[float, float]:
    """The in-plane angle of a plate crop, degrees (positive: the plate's rows run down to the right), and
    how coherent the estimate is (0..1).

    Plate characters and borders are made of horizontal and vertical edges, so the gradient orientations
    cluster 90 degrees apart; their mean on the circle after multiplying angles by 4 (magnitude-weighted)
    is the plate's angle modulo 90 degrees. The crop's central part is used (the margins hold car body).
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    gray = gray.astype(np.float32)
    h, w = gray.shape
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)[h // 6 : h - h // 6, w // 8 : w - w // 8]
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)[h // 6 : h - h // 6, w // 8 : w - w // 8]
    magnitude = gx * gx + gy * gy
    total = float(magnitude.sum())
    if total <= 0.0:
        return 0.0, 0.0
    z = complex(np.sum(magnitude * np.exp(4j * np.arctan2(gy, gx))))
    return float(np.degrees(np.angle(z) / 4.0)), abs(z) / total


def _rectified(
    image: np.ndarray, box: Sequence[float], size: tuple[int, int], padding: float, degrees: float
) -> tuple[np.ndarray, np.ndarray] | None:
    """A crop of the plate in ``box`` turned level by ``-degrees``: (pixels, 2x3 frame-to-crop transform), or
    None when the box cannot hold a plate at that angle."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = max(x2 - x1, 1.0), max(y2 - y1, 1.0)
    theta = np.radians(degrees)
    c, s = abs(np.cos(theta)), abs(np.sin(theta))
    det = c * c - s * s
    # The axis-aligned box of a plate L x H turned by theta is (L c + H s) x (L s + H c): solve for L, H.
    length, height = (w * c - h * s) / det, (h * c - w * s) / det
    if length <= 0.0 or height <= 0.0 or length < height:
        return None
    out_w, out_h = size
    length, height = length * (1.0 + 2.0 * padding), height * (1.0 + 2.0 * padding)
    if length / height < out_w / out_h:
        length = height * out_w / out_h
    else:
        height = length * out_h / out_w
    scale = out_w / length
    cos, sin = np.cos(theta), np.sin(theta)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    # frame -> crop: rotate by -theta about the box centre, scale, centre in the output.
    matrix = np.array([[scale * cos, scale * sin, 0.0], [-scale * sin, scale * cos, 0.0]])
    matrix[:, 2] = np.array([out_w / 2.0, out_h / 2.0]) - matrix[:, :2] @ np.array([cx, cy])
    source = image
    if scale < 0.5:  # shrinking a lot: average first (a warp alone would alias thin strokes)
        pre = 2.0 * scale
        source = cv2.resize(image, None, fx=pre, fy=pre, interpolation=cv2.INTER_AREA)
        warp = matrix.copy()
        warp[:, :2] /= pre
    else:
        warp = matrix
    pixels = cv2.warpAffine(source, warp, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return pixels, matrix.astype(np.float32)


def crop_plate(
    image: np.ndarray,
    box: Sequence[float],
    size: tuple[int, int],
    padding: float = 0.15,
    *,
    camera_id: str = "",
    frame_index: int = -1,
    detector_confidence: float = 1.0,
    rectify: bool = False,
) -> PlateCrop:
    """Cut ``box`` (x1, y1, x2, y2 in ``image`` pixels) into a ``size`` = (width, height) crop.

    With ``rectify``, a plate that sits tilted in its box (``estimate_roll`` on the plain crop) is cut
    again along its own axis, so the OCR sees it level.
    """
    crop = _axis_aligned_crop(image, box, size, padding)
    if rectify:
        crop = _level(image, box, size, padding, crop[0]) or crop
    return _plate_crop(crop, box, camera_id, frame_index, detector_confidence, at_frame_edge(box, image.shape))


def _plate_crop(
    crop: tuple[np.ndarray, np.ndarray], box: Sequence[float], camera_id: str, frame_index: int,
    detector_confidence: float, cut_by_edge: bool,
) -> PlateCrop:
    pixels, transform = crop
    return PlateCrop(
        image=pixels,
        box=tuple(float(v) for v in box),  # type: ignore[arg-type]
        transform=transform,
        camera_id=camera_id,
        frame_index=frame_index,
        detector_confidence=float(detector_confidence),
        at_frame_edge=cut_by_edge,
    )


def _level(
    image: np.ndarray, box: Sequence[float], size: tuple[int, int], padding: float, plain: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The plate cut again level, when ``estimate_roll`` on its ``plain`` (axis-aligned) crop finds a tilt it
    trusts; None for a level plate or an untrusted estimate."""
    degrees, coherence = estimate_roll(plain)
    if RECTIFY_MIN_DEG <= abs(degrees) <= RECTIFY_MAX_DEG and coherence >= RECTIFY_MIN_COHERENCE:
        return _rectified(image, box, size, padding, degrees)
    return None


# Other cuts of the same plate that the reader reads besides the box cut (``plate_cuts``); the reads of all
# cuts are voted into one (``voting.combine_views``): a character that one cut loses to the border, to a tight
# box or to a tilt is often whole in the others (docs/BENCHMARKS.md measures each set of cuts).
CropCut = Literal["wide", "level", "cw", "ccw"]
WIDE_EXTRA_PADDING = 0.07  # "wide": this much more margin on each side than the box cut
# "cw" / "ccw": the box cut turned this many degrees clockwise / counter-clockwise. The OCR, trained on a tail
# of rolled plates, reads such views; its mistakes on them are not all the box cut's, so the vote fixes some.
TURN_DEGREES = 8.0


def plate_cuts(
    image: np.ndarray,
    box: Sequence[float],
    size: tuple[int, int],
    padding: float = 0.15,
    cuts: Sequence[CropCut] = (),
    *,
    rectify: bool = False,
    camera_id: str = "",
    frame_index: int = -1,
    detector_confidence: float = 1.0,
) -> list[PlateCrop]:
    """The box cut (``crop_plate``), then the other ``cuts`` of the same plate.

    ``"wide"``: the box cut with ``WIDE_EXTRA_PADDING`` more margin; ``"level"``: the plate turned level, only
    when it sits tilted in its box (``estimate_roll``; a level plate's "level" cut would be the box cut again);
    ``"cw"`` / ``"ccw"``: the box cut turned ``TURN_DEGREES`` clockwise / counter-clockwise about the box
    centre (left out when the box is too tall for a plate at that angle).
    """
    plain = _axis_aligned_crop(image, box, size, padding)
    level = _level(image, box, size, padding, plain[0]) if rectify or "level" in cuts else None
    first = (level or plain) if rectify else plain
    cut_by_edge = at_frame_edge(box, image.shape)
    out = [_plate_crop(first, box, camera_id, frame_index, detector_confidence, cut_by_edge)]
    for cut in cuts:
        if cut == "wide":
            out.append(crop_plate(image, box, size, padding + WIDE_EXTRA_PADDING, rectify=rectify, camera_id=camera_id,
                                  frame_index=frame_index, detector_confidence=detector_confidence))
        elif cut == "level":
            if level is not None and not rectify:  # with rectify the box cut is already level
                out.append(_plate_crop(level, box, camera_id, frame_index, detector_confidence, cut_by_edge))
        elif cut in ("cw", "ccw"):
            # _rectified(d) levels a plate rolled by d (rows running down to the right for d > 0): it turns the
            # view counter-clockwise by d.
            turned = _rectified(image, box, size, padding, TURN_DEGREES if cut == "ccw" else -TURN_DEGREES)
            if turned is not None:
                out.append(_plate_crop(turned, box, camera_id, frame_index, detector_confidence, cut_by_edge))
        else:
            raise ValueError(f"unknown crop cut {cut!r} (known: wide, level, cw, ccw)")
    return out


def _axis_aligned_crop(
    image: np.ndarray, box: Sequence[float], size: tuple[int, int], padding: float
) -> tuple[np.ndarray, np.ndarray]:
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
    return pixels, transform


def fit_crop(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An image that already is a plate crop, fitted to ``size`` the same way (aspect kept, no stretch)."""
    height, width = image.shape[:2]
    return crop_plate(image, (0, 0, width, height), size, padding=0.0).image
