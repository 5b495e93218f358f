"""What each camera sees right now, for the installer's web page: the latest frame with its overlays.

The inference loop calls ``LiveView.update`` once per processed frame; that only swaps a reference under
a lock held for a dictionary assignment (no copy, no drawing, no encoding), so the loop never waits for
the web page. The frame, detections and tracks it hands over are not modified afterwards (frames are
fresh arrays per read, ``Detections`` and ``Track`` are immutable), so holding references is safe. The
votes are only computed (by the caller's callable, in the inference thread, where the passages live)
while someone has looked at the camera in the last ``WATCH_S`` seconds.

``jpeg(camera_id)`` renders on request, in the HTTP handler's thread: the frame scaled to at most
``max_width`` pixels, the region of interest (outside dimmed), the counting line with an arrow to its
``in`` side, ignored detections (outside the ROI or below the camera's threshold) in grey, each track's
box with its id and voted text (green once confirmed, amber while tentative, dashed while unseen), and a
caption. At most ``max_fps`` renders per camera: requests in between get the last JPEG, so many viewers
cost no more than one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import cv2
import numpy as np

from anpr_edge.regions import ROI_WINDOW_MARGIN, roi_window, tile_windows
from anpr_edge.values import Detections, Frame

WATCH_S = 10.0  # a camera counts as watched this long after its last frame request

# BGR colours.
_GREEN = (80, 200, 60)
_AMBER = (0, 190, 255)
_GREY = (170, 170, 170)
_CYAN = (230, 200, 0)
_ROI = (0, 230, 255)
_TILE = (200, 140, 60)  # the detector's tiles: a quieter blue than the ROI
_LINE = (230, 60, 230)
_BLACK = (0, 0, 0)
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class TrackOverlay:
    """One track as drawn: its box in frame pixels, id, voted text and confidence."""

    id: int
    box: tuple[float, float, float, float]
    confirmed: bool
    seen: bool  # detected in this frame (else coasting on its motion model)
    text: str | None = None
    confidence: float | None = None


@dataclass
class _Snapshot:
    frame: Frame
    detections: Detections | None
    ignored: Detections | None
    tracks: tuple[Any, ...]
    votes: Mapping[int, Any] | None
    roi: tuple[tuple[float, float], ...] | None
    window: tuple[int, int, int, int] | None  # what the detector looks at, when not the whole frame
    tiles: tuple[tuple[int, int, int, int], ...]  # the tiles it also looks at (detect_tiles > 1), else ()
    tile_grid: int  # detect_tiles: the tiles are tile_grid x tile_grid
    line: Any  # CountingLineConfig or None
    updated: float
    seq: int


@dataclass
class _Camera:
    snapshot: _Snapshot | None = None
    watched_until: float = float("-inf")
    render_lock: threading.Lock = field(default_factory=threading.Lock)
    jpeg: bytes | None = None
    jpeg_seq: int = -1
    jpeg_at: float = float("-inf")
    renders: int = 0


class LiveView:
    """Per camera, the latest frame and what the pipeline made of it; JPEGs rendered lazily."""

    def __init__(
        self,
        *,
        max_fps: float = 5.0,
        max_width: int = 960,
        jpeg_quality: int = 75,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_fps = max_fps
        self.max_width = max_width
        self.jpeg_quality = jpeg_quality
        self._clock = clock
        self._lock = threading.Lock()
        self._cameras: dict[str, _Camera] = {}
        self._seq = 0

    # --------------------------------------------------------------------------- inference side
    def watched(self, camera_id: str) -> bool:
        camera = self._cameras.get(camera_id)
        return camera is not None and self._clock() < camera.watched_until

    def update(
        self,
        frame: Frame,
        detections: Detections | None = None,
        tracks: Sequence[Any] = (),
        votes: Mapping[int, Any] | Callable[[], Mapping[int, Any]] | None = None,
        *,
        ignored: Detections | None = None,
        camera: Any = None,
    ) -> None:
        """The latest processed frame of ``frame.camera_id``. ``tracks``: the live ``Track``s after this
        frame; ``votes``: track id -> ``Vote`` (or a callable giving them, called only while watched);
        ``ignored``: detections the camera's filter dropped; ``camera``: its ``CameraConfig`` (ROI, line)."""
        if callable(votes):
            votes = votes() if self.watched(frame.camera_id) else None
        roi = getattr(camera, "roi", None)
        margin = getattr(camera, "detect_margin", ROI_WINDOW_MARGIN)
        window = roi_window(roi, frame.image.shape, margin) if roi and getattr(camera, "detect_in_roi", False) else None
        tile_count = int(getattr(camera, "detect_tiles", 1) or 1)
        tiles = tile_windows(window or (0, 0, frame.width, frame.height), tile_count) if tile_count > 1 else []
        snapshot = _Snapshot(
            frame=frame, detections=detections, ignored=ignored, tracks=tuple(tracks), votes=votes,
            roi=tuple(tuple(p) for p in roi) if roi else None,
            window=window if window != (0, 0, frame.width, frame.height) else None,
            tiles=tuple(tiles), tile_grid=tile_count,
            line=getattr(camera, "counting_line", None),
            updated=self._clock(), seq=0,
        )
        with self._lock:
            self._seq += 1
            snapshot.seq = self._seq
            entry = self._cameras.get(frame.camera_id)
            if entry is None:
                entry = self._cameras[frame.camera_id] = _Camera()
            entry.snapshot = snapshot

    def remove(self, camera_id: str) -> None:
        with self._lock:
            self._cameras.pop(camera_id, None)

    # -------------------------------------------------------------------------------- web side
    def cameras(self) -> list[str]:
        with self._lock:
            return sorted(c for c, entry in self._cameras.items() if entry.snapshot is not None)

    def info(self, camera_id: str) -> dict[str, Any] | None:
        """Size, index, time and age of the latest frame, and the tracks in it (None: no frame yet)."""
        with self._lock:
            entry = self._cameras.get(camera_id)
            snapshot = entry.snapshot if entry is not None else None
        if snapshot is None:
            return None
        frame = snapshot.frame
        return {
            "width": frame.width, "height": frame.height, "index": frame.index,
            "time": _iso(frame.timestamp), "age_s": round(max(0.0, self._clock() - snapshot.updated), 2),
            "tracks": [_track_json(t) for t in overlays(snapshot.tracks, snapshot.votes)],
        }

    def jpeg(self, camera_id: str) -> bytes | None:
        """The latest annotated frame as JPEG (None: no frame yet). Marks the camera as watched."""
        with self._lock:
            entry = self._cameras.get(camera_id)
            if entry is None:
                entry = self._cameras[camera_id] = _Camera()  # remember the watcher for the first update
            now = self._clock()
            entry.watched_until = now + WATCH_S
            snapshot = entry.snapshot
        if snapshot is None:
            return None
        with entry.render_lock:  # viewers of one camera share one render
            fresh = entry.jpeg is not None and (
                entry.jpeg_seq == snapshot.seq or now - entry.jpeg_at < 1.0 / max(self.max_fps, 0.01))
            if fresh:
                return entry.jpeg
            image = render(snapshot, max_width=self.max_width)
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
            if not ok:
                return entry.jpeg
            entry.jpeg, entry.jpeg_seq, entry.jpeg_at = encoded.tobytes(), snapshot.seq, self._clock()
            entry.renders += 1
            return entry.jpeg


