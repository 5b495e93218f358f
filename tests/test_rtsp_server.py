"""The RTSP test camera itself: serves, loops, and fails the way a dead or stalled camera does."""
import time

import cv2
import numpy as np
import pytest
from servers import RtspServer, rtsp_available

_ok, _why = rtsp_available()
pytestmark = [pytest.mark.rtsp, pytest.mark.skipif(not _ok, reason=_why)]

W, H, FPS, N_FRAMES = 320, 240, 25, 50
READ_TIMEOUT_MS = 3000


@pytest.fixture(scope="module")
def rtsp_clip(tmp_path_factory):
    """A 2 s mp4v clip of a moving rectangle (what cv2.VideoWriter produces, like our users)."""
    path = tmp_path_factory.mktemp("rtsp") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    assert writer.isOpened()
    for i in range(N_FRAMES):
        frame = np.zeros((H, W, 3), np.uint8)
        x = i * (W - 60) // N_FRAMES
        cv2.rectangle(frame, (x, 60), (x + 60, 140), (0, 255, 0), -1)
        cv2.rectangle(frame, (W - 40 - x // 2, 160), (W - x // 2, 200), (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def open_capture(url, monkeypatch, extra_params=()):
    # OpenCV reads this at open time; UDP on loopback can drop packets under load, TCP does not.
    monkeypatch.setenv("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp")
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000,
                                                 cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS,
                                                 *extra_params])
    assert cap.isOpened(), f"cannot open {url}"
    return cap


def seconds_until_read_fails(cap, limit=15.0):
    """Read until read() returns False (frames already buffered may still come out first)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        ok, _ = cap.read()
        if not ok:
            return time.monotonic() - t0
    pytest.fail(f"read() still returning frames {limit} s after the camera went away")


def test_serves_loops_and_dies(rtsp_clip, monkeypatch):
    with RtspServer(rtsp_clip) as server:
        cap = open_capture(server.url, monkeypatch)
        try:
            n = 0
            while n < 2 * N_FRAMES - 20:  # 80 frames: well past the clip's 50, so it looped
                ok, frame = cap.read()
                assert ok, f"read failed after {n} frames; server stderr:\n{server.stderr_text()}"
                assert frame.shape == (H, W, 3)
                n += 1
            assert frame.mean() > 1, "decoded frames are blank"
            server.kill()
            took = seconds_until_read_fails(cap)
            print(f"read() failed {took:.2f} s after kill()")
            assert took < 10
        finally:
            cap.release()


def test_freeze_makes_reads_time_out(rtsp_clip, monkeypatch, record_property):
    # A stalled camera does not make read() return False at once: each read waits out the read
    # timeout and then hands back a frame the parser/decoder was still holding (ok=True), until
    # none are left. The decoder holds about one frame per thread and OpenCV's default is one
    # thread per CPU, so pin it to 1 to keep this test's run time the same on every machine.
    with RtspServer(rtsp_clip) as server:
        cap = open_capture(server.url, monkeypatch, [cv2.CAP_PROP_N_THREADS, 1])
        try:
            for _ in range(2 * FPS):  # drain what open() buffered: later reads come at camera pace
                assert cap.read()[0]
            server.freeze()
            t0 = time.monotonic()
            stale, slowest = 0, 0.0
            while True:
                t = time.monotonic()
                ok, _ = cap.read()
                slowest = max(slowest, time.monotonic() - t)
                if not ok:
                    break
                stale += 1
                assert time.monotonic() - t0 < 15, "read() keeps returning frames from a frozen camera"
            took = time.monotonic() - t0
            record_property("freeze_read_fail_s", round(took, 2))
            record_property("freeze_stale_frames", stale)
            print(f"read() failed {took:.2f} s after freeze(), after {stale} stale frame(s); "
                  f"slowest read {slowest:.2f} s (read timeout {READ_TIMEOUT_MS} ms)")
            assert took < 15
            assert slowest < READ_TIMEOUT_MS / 1000 + 2, "a single read() outlived the read timeout"
            server.resume()
            assert server.running
        finally:
            cap.release()
