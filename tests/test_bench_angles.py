"""``bench-angles``: the OCR on synthetic plates seen from the side, by angle band."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from anpr_edge.bench.angles import band_plates, parse_bands, score_band, table
from anpr_edge.train import synth_plates as sp

REPO = Path(__file__).resolve().parents[1]


def test_bands_parse_and_bad_bands_name_the_problem() -> None:
    assert parse_bands("0:15,45:60") == ((0.0, 15.0), (45.0, 60.0))
    for bad in ("15:0", "0-15", "10:90", "a:b"):
        with pytest.raises(argparse.ArgumentTypeError, match="LOW"):
            parse_bands(bad)


def test_plates_are_seen_at_the_band_s_angle(monkeypatch: pytest.MonkeyPatch) -> None:
    yaws: list[float] = []
    rotation = sp._rotation

    def recording(yaw: float, pitch: float, roll: float) -> np.ndarray:
        yaws.append(abs(float(np.degrees(yaw))))
        return rotation(yaw, pitch, roll)

    monkeypatch.setattr(sp, "_rotation", recording)
    crops, texts, layouts = band_plates(["eu_fr_siv", "us_generic"], (40.0, 50.0), 4, 1, (192, 64), 0.15)
    assert len(crops) == len(texts) == 8 and layouts == ["eu_fr_siv"] * 4 + ["us_generic"] * 4
    assert all(c.image.shape == (64, 192, 3) for c in crops)
    assert all(sp.layout_regex(name).fullmatch(text) for name, text in zip(layouts, texts, strict=True))
    assert len(yaws) == 8 and all(40.0 <= y <= 50.0 for y in yaws)
    again = band_plates(["eu_fr_siv", "us_generic"], (40.0, 50.0), 4, 1, (192, 64), 0.15)
    assert again[1] == texts  # one seed: every model reads the same plates


def test_scores_per_band_and_layout() -> None:
    score = score_band("m.onnx", (0.0, 15.0), ["AB1", "XX", "CD2", "EF3"], ["AB1", "AB2", "CD2", "EF4"],
                       ["a", "a", "b", "b"])
    assert score.plates == 4 and score.exact == 0.5 and score.by_layout == {"a": 0.5, "b": 0.5}
    other = score_band("n.onnx", (0.0, 15.0), ["AB1", "AB2", "CD2", "EF4"], ["AB1", "AB2", "CD2", "EF4"],
                       ["a", "a", "b", "b"])
    assert "| 0-15 degrees | 4 | 50.0% | 100.0% |" in table([score, other], ["m.onnx", "n.onnx"])


def test_bench_angles_reads_side_views_worse_than_front_views() -> None:
    """The bundled OCR on 20 plates per band: steep side views read worse than frontal ones."""
    done = subprocess.run([sys.executable, "-m", "anpr_edge", "bench-angles", "engines/ocr.onnx", "--count", "20",
                           "--bands", "0:10,55:70", "--layouts", "eu_fr_siv", "--json", "-"],
                          capture_output=True, text=True, timeout=300, check=False, env=dict(os.environ), cwd=REPO)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    front, side = report["scores"]
    assert front["band"] == [0.0, 10.0] and front["plates"] == 20 and set(front["by_layout"]) == {"eu_fr_siv"}
    assert front["exact"] >= 0.6 and side["exact"] < front["exact"]
    missing = subprocess.run([sys.executable, "-m", "anpr_edge", "bench-angles", "nope.onnx"], capture_output=True,
                             text=True, timeout=120, check=False, env=dict(os.environ), cwd=REPO)
    assert missing.returncode == 2 and "nope.onnx: no such ONNX model" in missing.stderr
    assert "Traceback" not in missing.stderr
