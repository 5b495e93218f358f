"""The typed values that flow between the stages.

source -> ``Frame`` -> detect -> ``Detections`` -> crop -> ``PlateCrop`` -> read -> ``PlateRead``
-> track/vote -> ``PlateEvent`` -> publish.

``Detections`` is one vectorised value per frame (in the style of supervision's ``Detections``): boxes and
scores as numpy arrays, so filtering and mapping are array operations rather than loops over objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded image from a camera.

    ``timestamp`` is wall-clock time (seconds since the epoch) at capture; for file sources it is the
    start of the run plus the media position, so event times stay consistent with the clip.
    ``pts`` is the media position in seconds where the source knows it (files, most streams).
    """

    camera_id: str
    index: int
    timestamp: float
    image: np.ndarray  # H x W x 3, uint8, BGR (OpenCV order)
    pts: float | None = None

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True, eq=False)
class Detections:
    """Plate boxes found in one frame, in that frame's pixel coordinates.

    ``xyxy``: (N, 4) float32 [x1, y1, x2, y2]; ``confidence``: (N,) float32.
    Index with an int array, a slice or a boolean mask to select a subset.
    """

    xyxy: np.ndarray
    confidence: np.ndarray

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        if len(xyxy) != len(confidence):
            raise ValueError(f"Detections: {len(xyxy)} boxes but {len(confidence)} scores")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", confidence)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __len__(self) -> int:
        return len(self.confidence)

    def __getitem__(self, index: int | slice | np.ndarray | list[int]) -> Detections:
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.xyxy[index], self.confidence[index])

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def sorted_by_confidence(self) -> Detections:
        return self[np.argsort(-self.confidence, kind="stable")]


@dataclass(frozen=True, eq=False)
class PlateCrop:
    """A fixed-size plate image cut from a frame for the OCR.

    ``box`` is the detector box in frame pixels. ``transform`` is the 2x3 affine matrix that maps frame
    pixels to crop pixels, so a point can be mapped either way (``cv2.invertAffineTransform``).
    """

    image: np.ndarray  # crop_h x crop_w x 3, uint8, BGR
    box: tuple[float, float, float, float]
    transform: np.ndarray  # 2 x 3, float32
    camera_id: str = ""
    frame_index: int = -1
    detector_confidence: float = 1.0


@dataclass(frozen=True, eq=False)
class PlateRead:
    """What the OCR read on one crop.

    ``text`` is normalised (upper case, model charset only, no separators). ``char_confidences`` has one
    entry per character of ``text``. ``char_probs`` keeps the full (max_len, n_symbols) distribution so
    the tracker can vote position by position; symbol 0 is the end-of-text token and symbol ``i > 0`` is
    ``charset[i - 1]``.
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    char_probs: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    camera_id: str = ""
    frame_index: int = -1
    detector_confidence: float = 1.0


@dataclass(frozen=True)
class PlateEvent:
    """One vehicle passage, as published to the backend (filled in by the tracking/voting stage)."""

    id: str
    camera_id: str
    start_time: float
    end_time: float
    text: str | None
    confidence: float
    char_confidences: tuple[float, ...] = ()
    candidates: tuple[tuple[str, float], ...] = ()
    reads: int = 0
    box: tuple[float, float, float, float] | None = None
    direction: str | None = None
    reason: str | None = None
    extra: dict[str, object] = field(default_factory=dict)
