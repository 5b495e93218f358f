"""Follows plates across the frames of one camera (SORT/ByteTrack style).

Each track predicts where its plate is now from a constant-velocity model of its box (corners in pixels
per frame, so a plate that grows as the car approaches is predicted larger). Detections are assigned to
tracks by ``scipy.optimize.linear_sum_assignment`` on a cost of overlap and centre distance to the
predicted box, in two stages as in ByteTrack: confident detections first, against every track; then the
low-confidence ones, which a plate gets when it is small, blurred or half hidden, only against tracks seen
in the previous frame, and only by overlap. Only a confident detection starts a track, and not one nested
with a plate followed in that frame (the same plate boxed twice, with its surroundings); a track is
confirmed after ``min_hits`` detections and ends after ``max_age`` frames unseen (an occlusion shorter
than that keeps its id), or at once when its predicted box has left the frame.

Age counts ``update`` calls (processed frames); motion is per source frame (``frame_index``), so a live
source that drops frames still predicts the right distance.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from anpr_edge.config import TrackingConfig
from anpr_edge.values import Detections

Box = tuple[float, float, float, float]

# Recent observations kept per track: enough for direction and for a consumer to draw the trail, bounded
# so a car parked in view for hours costs nothing more.
HISTORY = 32
# Weight of the newest measurement in the velocity estimate: reacts within a few frames, smooths jitter.
VELOCITY_GAIN = 0.5
# A plate's width changes little from one frame to the next; beyond this factor it is another plate.
MAX_SCALE_CHANGE = 2.0
# A track whose predicted box has less than this fraction of its area inside the frame has left.
MIN_INSIDE = 0.5
_INFEASIBLE = 1e6
# Two boxes of one frame whose intersection covers this much of the smaller one are nested: one plate.
NESTED_OVERLAP = 0.8


@dataclass(frozen=True)
class TrackPoint:
    """One detection of a track."""

    frame_index: int
    timestamp: float
    box: Box
    confidence: float


@dataclass(frozen=True)
class Track:
    """A snapshot of one tracked plate after an ``update``.

    ``box`` is the last detected box and ``predicted_box`` where the motion model puts the plate in the
    latest frame (the same while it is seen). ``detection`` is the index of the box in this frame's
    ``Detections`` that belongs to the track, None while unseen. ``velocity`` is in pixels per source
    frame for (x1, y1, x2, y2). ``history`` holds the most recent detections, oldest first.
    """

    id: int
    box: Box
    predicted_box: Box
    detection: int | None
    confidence: float
    hits: int
    missed: int
    confirmed: bool
    first_frame: int
    last_frame: int
    first_seen: float
    last_seen: float
    first_box: Box
    velocity: tuple[float, float, float, float]
    history: tuple[TrackPoint, ...]

    @property
    def center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return (x1 + x2) / 2.0, (y1 + y2) / 2.0

    @property
    def first_center(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.first_box
        return (x1 + x2) / 2.0, (y1 + y2) / 2.0

    @property
    def duration(self) -> float:
        return self.last_seen - self.first_seen


class _State:
    """The mutable side of a track, owned by the tracker."""

    def __init__(self, track_id: int, frame_index: int, timestamp: float, box: np.ndarray, confidence: float) -> None:
        self.id = track_id
        self.box = box
        self.velocity = np.zeros(4)
        self.confidence = confidence
        self.hits = 1
        self.missed = 0
        self.first_frame = self.last_frame = frame_index
        self.first_seen = self.last_seen = timestamp
        self.first_box = box
        self.history: deque[TrackPoint] = deque([TrackPoint(frame_index, timestamp, _tuple(box), confidence)], HISTORY)

    def predict(self, frame_index: int) -> np.ndarray:
        steps = max(frame_index - self.last_frame, 0)
        box = self.box + self.velocity * steps
        # Keep a shrinking prediction a real box.
        cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
        half_w, half_h = max(box[2] - box[0], 1.0) / 2.0, max(box[3] - box[1], 1.0) / 2.0
        return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])

    def observe(self, frame_index: int, timestamp: float, box: np.ndarray, confidence: float) -> None:
        steps = max(frame_index - self.last_frame, 1)
        measured = (box - self.box) / steps
        self.velocity = measured if self.hits == 1 else (1 - VELOCITY_GAIN) * self.velocity + VELOCITY_GAIN * measured
        self.box, self.confidence = box, confidence
        self.hits += 1
        self.missed = 0
        self.last_frame, self.last_seen = frame_index, timestamp
        self.history.append(TrackPoint(frame_index, timestamp, _tuple(box), confidence))

    def snapshot(self, predicted: np.ndarray, detection: int | None, min_hits: int) -> Track:
        return Track(
            id=self.id,
            box=_tuple(self.box),
            predicted_box=_tuple(predicted),
            detection=detection,
            confidence=self.confidence,
            hits=self.hits,
            missed=self.missed,
            confirmed=self.hits >= min_hits,
            first_frame=self.first_frame,
            last_frame=self.last_frame,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            first_box=_tuple(self.first_box),
            velocity=_tuple(self.velocity),
            history=tuple(self.history),
        )


def _tuple(values: np.ndarray) -> tuple[float, float, float, float]:
    return (float(values[0]), float(values[1]), float(values[2]), float(values[3]))


# ------------------------------------------------------------------------------------------ association
def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4), xyxy."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For every box of ``a`` (N, 4) and of ``b`` (M, 4): their intersection over the smaller box's area
    (1 when one box lies inside the other, whatever their sizes)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    smaller = np.minimum(area_a[:, None], area_b[None, :])
    return np.where(smaller > 0, w * h / np.maximum(smaller, 1e-12), 0.0)


def association_cost(
    predicted: np.ndarray, gaps: np.ndarray, boxes: np.ndarray, *, iou_threshold: float, max_distance: float | None
) -> np.ndarray:
    """(tracks, detections) cost: 1 - IoU plus centre distance in plate widths; ``_INFEASIBLE`` where gated.

    A pair is allowed when the boxes overlap by ``iou_threshold`` or, with ``max_distance`` set, when the
    centres are within ``max_distance`` plate widths of the prediction, a gate that widens with the square
    root of the frames since the track was seen (the prediction's error grows with the gap). The first
    frames of a fast small plate overlap nothing, hence the distance gate; a plate of a very different
    width is never the same one.
    """
    iou = iou_matrix(predicted, boxes)
    p_w = np.maximum(predicted[:, 2] - predicted[:, 0], 1.0)
    d_w = np.maximum(boxes[:, 2] - boxes[:, 0], 1.0)
    p_c = (predicted[:, :2] + predicted[:, 2:]) / 2.0
    d_c = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    distance = np.linalg.norm(p_c[:, None, :] - d_c[None, :, :], axis=2) / p_w[:, None]
    scale = d_w[None, :] / p_w[:, None]
    allowed = iou >= iou_threshold
    if max_distance is not None:
        allowed |= distance <= max_distance * np.sqrt(np.maximum(gaps, 1))[:, None]
    allowed &= (scale <= MAX_SCALE_CHANGE) & (scale >= 1.0 / MAX_SCALE_CHANGE)
    return np.where(allowed, (1.0 - iou) + distance, _INFEASIBLE)


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if cost[r, c] < _INFEASIBLE]


# ---------------------------------------------------------------------------------------------- tracker
class PlateTracker:
    """Tracks the plates of one camera. Call ``update`` once per processed frame, in order.

    ``update`` returns the live tracks (confirmed or not, seen in this frame or coasting through a gap);
    the tracks that ended during that call are in ``ended`` until the next call. ``flush`` ends them all
    (end of stream).
    """

    def __init__(self, config: TrackingConfig | None = None) -> None:
        self.config = config or TrackingConfig()
        self._states: list[_State] = []
        self._ids = itertools.count(1)
        self.ended: tuple[Track, ...] = ()
        self._snapshots: tuple[Track, ...] = ()
        self._last_frame: int | None = None

    @property
    def tracks(self) -> list[Track]:
        """The live tracks as of the last update."""
        return list(self._snapshots)

    def match(self, detections: Detections, frame_index: int) -> dict[int, int]:
        """Which live track each detection would join (detection index -> track id), changing nothing.

        For adaptive compute: the caller can skip the OCR for detections of tracks whose vote is settled.
        ``update`` with the same arguments makes exactly these assignments.
        """
        matches, _ = self._associate(detections, frame_index)
        return {det: self._states[row].id for row, det in matches}

    def update(
        self,
        detections: Detections,
        frame_index: int,
        timestamp: float,
        *,
        frame_size: tuple[int, int] | None = None,
    ) -> list[Track]:
        """Associate this frame's detections, start and end tracks; the live tracks, oldest first.

        ``frame_size`` (width, height), when given, ends a track at once when its predicted box leaves the
        frame instead of waiting ``max_age`` frames.
        """
        cfg = self.config
        matches, new = self._associate(detections, frame_index)
        matched_rows = {row: det for row, det in matches}
        predicted = [s.predict(frame_index) for s in self._states]
        snapshots: list[Track] = []
        survivors: list[_State] = []
        ended: list[Track] = []
        for row, state in enumerate(self._states):
            det = matched_rows.get(row)
            if det is not None:
                state.observe(frame_index, timestamp, detections.xyxy[det].astype(np.float64), float(detections.confidence[det]))
                snapshots.append(state.snapshot(state.box, det, cfg.min_hits))
                survivors.append(state)
                continue
            state.missed += 1
            if state.missed > cfg.max_age or (frame_size is not None and _left_frame(predicted[row], frame_size)):
                ended.append(state.snapshot(predicted[row], None, cfg.min_hits))
            else:
                snapshots.append(state.snapshot(predicted[row], None, cfg.min_hits))
                survivors.append(state)
        for det in new:
            state = _State(
                next(self._ids), frame_index, timestamp, detections.xyxy[det].astype(np.float64), float(detections.confidence[det])
            )
            survivors.append(state)
            snapshots.append(state.snapshot(state.box, det, cfg.min_hits))
        self._states = survivors
        self._snapshots = tuple(snapshots)
        self.ended = tuple(ended)
        self._last_frame = frame_index
        return snapshots

    def flush(self) -> list[Track]:
        """End every live track (the stream ended); they are also left in ``ended``."""
        frame = self._last_frame
        ended = [s.snapshot(s.predict(frame if frame is not None else s.last_frame), None, self.config.min_hits) for s in self._states]
        self._states = []
        self._snapshots = ()
        self.ended = tuple(ended)
        return ended

    def _associate(self, detections: Detections, frame_index: int) -> tuple[list[tuple[int, int]], list[int]]:
        """(track row, detection) matches and the confident detections left over to start tracks."""
        cfg = self.config
        if not self._states:
            return [], [i for i in range(len(detections)) if detections.confidence[i] >= cfg.high_confidence]
        predicted = np.stack([s.predict(frame_index) for s in self._states])
        gaps = np.array([max(frame_index - s.last_frame, 1) for s in self._states], dtype=np.float64)
        high = np.flatnonzero(detections.confidence >= cfg.high_confidence)
        low = np.flatnonzero(detections.confidence < cfg.high_confidence)
        boxes = detections.xyxy.astype(np.float64)

        # Stage 1: confident detections against every track.
        cost = association_cost(predicted, gaps, boxes[high], iou_threshold=cfg.iou_threshold, max_distance=cfg.max_distance)
        matches = [(row, int(high[col])) for row, col in _assign(cost)]
        taken_rows = {row for row, _ in matches}
        taken_high = {det for _, det in matches}

        # Stage 2: weak detections only continue tracks seen in the previous update, and only by overlap.
        rows = [r for r, s in enumerate(self._states) if r not in taken_rows and s.missed == 0]
        if rows and len(low):
            cost = association_cost(predicted[rows], gaps[rows], boxes[low], iou_threshold=cfg.iou_threshold, max_distance=None)
            matches += [(rows[r], int(low[c])) for r, c in _assign(cost)]
        new = [int(det) for det in high if det not in taken_high]
        # A box nested with a plate followed now (a detection that continues a track in this frame, or the
        # predicted box of a track seen in the previous one) is that plate boxed twice: the plate, and the
        # plate with what surrounds it (a grille, a drain grate that looks like a plate, a sign), which NMS
        # keeps as their IoU is low and the tracker cannot match as its size jumps. It starts no track
        # (another event for the same car).
        followed = [boxes[det] for _, det in matches]
        taken_rows = {row for row, _ in matches}
        followed += [predicted[r] for r, s in enumerate(self._states) if r not in taken_rows and s.missed == 0]
        if new and followed:
            nested = (overlap_of_smaller(boxes[new], np.stack(followed)) >= NESTED_OVERLAP).any(axis=1)
            new = [det for det, inside in zip(new, nested) if not inside]
        return matches, new


def _left_frame(box: np.ndarray, frame_size: tuple[int, int]) -> bool:
    width, height = frame_size
    x1, y1, x2, y2 = box
    area = max(x2 - x1, 1e-9) * max(y2 - y1, 1e-9)
    inside = max(min(x2, width) - max(x1, 0.0), 0.0) * max(min(y2, height) - max(y1, 0.0), 0.0)
    return inside < MIN_INSIDE * area


def motion_angle(track: Track, min_shift: float = 0.25) -> float | None:
    """Direction of travel in degrees, image coordinates (0: right, 90: down), from the first to the last
    box centre; None when the plate moved less than ``min_shift`` of its width (standing still)."""
    (x0, y0), (x1, y1) = track.first_center, track.center
    width = max(track.box[2] - track.box[0], 1.0)
    if math.hypot(x1 - x0, y1 - y0) < min_shift * width:
        return None
    return math.degrees(math.atan2(y1 - y0, x1 - x0)) % 360.0
