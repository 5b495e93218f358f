"""Capture threads: reconnect backoff, the frame hand-off policies, and state changes on failures."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest

from anpr_edge.camera_worker import Backoff, CameraState, CameraWorker, FrameSlot, RateMeter
from anpr_edge.errors import SourceError
from anpr_edge.source_spec import SourceSpec
from anpr_edge.sources import FrameSource, SourceOptions
from anpr_edge.values import Frame


def frame(index: int) -> Frame:
    return Frame("cam", index, float(index), np.zeros((4, 4, 3), np.uint8))


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, jitter=0.2, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(6)]
    for delay, nominal in zip(delays, [1, 2, 4, 8, 8, 8]):
        assert nominal * 0.8 <= delay <= nominal * 1.2
    assert len({round(d, 6) for d in delays[3:]}) == 3  # jittered: cameras do not retry in lock step
    backoff.reset()
    assert backoff.next_delay() <= 1.2


def test_latest_frame_wins_for_live_sources() -> None:
    ready = threading.Condition()
    slot = FrameSlot(keep_all=False, ready=ready)
    stop = threading.Event()
    for i in range(3):
        slot.put(frame(i), stop)
    with ready:
        assert slot.take().index == 2 and slot.take() is None
    assert slot.dropped == 2


def test_keep_all_waits_for_the_consumer() -> None:
    ready = threading.Condition()
    slot = FrameSlot(keep_all=True, ready=ready)
    stop = threading.Event()
    slot.put(frame(0), stop)
    second = threading.Thread(target=slot.put, args=(frame(1), stop))
    second.start()
    time.sleep(0.3)
    assert second.is_alive()  # blocked: the first frame was not taken yet
    with ready:
        assert slot.take().index == 0
    second.join(2)
    with ready:
        assert slot.take().index == 1
    assert slot.dropped == 0


def test_rate_meter() -> None:
    now = [0.0]
    meter = RateMeter(window_s=5.0, clock=lambda: now[0])
    for _ in range(11):
        meter.tick()
        now[0] += 0.1
    assert meter.rate() == pytest.approx(10.0, rel=0.1)
    now[0] += 10
    assert meter.rate() == 0.0


class FlakySource(FrameSource):
    """Fails to open ``open_failures`` times, then delivers ``frames`` frames, then ends or fails."""

    def __init__(self, open_failures: int, frames: int, *, retryable: bool = True) -> None:
        super().__init__("cam", SourceSpec("stream", "rtsp://127.0.0.1/x"), SourceOptions())
        self.open_failures, self.frames, self.retryable = open_failures, frames, retryable
        self.delivered = 0

    def open(self) -> None:
        if self.open_failures > 0:
            self.open_failures -= 1
            raise SourceError("camera 'cam': cannot open", retryable=self.retryable)
        self.stats.opens += 1

    def read(self) -> Frame | None:
        if self.delivered >= self.frames:
            return None
        self.delivered += 1
        self.stats.frames_read += 1
        return frame(self.delivered)

    def close(self) -> None:
        pass


def test_worker_retries_a_failing_source_then_streams_to_the_end() -> None:
    ready = threading.Condition()
    states: list[CameraState] = []
    source = FlakySource(open_failures=2, frames=3)
    worker = CameraWorker("cam", source, ready, backoff=Backoff(0.01, 0.02), on_status=lambda w: states.append(w.state))
    worker.slot.keep_all = True  # take every frame, as for a file read as fast as possible
    worker.start()
    taken = []
    deadline = time.monotonic() + 5
    while not worker.finished and time.monotonic() < deadline:
        with ready:
            got = worker.slot.take()
            if got is None:
                ready.wait(0.05)
        if got is not None:
            taken.append(got.index)
    assert taken == [1, 2, 3]
    assert worker.reconnects == 2 and worker.state is CameraState.ENDED
    assert states == [CameraState.RECONNECTING, CameraState.RECONNECTING, CameraState.STREAMING, CameraState.ENDED]


def test_worker_gives_up_on_a_source_retrying_cannot_fix() -> None:
    worker = CameraWorker("cam", FlakySource(1, 3, retryable=False), threading.Condition(), backoff=Backoff(0.01, 0.02))
    worker.start()
    assert worker.join(5)
    assert worker.state is CameraState.FAILED and worker.reconnects == 0
    assert "cannot open" in (worker.last_error or "")


def test_stop_interrupts_the_backoff_wait() -> None:
    worker = CameraWorker("cam", FlakySource(100, 0), threading.Condition(), backoff=Backoff(30.0, 60.0))
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    worker.stop()
    assert worker.join(2) and time.monotonic() - started < 1.0
    assert worker.state is CameraState.STOPPED