# ------------------------------------------------------------------------------------------ drawing
def overlays(tracks: Sequence[Any], votes: Mapping[int, Any] | None) -> list[TrackOverlay]:
    """``Track``s and their votes as ``TrackOverlay``s (the voted text only when there is one)."""
    result = []
    for track in tracks:
        seen = getattr(track, "detection", None) is not None
        box = track.box if seen else getattr(track, "predicted_box", track.box)
        vote = (votes or {}).get(track.id)
        text = getattr(vote, "text", None) or None
        confidence = float(vote.confidence) if vote is not None and text else None
        result.append(TrackOverlay(int(track.id), tuple(float(v) for v in box), bool(track.confirmed), seen,
                                   text, confidence))
    return result


def _track_json(track: TrackOverlay) -> dict[str, Any]:
    return {"id": track.id, "box": [round(v, 1) for v in track.box], "confirmed": track.confirmed,
            "seen": track.seen, "text": track.text,
            "confidence": None if track.confidence is None else round(track.confidence, 4)}


def _iso(epoch: float) -> str:
    from anpr_edge.events import format_time

    return format_time(epoch)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def _label(canvas: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    """Text on a filled box whose bottom-left is at (x, y), kept inside the canvas."""
    thickness = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    height, width = canvas.shape[:2]
    x = int(min(max(0, x), max(0, width - w - 4)))
    y = int(min(max(h + base + 2, y), height))
    cv2.rectangle(canvas, (x, y - h - base - 4), (x + w + 4, y), colour, -1)
    brightness = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
    cv2.putText(canvas, text, (x + 2, y - base - 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                _BLACK if brightness > 128 else _WHITE, thickness, cv2.LINE_AA)


def _dashed_rectangle(canvas: np.ndarray, p1: tuple[int, int], p2: tuple[int, int],
                      colour: tuple[int, int, int], thickness: int, dash: int = 6) -> None:
    (x1, y1), (x2, y2) = p1, p2
    for a, b, fixed, horizontal in ((x1, x2, y1, True), (x1, x2, y2, True), (y1, y2, x1, False), (y1, y2, x2, False)):
        for start in range(min(a, b), max(a, b), dash * 2):
            end = min(start + dash, max(a, b))
            if horizontal:
                cv2.line(canvas, (start, fixed), (end, fixed), colour, thickness)
            else:
                cv2.line(canvas, (fixed, start), (fixed, end), colour, thickness)


def render(snapshot: _Snapshot, *, max_width: int = 960) -> np.ndarray:
    """The snapshot's frame (scaled to ``max_width`` at most) with every overlay drawn on a copy."""
    image = _as_bgr(snapshot.frame.image)
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    height, width = image.shape[:2]
    scale = min(1.0, max_width / max(width, 1))
    if scale < 1.0:
        canvas = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))),
                            interpolation=cv2.INTER_AREA)
    else:
        canvas = image.copy()
    ch, cw = canvas.shape[:2]
    text_scale = max(0.35, min(1.0, cw / 1400))
    thick = max(1, round(cw / 500))

    def point(x: float, y: float) -> tuple[int, int]:  # frame pixels -> canvas pixels
        return int(round(x * scale)), int(round(y * scale))

    if snapshot.roi:
        polygon = np.array([[x * cw, y * ch] for x, y in snapshot.roi], np.int32).reshape(-1, 1, 2)
        mask = np.zeros((ch, cw), np.uint8)
        cv2.fillPoly(mask, [polygon], 255)
        outside = mask == 0
        canvas[outside] = (canvas[outside] * 0.45).astype(np.uint8)
        cv2.polylines(canvas, [polygon], True, _ROI, thick, cv2.LINE_AA)
        top = polygon.reshape(-1, 2)[np.argmin(polygon.reshape(-1, 2)[:, 1])]
        _label(canvas, "ROI", int(top[0]), int(top[1]) + 2, _ROI, text_scale)
    if snapshot.window is not None:  # the detector sees only this: a plate outside it is never found
        x1, y1, x2, y2 = snapshot.window
        cv2.rectangle(canvas, point(x1, y1), point(x2 - 1, y2 - 1), _ROI, 1, cv2.LINE_AA)
        _label(canvas, "detector", point(x1, y1)[0] + 2, point(x1, y1)[1] + int(24 * text_scale), _ROI, text_scale * 0.8)
    for n, (x1, y1, x2, y2) in enumerate(snapshot.tiles):  # detect_tiles: what each tile of the batch covers
        cv2.rectangle(canvas, point(x1, y1), point(x2 - 1, y2 - 1), _TILE, 1, cv2.LINE_4)
        if n == 0:
            side = snapshot.tile_grid
            _label(canvas, f"tiles {side}x{side}", point(x1, y1)[0] + 2, point(x1, y2 - 1)[1] - 4, _TILE, text_scale * 0.8)

    line = snapshot.line
    if line is not None:
        sx, sy = line.start[0] * cw, line.start[1] * ch
        ex, ey = line.end[0] * cw, line.end[1] * ch
        cv2.line(canvas, (int(sx), int(sy)), (int(ex), int(ey)), _LINE, thick + 1, cv2.LINE_AA)
        dx, dy = ex - sx, ey - sy
        norm = max(float(np.hypot(dx, dy)), 1e-9)
        nx, ny = (-dy / norm, dx / norm) if line.in_side == "right" else (dy / norm, -dx / norm)
        mx, my = (sx + ex) / 2, (sy + ey) / 2
        length = max(20.0, 0.06 * max(cw, ch))
        tip = (int(mx + nx * length), int(my + ny * length))
        cv2.arrowedLine(canvas, (int(mx), int(my)), tip, _LINE, thick + 1, cv2.LINE_AA, tipLength=0.35)
        (label_w, label_h), _ = cv2.getTextSize("IN", cv2.FONT_HERSHEY_SIMPLEX, text_scale, 1)
        lx, ly = mx + nx * (length + 6), my + ny * (length + 6)  # beyond the arrow's tip
        _label(canvas, "IN", int(lx - label_w / 2 + nx * label_w / 2), int(ly + (label_h + 6) * max(ny, 0) + 3),
               _LINE, text_scale)

    if snapshot.ignored is not None:
        for x1, y1, x2, y2 in snapshot.ignored.xyxy:
            cv2.rectangle(canvas, point(x1, y1), point(x2, y2), _GREY, 1, cv2.LINE_AA)

    drawn = set()
    for track in overlays(snapshot.tracks, snapshot.votes):
        p1, p2 = point(track.box[0], track.box[1]), point(track.box[2], track.box[3])
        colour = _GREEN if track.confirmed else _AMBER
        if track.seen:
            cv2.rectangle(canvas, p1, p2, colour, thick + 1, cv2.LINE_AA)
        else:
            _dashed_rectangle(canvas, p1, p2, colour, thick)
        caption = f"#{track.id}"
        if track.text:
            caption += f" {track.text} {track.confidence:.0%}" if track.confidence is not None else f" {track.text}"
        _label(canvas, caption, p1[0], p1[1] - 2, colour, text_scale)
        if track.seen:
            drawn.add((p1, p2))
    if snapshot.detections is not None:  # detections no track took (yet): thin cyan
        for x1, y1, x2, y2 in snapshot.detections.xyxy:
            p1, p2 = point(x1, y1), point(x2, y2)
            if (p1, p2) not in drawn:
                cv2.rectangle(canvas, p1, p2, _CYAN, 1, cv2.LINE_AA)

    frame = snapshot.frame
    stamp = datetime.fromtimestamp(frame.timestamp, tz=timezone.utc).strftime("%H:%M:%S")
    _label(canvas, f"{frame.camera_id}  #{frame.index}  {stamp} UTC  {frame.width}x{frame.height}",
           0, ch, (40, 40, 40), text_scale)
    return canvas
