"""Frame sources: video files, network streams (RTSP/HTTP) and local cameras, behind one interface.

``open_source(camera)`` gives a ``FrameSource``: ``open()``, then ``read()`` until it returns ``None``
(a finite file ended) or raises ``SourceError`` (cannot open, stalled, disconnected), then ``close()``.
A closed source can be opened again, which is all a reconnect needs: the service (not the source) owns
the retry policy, so one camera's backoff never blocks another.

- ``FileSource`` decodes in the caller's thread, either as fast as the caller reads or paced at the
  clip's native rate (``realtime``), optionally looping.
- ``LiveSource`` (streams, cameras) runs its own reader thread that keeps only the newest frame: a slow
  pipeline sees fresh frames and a count of the dropped ones, never a growing queue of stale ones.

Every blocking step is bounded: OpenCV's FFmpeg backend would otherwise wait 30 s on a dead stream.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from anpr_edge.errors import SourceError
from anpr_edge.source_spec import SourceSpec
from anpr_edge.values import Frame

if TYPE_CHECKING:
    from anpr_edge.config import CameraConfig

log = logging.getLogger(__name__)

# OpenCV's own capture warnings ("[ WARN:0@1.2] global cap_ffmpeg...") are noise next to our messages,
# which name the camera and the problem.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

# OPENCV_FFMPEG_CAPTURE_OPTIONS is process-wide and read when a capture opens, so opens that set it are
# serialised.
_FFMPEG_OPTIONS_LOCK = threading.Lock()


@dataclass(frozen=True)
class SourceOptions:
    """How to read a source; built from a camera's config (see ``CameraConfig`` for the meaning)."""

    realtime: bool = False
    loop: bool = False
    fps_limit: float | None = None
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    rtsp_transport: str = "tcp"


@dataclass
class SourceStats:
    """Counters for metrics and status: frames delivered, dropped by the latest-frame policy, skipped by
    the fps limit, and (re)opens."""

    frames_read: int = 0
    frames_dropped: int = 0
    frames_skipped: int = 0
    opens: int = 0


class _FpsLimiter:
    """Keeps at most ``fps`` frames per second of frame time (media time for files, wall time for live)."""

    def __init__(self, fps: float | None) -> None:
        self.interval = 1.0 / fps if fps else 0.0
        self._next_due = -math.inf

    def reset(self) -> None:
        self._next_due = -math.inf

    def wait_s(self, now: float) -> float:
        return max(0.0, self._next_due - now)

    def accept(self, t: float) -> bool:
        if not self.interval:
            return True
        # A small tolerance so a 25 fps clip limited to 5 fps keeps exactly every 5th frame.
        if t + 1e-3 < self._next_due:
            return False
        # Schedule from the due time so the average rate holds under jitter, but restart from t after a
        # gap so a stall is not followed by a burst.
        behind = self._next_due == -math.inf or t - self._next_due >= self.interval
        self._next_due = t + self.interval if behind else self._next_due + self.interval
        return True


