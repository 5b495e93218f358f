"""One capture thread per camera: opens its source, reconnects with backoff, hands frames to inference.

The service runs a ``CameraWorker`` per enabled camera. Each worker owns its ``FrameSource`` from open
to close and puts decoded frames into its ``FrameSlot``; the inference loop takes the newest frame of
every camera that has one. A camera that fails (unreachable, stalled, unplugged) is retried on its own
schedule (exponential backoff with jitter, so cameras that dropped together do not reconnect in lock
step), and never blocks another camera or the inference loop.

Hand-off policy, per camera:
- live sources and files played in real time: the newest frame wins; older unprocessed frames are dropped
  and counted, so a slow pipeline works on fresh frames instead of a growing backlog;
- files read as fast as possible (benchmarks, back-filling): nothing is dropped; the worker waits for the
  inference loop to take each frame.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from anpr_edge.errors import SourceError
from anpr_edge.sources import FileSource, FrameSource
from anpr_edge.values import Frame

log = logging.getLogger(__name__)


class CameraState(str, enum.Enum):
    STARTING = "starting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    ENDED = "ended"  # a finite file reached its end
    FAILED = "failed"  # cannot work and retrying would not help (e.g. a missing file)
    STOPPED = "stopped"  # stopped by the service (shutdown, reload)

    @property
    def finished(self) -> bool:
        return self in (CameraState.ENDED, CameraState.FAILED, CameraState.STOPPED)


@dataclass
class Backoff:
    """Reconnect delays: ``initial_s`` doubling per consecutive failure up to ``max_s``, each scaled by a
    random factor in [1 - jitter, 1 + jitter]."""

    initial_s: float = 1.0
    max_s: float = 30.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def next_delay(self) -> float:
        delay = min(self.max_s, self.initial_s * 2.0 ** self.failures)
        self.failures += 1
        return delay * self.rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)

    def reset(self) -> None:
        self.failures = 0


class FrameSlot:
    """The hand-off point between a camera's capture thread and the inference loop."""

    def __init__(self, keep_all: bool, ready: threading.Condition) -> None:
        self.keep_all = keep_all
        self._ready = ready  # shared by all cameras: the inference loop waits on it
        self._frame: Frame | None = None
        self.dropped = 0

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self._ready:
            if self.keep_all:
                while self._frame is not None and not stop.is_set():
                    self._ready.wait(0.2)
                if stop.is_set():
                    return
            elif self._frame is not None:
                self.dropped += 1  # superseded before inference took it
            self._frame = frame
            self._ready.notify_all()

    def take(self) -> Frame | None:
        """The waiting frame, if any (call with the shared condition held)."""
        frame, self._frame = self._frame, None
        if frame is not None:
            self._ready.notify_all()  # a keep-all producer may be waiting for the slot
        return frame

    @property
    def empty(self) -> bool:
        return self._frame is None


class RateMeter:
    """Events per second over a sliding window (frames in, frames processed)."""

    def __init__(self, window_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self._clock = window_s, clock
        self._times: deque[float] = deque()

    def tick(self) -> None:
        now = self._clock()
        self._times.append(now)
        self._trim(now)

    def rate(self) -> float:
        now = self._clock()
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], 1e-6)
        return (len(self._times) - 1) / span if span < self.window_s else len(self._times) / self.window_s

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


StatusCallback = Callable[["CameraWorker"], None]


class CameraWorker:
    """Capture thread of one camera. ``start()``, then frames appear in ``slot``; ``stop()`` ends it."""

    def __init__(
        self,
        camera_id: str,
        source: FrameSource,
        ready: threading.Condition,
        *,
        backoff: Backoff | None = None,
        on_status: StatusCallback | None = None,
        max_frames: int | None = None,
    ) -> None:
        self.camera_id, self.source = camera_id, source
        keep_all = isinstance(source, FileSource) and not source.options.realtime
        self.slot = FrameSlot(keep_all, ready)
        self.backoff = backoff or Backoff()
        self.on_status = on_status
        self.max_frames = max_frames
        self.state = CameraState.STARTING
        self.last_error: str | None = None
        self.reconnects = 0
        self.last_frame_at: float | None = None  # monotonic
        self.frames_in = RateMeter()
        self.frames_processed = RateMeter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> CameraWorker:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the thread to finish; ``join`` waits for it."""
        self._stop.set()
        with self.slot._ready:
            self.slot._ready.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def finished(self) -> bool:
        """Nothing more will come from this camera (its thread ended and its last frame was taken)."""
        return not self._thread.is_alive() and self.slot.empty

    # -------------------------------------------------------------------------------------- thread
    def _set(self, state: CameraState, error: str | None = None) -> None:
        self.state = state
        if error is not None or state is CameraState.STREAMING:
            self.last_error = error
        if self.on_status is not None:
            try:
                self.on_status(self)
            except Exception:  # noqa: BLE001 - a status sink must never kill the capture thread
                log.exception("camera '%s': status callback failed", self.camera_id)

    def _run(self) -> None:
        try:
            self._capture_loop()
        except Exception as error:  # noqa: BLE001 - report, never die silently
            log.exception("camera '%s': capture thread failed", self.camera_id)
            self._set(CameraState.FAILED, f"camera '{self.camera_id}': capture thread failed: {error}")
        finally:
            self.source.close()
            if not self.state.finished:
                self._set(CameraState.STOPPED)

    def _capture_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.source.open()
            except SourceError as error:
                if not self._retry(error):
                    return
                continue
            log.info("camera '%s': opened %s", self.camera_id, self.source.spec)
            self._set(CameraState.STREAMING)
            outcome = self._stream()
            if outcome is not None:
                return
        self._set(CameraState.STOPPED)

    def _stream(self) -> CameraState | None:
        """Read until the source ends (returns the final state) or fails (returns None: reconnect)."""
        first = True
        while not self._stop.is_set():
            try:
                frame = self.source.read()
            except SourceError as error:
                self.source.close()
                return None if self._retry(error) else self.state
            if frame is None or (self.max_frames and self.source.stats.frames_read > self.max_frames):
                self.source.close()
                self._set(CameraState.ENDED)
                return CameraState.ENDED
            if first:
                self.backoff.reset()  # a stream that delivers is healthy again: next failure retries fast
                first = False
            self.last_frame_at = time.monotonic()
            self.frames_in.tick()
            self.slot.put(frame, self._stop)
        self._set(CameraState.STOPPED)
        return CameraState.STOPPED

    def _retry(self, error: SourceError) -> bool:
        """Log the failure and wait out the backoff; False when retrying cannot help or we are stopping."""
        message = str(error)
        if not error.retryable:
            log.error("%s", message)
            self._set(CameraState.FAILED, message)
            return False
        delay = self.backoff.next_delay()
        log.warning("%s; reconnecting in %.1f s", message, delay)
        self.reconnects += 1
        self._set(CameraState.RECONNECTING, message)
        if self._stop.wait(delay):
            self._set(CameraState.STOPPED)
            return False
        return True
