"""Per-camera options that override the global ones: detector threshold, ROI (and the detector's window on it),
text confidence, formats."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import constant_detector

from anpr_edge.backends import create_backend
from anpr_edge.config import parse_config
from anpr_edge.demo_clip import render_plate
from anpr_edge.detector import PlateDetector
from anpr_edge.errors import ConfigError
from anpr_edge.pipeline import PlateReader
from anpr_edge import regions
from anpr_edge.regions import detect_in_windows, inside_roi, roi_window, tile_windows
from anpr_edge.service import run_cameras
from anpr_edge.values import Detections, PlateEvent


def config_with(camera: str, extra: str = ""):  # noqa: ANN201
    import yaml

    data = yaml.safe_load(f"cameras:\n  - {{id: gate, source: demo, {camera}}}\n  - {{id: lot, source: demo}}\n{extra}")
    return parse_config(data)


def test_overrides_apply_to_their_camera_only() -> None:
    config = config_with("confidence: 0.2, min_text_confidence: 0.6, formats: [FR, EU]",
                         "events: {min_confidence: 0.1}\nformats: {regions: [US]}\n")
    gate, lot = config.for_camera("gate"), config.for_camera("lot")
    assert gate.models.detector.confidence == 0.2 and lot.models.detector.confidence == 0.35
    assert gate.events.min_confidence == 0.6 and lot.events.min_confidence == 0.1
    assert gate.formats.regions == ["FR", "EU"] and lot.formats.regions == ["US"]
    assert config.detector_floor == 0.2  # the shared detector runs at the lowest threshold asked for
    assert config.detector_batch == 2  # one frame per camera
    tiled = config_with("detect_tiles: 2", "")
    assert tiled.detector_batch == 6  # gate: its frame and 4 tiles; lot: its frame


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ("formats: [XX]", r"cameras\[gate\]\.formats: unknown plate format"),
        ("roi: [[0, 0], [1, 1]]", "roi"),
        ("roi: [[0, 0], [0.5, 0.5], [1, 1]]", "encloses no area"),
        ("roi: [[0, 0], [1.5, 0], [1, 1]]", "roi"),
        ("confidence: 2", "confidence"),
        ("detect_tiles: 4", "detect_tiles"),
        ("detect_margin: 0.6", "detect_margin"),
    ],
)
def test_bad_overrides_are_named(camera: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        config_with(camera)


def test_roi_keeps_boxes_centred_inside_the_polygon() -> None:
    # Lower half of a 100 x 200 (h x w) frame, as a triangle-free quadrilateral.
    roi = [(0.0, 0.5), (1.0, 0.5), (1.0, 1.0), (0.0, 1.0)]
    boxes = np.array([[10, 60, 50, 80], [10, 10, 50, 30], [90, 40, 110, 62]], np.float32)  # in, out, centre y=51
    assert inside_roi(boxes, roi, (100, 200)).tolist() == [True, False, True]


# ------------------------------------------------------------------------- the detector's ROI window
def test_roi_window_is_the_roi_bounding_rectangle_with_a_margin() -> None:
    shape = (1000, 2000)
    assert roi_window(None, shape) == (0, 0, 2000, 1000)
    quadrant = [(0.6, 0.6), (0.8, 0.6), (0.8, 0.8), (0.6, 0.8)]
    assert roi_window(quadrant, shape) == (1000, 500, 1800, 900)  # 10% of the frame around it
    assert roi_window(quadrant, shape, margin=0.0) == (1200, 600, 1600, 800)
    corner = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.3)]
    assert roi_window(corner, shape) == (0, 0, 800, 400)  # clipped to the frame
    # A window over nearly all of the frame gains nothing: the frame as it is.
    assert roi_window([(0.05, 0.05), (0.95, 0.05), (0.95, 0.95)], shape) == (0, 0, 2000, 1000)


def test_the_service_uses_each_cameras_margin_and_tiles() -> None:
    from anpr_edge.service import EventRouter, Service
    from anpr_edge.values import Frame

    quadrant = "roi: [[0.6, 0.6], [0.8, 0.6], [0.8, 0.8], [0.6, 0.8]]"
    config = config_with(f"{quadrant}, detect_margin: 0.0, detect_tiles: 2")
    service = Service(config, None, EventRouter("dev", None, []))
    service.cameras = {camera.id: camera for camera in config.cameras}
    image = np.zeros((1000, 2000, 3), np.uint8)
    assert service._detector_view(Frame("gate", 0, 0.0, image)) == ((1200, 600, 1600, 800), 2)
    assert service._detector_view(Frame("lot", 0, 0.0, image)) == ((0, 0, 2000, 1000), 1)
    default = config_with(quadrant)
    service.cameras = {camera.id: camera for camera in default.cameras}
    assert service._detector_view(Frame("gate", 0, 0.0, image)) == ((1000, 500, 1800, 900), 1)


def test_detections_in_a_window_come_back_in_frame_pixels(tmp_path: Path) -> None:
    # The constant model finds (22, 27)-(42, 37) in its 64 px input, whatever it is shown.
    backend = create_backend("onnxruntime", constant_detector(tmp_path / "d.onnx", np.array([[32, 32, 20, 10, 0.9]],
                                                                                             np.float32), size=None))
    detector = PlateDetector(backend, input_size=64)
    image = np.zeros((200, 400, 3), np.uint8)
    (whole,) = detect_in_windows(detector, [image], [(0, 0, 400, 200)])
    # Whole frame: scale 64/400, the 32 px tall picture padded by 16 on top.
    np.testing.assert_allclose(whole.xyxy, [[137.5, 68.75, 262.5, 131.25]], rtol=1e-5)
    (windowed,) = detect_in_windows(detector, [image], [(200, 100, 328, 164)])
    # A 128 x 64 window: scale 0.5, padded by 16 on top, then moved by the window's corner.
    np.testing.assert_allclose(windowed.xyxy, [[244.0, 122.0, 284.0, 142.0]], rtol=1e-5)
    np.testing.assert_allclose(windowed.confidence, whole.confidence)


def _small_plate_clip(path: Path) -> Path:
    """A 1080p clip of one parked car's plate, 81 px wide, in the lower right of a grey street."""
    plate = render_plate("AB123CD", "eu", height=18)
    frame = np.full((1080, 1920, 3), 90, np.uint8)
    frame = cv2.add(frame, np.random.default_rng(0).integers(0, 40, frame.shape).astype(np.uint8))
    frame[800:800 + plate.shape[0], 1400:1400 + plate.shape[1]] = plate
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (1920, 1080))
    for _ in range(12):
        writer.write(frame)
    writer.release()
    return path


