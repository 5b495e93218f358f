"""Frame sources: video files (paced or not, limited, looping), a real RTSP server, and devices."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from servers import RtspServer, free_port, rtsp_available

from anpr_edge.errors import SourceError
from anpr_edge.source_spec import SourceSpec
from anpr_edge.sources import FileSource, LiveSource, SourceOptions

FPS = 25.0
FRAMES = 50
SIZE = (320, 240)


def frame_number(image: np.ndarray) -> int:
    """Frames carry their number as the position of a white bar (survives lossy re-encoding)."""
    columns = image[..., 1].astype(np.float32).mean(axis=0)
    return int(round((float(np.argmax(np.convolve(columns, np.ones(6), "valid"))) ) / 6.0))


def make_clip(path: Path, frames: int = FRAMES) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, SIZE)
    for n in range(frames):
        image = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        image[:, 6 * n : 6 * n + 6] = 255
        writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "count.mp4")


def file_source(path: Path, **options: object) -> FileSource:
    return FileSource("cam", SourceSpec("file", str(path)), SourceOptions(**options))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ files
def test_file_frames_carry_camera_index_and_time(clip: Path) -> None:
    with file_source(clip) as source:
        frames = list(source)
    assert len(frames) == FRAMES and source.native_fps == pytest.approx(FPS)
    assert [f.index for f in frames] == list(range(FRAMES))
    assert all(f.camera_id == "cam" and f.image.shape == (240, 320, 3) for f in frames)
    assert [frame_number(f.image) for f in frames[:5]] == [0, 1, 2, 3, 4]
    assert frames[10].pts == pytest.approx(10 / FPS)
    assert frames[10].timestamp - frames[0].timestamp == pytest.approx(10 / FPS)
    assert abs(frames[0].timestamp - time.time()) < 60
    assert source.stats.frames_read == FRAMES


def test_file_fps_limit_keeps_every_nth_frame(clip: Path) -> None:
    with file_source(clip, fps_limit=5.0) as source:
        indices = [f.index for f in source]
    assert indices == list(range(0, FRAMES, 5))
    assert source.stats.frames_skipped == FRAMES - len(indices)


def test_file_loop_continues_indices_and_time(clip: Path) -> None:
    with file_source(clip, loop=True) as source:
        frames = [source.read() for _ in range(FRAMES + 10)]
    assert all(f is not None for f in frames)
    assert frames[-1].index == FRAMES + 9  # type: ignore[union-attr]
    assert frame_number(frames[FRAMES].image) == 0  # type: ignore[union-attr]  # rewound
    assert frames[FRAMES].pts == pytest.approx(FRAMES / FPS)  # type: ignore[union-attr]  # time keeps going


def test_file_realtime_paces_at_native_rate(clip: Path) -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    source = FileSource("cam", SourceSpec("file", str(clip)), SourceOptions(realtime=True), clock=lambda: now[0], sleep=sleep)
    with source:
        for _ in range(10):
            source.read()
    # Frame n is due at n / fps after the start: with an instant pipeline every frame waits one interval.
    assert sleeps == pytest.approx([1 / FPS] * 9)
    fast = FileSource("cam", SourceSpec("file", str(clip)), SourceOptions(realtime=False), clock=lambda: now[0], sleep=sleep)
    sleeps.clear()
    with fast:
        list(fast)
    assert sleeps == []


def test_file_reopen_restarts(clip: Path) -> None:
    source = file_source(clip)
    source.open()
    source.read(), source.read()
    source.close()
    source.close()  # idempotent
    source.open()
    frame = source.read()
    assert frame is not None and frame.index == 0 and source.stats.opens == 2
    source.close()


def test_file_that_is_not_a_video(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is text, not video\n" * 100)
    with pytest.raises(SourceError, match=f"camera 'cam': cannot decode {bad}"):
        file_source(bad).open()
    gone = tmp_path / "gone.mp4"
    with pytest.raises(SourceError, match="video file not found"):
        file_source(gone).open()
    with pytest.raises(SourceError, match="not open"):
        file_source(bad).read()


# ----------------------------------------------------------------------------------------------- RTSP
rtsp = pytest.mark.skipif(not rtsp_available()[0], reason=rtsp_available()[1] or "RTSP server available")


def live(url: str, **options: object) -> LiveSource:
    defaults: dict[str, object] = {"open_timeout_s": 5.0, "read_timeout_s": 3.0}
    defaults.update(options)
    return LiveSource("gate", SourceSpec("stream", url), SourceOptions(**defaults))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def rtsp_server(clip: Path):  # noqa: ANN201
    ok, reason = rtsp_available()
    if not ok:
        pytest.skip(reason)
    with RtspServer(clip) as server:  # started on enter
        yield server


@pytest.mark.rtsp
@rtsp
def test_rtsp_frames(rtsp_server: RtspServer) -> None:
    with live(rtsp_server.url) as source:
        frames = [source.read() for _ in range(20)]
    assert all(f is not None and f.image.shape == (240, 320, 3) and f.camera_id == "gate" for f in frames)
    indices = [f.index for f in frames]  # type: ignore[union-attr]
    assert indices == sorted(set(indices))
    stamps = [f.timestamp for f in frames]  # type: ignore[union-attr]
    assert stamps == sorted(stamps) and abs(stamps[-1] - time.time()) < 5


@pytest.mark.rtsp
@rtsp
def test_rtsp_slow_consumer_gets_latest_frame_not_a_backlog(rtsp_server: RtspServer) -> None:
    with live(rtsp_server.url) as source:
        first = source.read()
        time.sleep(1.2)  # a slow pipeline: ~30 frames arrive meanwhile
        latest = source.read()
        following = source.read()
    assert first is not None and latest is not None and following is not None
    assert latest.index - first.index > 10  # jumped ahead: the frames in between were dropped, not queued
    assert source.stats.frames_dropped >= latest.index - first.index - 1
    assert following.index - latest.index <= 3  # and then it keeps up with the live stream
    assert latest.timestamp - first.timestamp > 1.0


@pytest.mark.rtsp
@rtsp
def test_rtsp_fps_limit(rtsp_server: RtspServer) -> None:
    with live(rtsp_server.url, fps_limit=5.0) as source:
        frames = [source.read() for _ in range(6)]
    span = frames[-1].timestamp - frames[0].timestamp  # type: ignore[union-attr]
    assert span >= 0.9  # 5 intervals of 0.2 s (a lower bound, not a speed measurement)


@pytest.mark.rtsp
@rtsp
@pytest.mark.slow
def test_rtsp_killed_server_fails_then_reconnects(clip: Path) -> None:
    port = free_port()
    server = RtspServer(clip, port=port).start()
    source = live(server.url)
    try:
        source.open()
        assert source.read() is not None
        server.kill()
        started = time.monotonic()
        with pytest.raises(SourceError) as caught:
            for _ in range(500):
                source.read()
        assert caught.value.retryable
        assert time.monotonic() - started < 10
        source.close()
        with pytest.raises(SourceError, match="cannot open") as refused:
            source.open()  # nothing listens now
        assert refused.value.retryable
        # The camera comes back: the same source object reconnects.
        server = RtspServer(clip, port=port).start()
        source.open()
        assert source.read() is not None and source.stats.opens == 2
    finally:
        source.close()
        server.stop()


@pytest.mark.rtsp
@rtsp
@pytest.mark.slow
def test_rtsp_stalled_server_is_detected_within_the_read_timeout(clip: Path) -> None:
    with RtspServer(clip) as server:
        source = live(server.url, read_timeout_s=2.0)
        with source:
            assert source.read() is not None
            server.freeze()
            started = time.monotonic()
            late = 0  # frames only a blocked read could have produced (data in flight arrives sooner)
            with pytest.raises(SourceError, match="stalled") as caught:
                for _ in range(500):
                    frame = source.read()
                    late += frame is not None and frame.timestamp > time.time() - time.monotonic() + started + 1.8
            waited = time.monotonic() - started
            server.resume()
        assert caught.value.retryable
        assert waited < 10  # bounded: OpenCV alone would block 30 s per read
        assert late == 0  # frames FFmpeg still held after a timed-out read are not passed off as live


def test_unreachable_stream_fails_within_open_timeout_and_hides_password() -> None:
    url = f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/stream"
    source = live(url, open_timeout_s=2.0)
    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        source.open()
    assert time.monotonic() - started < 8
    assert caught.value.retryable
    assert "s3cret" not in str(caught.value) and "admin:***@" in str(caught.value)
    assert "s3cret" not in repr(source)


# ---------------------------------------------------------------------------------------------- devices
def test_missing_camera_device() -> None:
    source = LiveSource("usb", SourceSpec("device", "/dev/video99"), SourceOptions(open_timeout_s=1.0))
    with pytest.raises(SourceError, match="camera 'usb': camera device /dev/video99: device not found"):
        source.open()
