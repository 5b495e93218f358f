"""Per-camera options that override the global ones: detector threshold, ROI, text confidence, formats."""

from __future__ import annotations

import numpy as np
import pytest

from anpr_edge.config import parse_config
from anpr_edge.errors import ConfigError
from anpr_edge.service import inside_roi


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


@pytest.mark.parametrize(
    ("camera", "expected"),
    [
        ("formats: [XX]", r"cameras\[gate\]\.formats: unknown plate format"),
        ("roi: [[0, 0], [1, 1]]", "roi"),
        ("roi: [[0, 0], [0.5, 0.5], [1, 1]]", "encloses no area"),
        ("roi: [[0, 0], [1.5, 0], [1, 1]]", "roi"),
        ("confidence: 2", "confidence"),
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
