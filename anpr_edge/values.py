"""The typed values that flow between the stages.

source -> ``Frame`` -> detect -> ``Detections`` -> crop -> ``PlateCrop`` -> read -> ``PlateRead``
-> track/vote -> ``PlateEvent`` -> publish.

``Detections`` is one vectorised value per frame (in the style of supervision's ``Detections``): boxes and
scores as numpy arrays, so filtering and mapping are array operations rather than loops over objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

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

    def shifted(self, dx: float, dy: float) -> Detections:
        """The same boxes moved by (dx, dy) pixels: from a window's coordinates to its frame's."""
        if not dx and not dy:
            return self
        return Detections(self.xyxy + np.array([dx, dy, dx, dy], np.float32), self.confidence)


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
    # The box reaches the frame's border (crop.at_frame_edge): the plate is probably cut by it.
    at_frame_edge: bool = False


@dataclass(frozen=True, eq=False)
class PlateRead:
    """What the OCR read on one crop.

    ``text`` is normalised (upper case, model charset only, no separators). ``char_confidences`` has one
    entry per character of ``text``. ``char_probs`` keeps the full (max_len, n_symbols) distribution so
    the tracker can vote position by position; symbol 0 is the end-of-text token and symbol ``i > 0`` is
    ``charset[i - 1]``. ``crop_image`` is the crop that was read, when the reader kept it (the tracker
    weighs reads by crop sharpness).
    """

    text: str
    confidence: float
    char_confidences: tuple[float, ...]
    char_probs: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    camera_id: str = ""
    frame_index: int = -1
    detector_confidence: float = 1.0
    # The crop the OCR read (PlateCrop.image), for crop quality in the vote; kept out of repr().
    crop_image: np.ndarray | None = field(default=None, repr=False)
    # The plate format the text was read under (plate_formats.format_read), None when none was applied.
    format: str | None = None
    # The plate's box reaches the frame's border (crop.at_frame_edge): probably only part of its text.
    at_frame_edge: bool = False


@dataclass(frozen=True)
class ListMatch:
    """The allow/deny list entry a plate matched, and how many edits apart they are."""

    list: Literal["allow", "deny"]
    entry: str
    distance: int = 0


@dataclass(frozen=True, kw_only=True)
class PlateEvent:
    """One vehicle passage, as published to the backend (filled in by the tracking/voting stage).

    Keyword-only: an event has many optional parts and positional construction would silently swap them.
    Times are wall-clock epoch seconds (published as UTC ISO-8601 with milliseconds); the JSON mapping and
    its schema live in ``anpr_edge/events.py``.

    ``id`` identifies the passage for good: it is written to the outbox with the event and every
    (re)delivery carries the same id, so subscribers drop duplicates by it. ``seq`` counts events per
    camera from 1; 0 means "not numbered yet" and the outbox numbers it when the event is stored, so the
    count survives restarts and a gap tells a subscriber that events were dropped.
    """

    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    device_id: str = ""  # empty: the publisher fills in its own device id
    camera_id: str
    seq: int = 0
    start_time: float
    end_time: float
    text: str | None  # None: the passage was seen but not read (see reason), or text_hash replaces it
    confidence: float
    # The vote's score before the calibration map (confidence = map(score)). Not published: benchmarks
    # read it to fit a model's map (anpr-edge fit-calibration).
    score: float | None = None
    reason: str | None = None  # why text is None, e.g. "no legible read", "plate occluded"
    text_hash: str | None = None  # privacy mode: salted hash of the text, which is then not published
    char_confidences: tuple[float, ...] = ()
    candidates: tuple[tuple[str, float], ...] = ()  # top-N alternative texts, best first
    reads: int = 0  # OCR reads that voted for this event
    box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2 in the best frame's pixels
    direction: Literal["in", "out"] | None = None  # from a counting line, when one is configured
    angle: float | None = None  # motion direction in degrees, image coordinates
    # Images stay out of repr(): an event is logged now and then, a JPEG in a log line is noise.
    crop_jpeg: bytes | None = field(default=None, repr=False)  # best plate crop, published base64 ...
    crop_path: str | None = None  # ... or a path to it on the edge box (one of the two, or neither)
    snapshot_jpeg: bytes | None = field(default=None, repr=False)  # optional full frame
    plate_format: str | None = None  # plate format/region the text matched, e.g. "FR"
    matched: ListMatch | None = None  # allow/deny list match, if any
    versions: Mapping[str, str] = field(default_factory=dict)  # software and model versions

    def __post_init__(self) -> None:
        # These are programming errors of the stage that builds events, not user mistakes.
        if self.end_time < self.start_time:
            raise ValueError(f"PlateEvent {self.id}: end_time {self.end_time} is before start_time {self.start_time}")
        if self.seq < 0:
            raise ValueError(f"PlateEvent {self.id}: seq must be >= 0, got {self.seq}")
        if self.text is None and self.text_hash is None and not self.reason:
            raise ValueError(f"PlateEvent {self.id}: an event without text needs a reason")
        if self.text is not None and self.text_hash is not None:
            raise ValueError(f"PlateEvent {self.id}: text_hash replaces text; give one of them")
        if self.crop_jpeg is not None and self.crop_path is not None:
            raise ValueError(f"PlateEvent {self.id}: give crop_jpeg or crop_path, not both")
        if self.direction not in (None, "in", "out"):
            raise ValueError(f"PlateEvent {self.id}: direction must be 'in', 'out' or None, got {self.direction!r}")