class FrameSource(ABC):
    """One camera's frames. Not thread-safe: one consumer per source."""

    def __init__(self, camera_id: str, spec: SourceSpec, options: SourceOptions) -> None:
        self.camera_id = camera_id
        self.spec = spec
        self.options = options
        self.stats = SourceStats()
        self._limiter = _FpsLimiter(options.fps_limit)

    @abstractmethod
    def open(self) -> None:
        """Open (or reopen) the source. Raises ``SourceError``."""

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame; ``None`` when a finite source has ended. Raises ``SourceError``."""

    @abstractmethod
    def close(self) -> None:
        """Release the source; safe to call twice. ``open()`` may be called again afterwards."""

    @property
    def native_fps(self) -> float | None:
        return None

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(camera={self.camera_id!r}, source={str(self.spec)!r})"


# ------------------------------------------------------------------------------------------------ files
class FileSource(FrameSource):
    """A video file, decoded on demand in the caller's thread."""

    def __init__(
        self,
        camera_id: str,
        spec: SourceSpec,
        options: SourceOptions = SourceOptions(),
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(camera_id, spec, options)
        self._clock, self._sleep, self._wall_clock = clock, sleep, wall_clock
        self._capture: cv2.VideoCapture | None = None
        self._fps = 0.0
        self._index = 0
        self._loop_offset_s = 0.0
        self._last_pts = 0.0
        self._start_wall = 0.0
        self._start_mono = 0.0

    @property
    def native_fps(self) -> float | None:
        return self._fps or None

    def _open_capture(self) -> cv2.VideoCapture:
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.options.open_timeout_s * 1000)]
        capture = cv2.VideoCapture(self.spec.uri, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            if not os.path.isfile(self.spec.uri):
                raise SourceError(f"camera '{self.camera_id}': video file not found: {self.spec.uri}")
            raise SourceError(f"camera '{self.camera_id}': cannot decode {self.spec.uri} (not a video OpenCV reads)")
        return capture

    def open(self) -> None:
        self.close()
        self._capture = self._open_capture()
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        if not (fps and math.isfinite(fps) and 0 < fps < 1000):
            log.warning("camera '%s': %s reports no frame rate; assuming 25 fps", self.camera_id, self.spec)
            fps = 25.0
        self._fps = float(fps)
        self._index = 0
        self._loop_offset_s = 0.0
        self._last_pts = 0.0
        self._start_wall = self._wall_clock()
        self._start_mono = self._clock()
        self._limiter.reset()
        self.stats.opens += 1

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _decode(self) -> tuple[np.ndarray, float] | None:
        """Next decoded image and its media time; rewinds at the end when looping."""
        assert self._capture is not None
        for attempt in range(2):
            ok, image = self._capture.read()
            if ok and image is not None:
                # Frame-count timing, not CAP_PROP_POS_MSEC: it is exact for constant-rate clips and
                # keeps increasing across loops.
                return image, self._index / self._fps
            if attempt == 0 and self.options.loop and self._index > 0:
                self._capture.release()
                self._capture = self._open_capture()
                continue
            break
        if self._index == 0:
            raise SourceError(f"camera '{self.camera_id}': no frame could be decoded from {self.spec.uri}")
        return None

    def read(self) -> Frame | None:
        if self._capture is None:
            raise SourceError(f"camera '{self.camera_id}': source is not open")
        while True:
            decoded = self._decode()
            if decoded is None:
                return None
            image, pts = decoded
            index = self._index
            self._index += 1
            if not self._limiter.accept(pts):
                self.stats.frames_skipped += 1
                continue
            if self.options.realtime:
                delay = self._start_mono + pts - self._clock()
                if delay > 0:
                    self._sleep(delay)
            self.stats.frames_read += 1
            return Frame(self.camera_id, index, self._start_wall + pts, image, pts)


# ------------------------------------------------------------------------------------- streams, cameras
class LiveSource(FrameSource):
    """A network stream or local camera, read by a background thread that keeps only the newest frame."""

    def __init__(self, camera_id: str, spec: SourceSpec, options: SourceOptions = SourceOptions()) -> None:
        super().__init__(camera_id, spec, options)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._latest: tuple[np.ndarray, float, float | None] | None = None
        self._seq = 0  # frames received by the reader thread
        self._taken_seq = 0  # last frame handed to the consumer
        self._opened = False
        self._error: SourceError | None = None
        self._fps: float | None = None

    @property
    def native_fps(self) -> float | None:
        return self._fps

    def _describe(self) -> str:
        what = "stream" if self.spec.kind == "stream" else "camera device"
        return f"camera '{self.camera_id}': {what} {self.spec}"

    def _create_capture(self) -> cv2.VideoCapture:
        open_ms = int(self.options.open_timeout_s * 1000)
        read_ms = int(self.options.read_timeout_s * 1000)
        if self.spec.kind == "device":
            target: str | int = self.spec.device_index if self.spec.device_index is not None else self.spec.uri
            return cv2.VideoCapture(target, cv2.CAP_V4L2)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms]
        if not self.spec.uri.lower().startswith(("rtsp://", "rtsps://")):
            return cv2.VideoCapture(self.spec.uri, cv2.CAP_FFMPEG, params)
        with _FFMPEG_OPTIONS_LOCK:
            saved = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{self.options.rtsp_transport}"
            try:
                return cv2.VideoCapture(self.spec.uri, cv2.CAP_FFMPEG, params)
            finally:
                if saved is None:
                    os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
                else:
                    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = saved

    def open(self) -> None:
        self.close()
        self._stop = threading.Event()
        with self._cond:
            self._latest, self._seq, self._taken_seq = None, 0, 0
            self._opened, self._error = False, None
        self._limiter.reset()
        self._thread = threading.Thread(target=self._run, name=f"capture-{self.camera_id}", daemon=True)
        self._thread.start()
        # The open timeout bounds FFmpeg; the margin covers a V4L2 open, which takes no timeout.
        deadline = time.monotonic() + self.options.open_timeout_s + 2.0
        with self._cond:
            while not self._opened and self._error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._stop.set()
                    raise SourceError(
                        f"{self._describe()}: not opened within {self.options.open_timeout_s:g} s", retryable=True
                    )
                self._cond.wait(remaining)
            if self._error is not None:
                raise self._error
        self.stats.opens += 1

    def _run(self) -> None:
        """Reader thread: owns the capture from open to release, so close() never races a read()."""
        stop = self._stop
        capture = self._create_capture()
        try:
            if not capture.isOpened():
                if self.spec.kind == "device" and self.spec.device_index is None and not os.path.exists(self.spec.uri):
                    self._fail(f"{self._describe()}: device not found (unplugged, or another /dev/videoN?)")
                elif self.spec.kind == "device":
                    self._fail(f"{self._describe()}: cannot open (missing, busy, or no permission: 'video' group?)")
                else:
                    self._fail(f"{self._describe()}: cannot open (unreachable, wrong URL or credentials, or busy)")
                return
            fps = capture.get(cv2.CAP_PROP_FPS)
            self._fps = float(fps) if fps and math.isfinite(fps) and 0 < fps < 1000 else None
            with self._cond:
                self._opened = True
                self._cond.notify_all()
            # FFmpeg returns from a blocked read after the read timeout with a frame its decoder still
            # held, as if all were well: a read that took that long means the stream stalled.
            stall_s = 0.9 * self.options.read_timeout_s
            while not stop.is_set():
                read_started = time.monotonic()
                ok, image = capture.read()
                if stop.is_set():
                    break
                if not ok or image is None:
                    self._fail(f"{self._describe()}: stream ended or read failed")
                    return
                if time.monotonic() - read_started >= stall_s:
                    self._fail(f"{self._describe()}: no frame for {self.options.read_timeout_s:g} s (stalled)")
                    return
                pos_ms = capture.get(cv2.CAP_PROP_POS_MSEC)
                with self._cond:
                    self._latest = (image, time.time(), pos_ms / 1000.0 if pos_ms and pos_ms > 0 else None)
                    self._seq += 1
                    self._cond.notify_all()
        except Exception as error:  # noqa: BLE001 - a crash in the reader must reach the consumer
            self._fail(f"{self._describe()}: capture failed: {error}")
        finally:
            capture.release()

    def _fail(self, message: str) -> None:
        with self._cond:
            self._error = SourceError(message, retryable=True)
            self._cond.notify_all()

    def read(self) -> Frame | None:
        if self._thread is None:
            raise SourceError(f"{self._describe()}: source is not open")
        wait = self._limiter.wait_s(time.time())
        if wait > 0:
            time.sleep(wait)
        deadline = time.monotonic() + self.options.read_timeout_s
        with self._cond:
            while True:
                if self._seq > self._taken_seq and self._latest is not None:
                    image, timestamp, pts = self._latest
                    if self._limiter.accept(timestamp):
                        break
                    self.stats.frames_skipped += self._seq - self._taken_seq
                    self._taken_seq = self._seq
                if self._error is not None:
                    raise self._error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SourceError(
                        f"{self._describe()}: no frame for {self.options.read_timeout_s:g} s (stalled)", retryable=True
                    )
                self._cond.wait(remaining)
            # Frames that arrived since the last read and were overwritten are dropped, on purpose.
            self.stats.frames_dropped += self._seq - self._taken_seq - 1
            self._taken_seq = self._seq
            index = self._seq - 1
        self.stats.frames_read += 1
        return Frame(self.camera_id, index, timestamp, image, pts)

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            # The reader is bounded by the read timeout; if it is still blocked it releases the capture
            # itself when the read returns (it is a daemon thread, so it never holds up exit).
            thread.join(timeout=0.5)


# ------------------------------------------------------------------------------------------------ factory
def source_options(camera: CameraConfig) -> SourceOptions:
    return SourceOptions(
        realtime=camera.realtime,
        loop=camera.loop,
        fps_limit=camera.fps_limit,
        open_timeout_s=camera.open_timeout_s,
        read_timeout_s=camera.read_timeout_s,
        rtsp_transport=camera.rtsp_transport,
    )


def open_source(camera: CameraConfig) -> FrameSource:
    """Create (not yet open) the frame source for a configured camera."""
    return create_source(camera.id, camera.source, source_options(camera))


def create_source(camera_id: str, spec: SourceSpec, options: SourceOptions = SourceOptions()) -> FrameSource:
    if spec.kind == "demo":
        from anpr_edge.demo_clip import default_demo_clip  # generated on first use only

        clip = default_demo_clip()
        return FileSource(camera_id, SourceSpec("file", str(clip.path)), options)
    if spec.kind == "file":
        return FileSource(camera_id, spec, options)
    return LiveSource(camera_id, spec, options)