@pytest.mark.parametrize("detect_in_roi", [True, False])
def test_the_daemon_finds_small_plates_in_the_roi_window(tmp_path: Path, detect_in_roi: bool) -> None:
    """The shipped models on a 1080p frame: at 320 px the whole frame shrinks an 81 px plate to 14 px and
    the detector misses it; the ROI's window (768 x 432) gives it 34 px and it is found and read."""
    clip = _small_plate_clip(tmp_path / "gate.avi")
    config = parse_config({
        "cameras": [{"id": "gate", "source": str(clip), "detect_in_roi": detect_in_roi,
                     "roi": [[0.65, 0.65], [0.85, 0.65], [0.85, 0.85], [0.65, 0.85]]}],
        "inference": {"threads": 1},
    })
    events: list[PlateEvent] = []
    reader = PlateReader.from_config(config, photos=False)
    run_cameras(config, reader, lambda event: events.append(event) or event, stop=threading.Event())
    if detect_in_roi:
        assert [event.text for event in events] == ["AB123CD"]
        x1, y1, x2, y2 = events[0].box
        assert abs(x1 - 1400) < 6 and abs(y1 - 800) < 6 and abs(x2 - 1481) < 6 and abs(y2 - 818) < 6
    else:
        assert events == []


def test_tiles_overlap_and_cover_the_window() -> None:
    assert tile_windows((0, 0, 100, 50), 1) == [(0, 0, 100, 50)]
    tiles = tile_windows((10, 20, 185, 90), 2)  # 175 x 70: tiles of 100 x 40 overlapping by 25
    assert tiles == [(10, 20, 110, 60), (85, 20, 185, 60), (10, 50, 110, 90), (85, 50, 185, 90)]
    three = tile_windows((0, 0, 1920, 1080), 3)
    assert len(three) == 9 and three[0][:2] == (0, 0) and three[-1][2:] == (1920, 1080)
    for left, right in zip(three, three[1:3]):  # neighbours in a row overlap
        assert right[0] < left[2]


def test_tiled_detections_drop_plates_cut_by_a_tile_and_merge_the_rest(tmp_path: Path) -> None:
    # The constant model finds a 20 x 10 box at the centre of every view it is shown (64 px input).
    backend = create_backend("onnxruntime", constant_detector(tmp_path / "d.onnx", np.array([[32, 32, 20, 10, 0.9]],
                                                                                             np.float32), size=None))
    detector = PlateDetector(backend, input_size=64)
    image = np.zeros((64, 64, 3), np.uint8)
    (whole,) = detect_in_windows(detector, [image], [(0, 0, 64, 64)], [1])
    np.testing.assert_allclose(whole.xyxy, [[22, 27, 42, 37]])
    # 2 x 2 tiles of 37 px (overlap 9): each tile's centre box (scaled by 37/64) is whole and inside its tile,
    # and none overlaps another: the frame's box and the four tiles' boxes, five in all.
    (tiled,) = detect_in_windows(detector, [image], [(0, 0, 64, 64)], [2])
    assert len(tiled) == 5
    # A plate on a tile's inner edge is cut: dropped; on the window's own edge it is kept.
    cut = regions._cut_by_tile(np.array([[30, 5, 37, 10], [0, 5, 8, 10], [10, 5, 20, 10]], np.float32),
                               (0, 0, 37, 37), (0, 0, 64, 64))
    assert cut.tolist() == [True, False, False]
    # Overlapping finds of one plate are merged, the most confident kept.
    merged = regions.merge_detections([Detections(np.array([[0, 0, 10, 5]]), np.array([0.6])),
                                       Detections(np.array([[1, 0, 10, 5], [50, 50, 60, 55]]), np.array([0.9, 0.5]))],
                                      0.5, 20)
    np.testing.assert_allclose(merged.xyxy, [[1, 0, 10, 5], [50, 50, 60, 55]])


def test_the_daemon_finds_small_plates_in_tiles_without_an_roi(tmp_path: Path) -> None:
    """The 81 px plate of a 1080p frame: 2 x 2 tiles give it 24 px of the detector's 320."""
    clip = _small_plate_clip(tmp_path / "wide.avi")
    config = parse_config({"cameras": [{"id": "wide", "source": str(clip), "detect_tiles": 2}],
                           "inference": {"threads": 1}})
    events: list[PlateEvent] = []
    run_cameras(config, PlateReader.from_config(config, photos=False), lambda event: events.append(event) or event,
                stop=threading.Event())
    assert [event.text for event in events] == ["AB123CD"]
