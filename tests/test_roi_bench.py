"""`anpr-edge bench-roi`: wide views made from labelled photos, and both ways the daemon can look at them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tiny_models import brightness_ocr, constant_detector

from anpr_edge.bench.roi import format_table, make_wide_views, score_modes
from anpr_edge.config import parse_config
from anpr_edge.read_eval import LabeledScene


def _scenes(folder: Path) -> list[LabeledScene]:
    scenes = []
    for n, grey in enumerate((40, 120, 200)):
        path = folder / f"photo{n}.png"
        image = np.full((60, 90, 3), grey, np.uint8)
        cv2.imwrite(str(path), image)
        scenes.append(LabeledScene(path, ((30.0, 20.0, 60.0, 40.0),), (f"P{n}",)))
    return scenes


def test_each_photo_keeps_its_pixels_in_one_cell_and_its_boxes_follow(tmp_path: Path) -> None:
    scenes = _scenes(tmp_path)
    views = make_wide_views(scenes, 2, tmp_path / "mosaics", seed=3)
    assert len(views) == 3
    for scene, view in zip(scenes, views):
        mosaic = cv2.imread(str(view.scene.path))
        assert mosaic.shape == (120, 180, 3)
        (x1, y1), _, (x2, y2), _ = view.roi
        col, row = round(x1 * 2), round(y1 * 2)
        assert (x2 - x1, y2 - y1) == (0.5, 0.5)
        cell = mosaic[row * 60:(row + 1) * 60, col * 90:(col + 1) * 90]
        own = cv2.imread(str(scene.path))
        assert np.abs(cell.astype(int) - own.astype(int)).max() <= 3  # JPEG
        others = [mosaic[r * 60:(r + 1) * 60, c * 90:(c + 1) * 90].mean() for r in range(2) for c in range(2)
                  if (r, c) != (row, col)]
        assert all(abs(m - own.mean()) > 30 for m in others)  # the other cells hold the other photos
        assert view.scene.boxes == ((30.0 + col * 90, 20.0 + row * 60, 60.0 + col * 90, 40.0 + row * 60),)
        assert view.scene.texts == scene.texts
    # A second call reuses the mosaics on disk and gives the same views.
    assert make_wide_views(scenes, 2, tmp_path / "mosaics", seed=3) == views


def test_both_modes_are_scored_on_the_same_views(tmp_path: Path) -> None:
    models = {"detector": constant_detector(tmp_path / "d.onnx", np.array([[32, 32, 20, 10, 0.9]], np.float32)),
              "ocr": brightness_ocr(tmp_path / "ocr.onnx")}
    config = parse_config({"cameras": [{"id": "a", "source": "demo"}], "inference": {"threads": 1},
                           "models": {"detector": {"path": str(models["detector"])},
                                      "ocr": {"path": str(models["ocr"])}}})
    views = make_wide_views(_scenes(tmp_path), 3, tmp_path / "mosaics")
    results = score_modes(config, 3, [("photos", views)], progress=False, tiles=2)
    assert [r.mode for r in results] == ["frame", "window", "tiles"]
    # Tiles: the frame's centre box plus each tile's own, the tiles' boxes away from every cell's centre.
    assert results[2].as_dict()["tiles"] == 2 and results[2].reports[0].images == 3
    frame, window, _ = (r.as_dict() for r in results)
    for row in (frame, window):
        assert row["grid"] == 3 and row["sets"]["photos, grid 3"]["images"] == 3
        assert len(results[0].detector_ms) == 3
    # The constant box sits at the centre of what the detector is shown: the mosaic's centre cell for the
    # whole frame (only a view whose ROI is that cell keeps it), the ROI's own window otherwise.
    centre_views = sum(view.roi[0] == (1 / 3, 1 / 3) for view in views)
    assert results[0].reports[0].predictions == centre_views
    assert results[1].reports[0].predictions == 3
    table = format_table(results)
    assert "| 3 | whole frame, ROI filters |" in table and "| 3 | ROI window |" in table
    assert "| 3 | whole frame + 2x2 tiles, ROI filters |" in table
    assert "recall photos" in table and "exact photos" in table


def test_zoomed_out_views_blur_the_other_photos_and_keep_their_own(tmp_path: Path) -> None:
    scenes = []
    rng = np.random.default_rng(1)
    for n in range(3):  # sharp noise photos, so blurring shows
        path = tmp_path / f"noise{n}.png"
        cv2.imwrite(str(path), rng.integers(0, 255, (60, 90, 3), dtype=np.uint8))
        scenes.append(LabeledScene(path, ((30.0, 20.0, 60.0, 40.0),), ("X",)))
    for view, scene in zip(make_wide_views(scenes, 2, tmp_path / "zoomed", mask_others=True), scenes):
        mosaic = cv2.imread(str(view.scene.path)).astype(float)
        (x1, y1), *_ = view.roi
        col, row = round(x1 * 2), round(y1 * 2)
        for r in range(2):
            for c in range(2):
                cell = mosaic[r * 60:(r + 1) * 60, c * 90:(c + 1) * 90]
                sharpness = np.abs(np.diff(cell, axis=1)).mean()
                assert (sharpness > 40) == ((r, c) == (row, col)), (r, c, sharpness)
