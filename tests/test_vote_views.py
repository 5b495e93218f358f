"""``bench-views``: OCR models vote over degraded views of every evaluation plate."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from anpr_edge import paths
from anpr_edge.bench.vote_views import (
    ViewSettings,
    degraded_views,
    format_table,
    score_views,
)
from anpr_edge.train.datasets import split_of

TEXTS = [f"{a}{b}{c}{n:04d}" for a, b, c, n in zip("ABCDEFGHJKLMNPRSTUVWXYZABCDEFG", "KLMNPRSTUVWXYZABCDEFGHJKLMNPRS",
                                                  "XYZABCDEFGHJKLMNPRSTUVWXYZABCD", range(1234, 9999, 271))]


def plate_image(text: str) -> np.ndarray:
    image = np.full((60, 200, 3), 235, np.uint8)
    cv2.putText(image, text, (8, 42), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (20, 20, 20), 3, cv2.LINE_AA)
    return image


def test_views_are_model_sized_smaller_and_repeatable() -> None:
    scene = np.full((300, 500, 3), 90, np.uint8)
    scene[100:160, 150:350] = plate_image("ABC1234")
    settings = ViewSettings(frames=5, min_scale=0.4)
    views = degraded_views(scene, (150, 100, 350, 160), (192, 64), settings, np.random.default_rng(3))
    assert len(views) == 5
    assert all(crop.shape == (64, 192, 3) and crop.dtype == np.uint8 for crop, _ in views)
    assert all(0.4 * 200 <= width <= 200 for _, width in views) and len({width for _, width in views}) == 5
    again = degraded_views(scene, (150, 100, 350, 160), (192, 64), settings, np.random.default_rng(3))
    assert all(np.array_equal(a, b) for (a, _), (b, _) in zip(views, again))
    crop_only = degraded_views(plate_image("ABC1234"), None, (192, 64), settings, np.random.default_rng(3))
    assert len(crop_only) == 5 and crop_only[0][0].shape == (64, 192, 3)


def test_models_are_scored_on_the_same_views(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "datasets" / "us-nyc-plate-crops"
    (folder / "images").mkdir(parents=True)
    rows = ["file,text,xmin,ymin,xmax,ymax"]
    for n, text in enumerate(TEXTS):
        cv2.imwrite(str(folder / f"images/{n}.png"), plate_image(text))
        rows.append(f"images/{n}.png,{text},,,,")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setenv("ANPR_EDGE_DATASETS", str(tmp_path / "datasets"))
    bundled = paths.bundled_model(paths.OCR_MODEL)
    twin = tmp_path / "twin.onnx"
    shutil.copyfile(bundled, twin)
    scores = score_views([bundled, twin], ViewSettings(frames=3), seed=7, sets=["us-nyc-plate-crops"])
    val = sum(split_of(text) == "val" for text in TEXTS)
    assert [s.set for s in scores] == ["us-nyc-plate-crops:val"] * 2 and all(s.plates == val for s in scores)
    # The same weights on the same views score the same, to the plate.
    first, second = scores
    assert (first.vote, first.best_view, first.per_view) == (second.vote, second.best_view, second.per_view)
    assert all(0.0 <= x <= 1.0 for s in scores for x in (s.vote, s.best_view, s.per_view))
    table = format_table(scores)
    assert "| all |" in table and str(twin) in table


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "anpr_edge", "bench-views", str(tmp_path / "nope.onnx")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "model file not found" in result.stderr and "Traceback" not in result.stderr
