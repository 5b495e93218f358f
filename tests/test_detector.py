"""Detector pre/post-processing: letterbox, both YOLO output layouts, NMS, mapping back to the frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny_models import constant_detector

from anpr_edge.backends import create_backend
from anpr_edge.detector import PlateDetector, decode_yolo, letterbox, to_tensor
from anpr_edge.errors import BackendError


@pytest.mark.parametrize(("h", "w"), [(480, 640), (640, 480), (100, 1000), (64, 64), (37, 91)])
def test_letterbox_round_trips_boxes(h: int, w: int) -> None:
    image = np.zeros((h, w, 3), np.uint8)
    padded, box = letterbox(image, 320)
    assert padded.shape == (320, 320, 3)
    frame_box = np.array([[0.0, 0.0, w, h]], np.float32)
    in_model = frame_box * box.scale + np.array([box.pad_x, box.pad_y, box.pad_x, box.pad_y])
    np.testing.assert_allclose(box.to_frame(in_model), frame_box, atol=1e-3)
    # Padding is grey 114, as ultralytics trains with.
    if box.pad_y >= 1:
        assert (padded[0] == 114).all()
    if box.pad_x >= 1:
        assert (padded[:, 0] == 114).all()


def test_to_tensor_is_rgb_nchw_unit_range() -> None:
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    tensor = to_tensor([image])
    assert tensor.shape == (1, 3, 2, 3) and tensor.dtype == np.float32
    assert tensor[0, 2].max() == 1.0 and tensor[0, 0].max() == 0.0  # blue ends up in channel 2 (RGB)


def test_decode_classic_layout_applies_threshold_and_nms() -> None:
    rows = np.array(
        [
            [100, 100, 40, 20, 0.90],  # kept
            [102, 101, 40, 20, 0.85],  # overlaps the first: suppressed
            [300, 200, 60, 30, 0.70],  # kept
            [50, 50, 10, 10, 0.10],  # below threshold
        ],
        np.float32,
    )
    found = decode_yolo(rows.T, confidence=0.3, iou=0.5, max_detections=10)
    assert len(found) == 2
    np.testing.assert_allclose(found.xyxy, [[80, 90, 120, 110], [270, 185, 330, 215]])
    np.testing.assert_allclose(found.confidence, [0.9, 0.7], rtol=1e-6)
    assert len(decode_yolo(rows.T, confidence=0.3, iou=0.5, max_detections=1)) == 1
    assert len(decode_yolo(rows.T, confidence=0.95, iou=0.5, max_detections=10)) == 0


def test_decode_end_to_end_layout() -> None:
    rows = np.zeros((300, 6), np.float32)
    rows[0] = [10, 20, 50, 40, 0.5, 0]
    rows[1] = [60, 20, 90, 40, 0.8, 0]
    found = decode_yolo(rows, confidence=0.3, iou=0.5, max_detections=10)
    np.testing.assert_allclose(found.xyxy, [[60, 20, 90, 40], [10, 20, 50, 40]])


@pytest.mark.parametrize("end2end", [False, True])
def test_detector_maps_boxes_to_each_frame(tmp_path: Path, end2end: bool) -> None:
    if end2end:
        rows = np.zeros((10, 6), np.float32)
        rows[0] = [22, 27, 42, 37, 0.9, 0]
    else:
        rows = np.array([[32, 32, 20, 10, 0.9], [33, 32, 20, 10, 0.8], [10, 10, 6, 4, 0.2]], np.float32)
    detector = PlateDetector(create_backend("onnxruntime", constant_detector(tmp_path / "d.onnx", rows, end2end=end2end)))
    assert detector.input_size == 64
    wide, tall = np.zeros((100, 200, 3), np.uint8), np.zeros((200, 100, 3), np.uint8)
    found_wide, found_tall = detector.detect([wide, tall])
    # Model box (22, 27)-(42, 37) in a 64 px letterbox: scale 0.32 with 16 px of padding on the short side.
    np.testing.assert_allclose(found_wide.xyxy, [[68.75, 34.375, 131.25, 65.625]], rtol=1e-5)
    np.testing.assert_allclose(found_tall.xyxy, [[18.75, 84.375, 81.25, 115.625]], rtol=1e-5)
    assert detector.detect([]) == []


def test_input_size_from_config_must_match_a_fixed_model(tmp_path: Path) -> None:
    rows = np.array([[32, 32, 20, 10, 0.9]], np.float32)
    backend = create_backend("onnxruntime", constant_detector(tmp_path / "d.onnx", rows, size=64))
    with pytest.raises(BackendError, match="input_size 320 does not match the model's fixed input size 64"):
        PlateDetector(backend, input_size=320)
    dynamic = create_backend("onnxruntime", constant_detector(tmp_path / "dyn.onnx", rows, size=None))
    assert PlateDetector(dynamic).input_size == 64  # from the export's imgsz metadata
    assert PlateDetector(dynamic, input_size=96).input_size == 96
