"""``bench-cuts``: every set of plate views, voted into one read, scored on the same reads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from anpr_edge import paths
from anpr_edge.backends import create_backend
from anpr_edge.bench.cuts import VIEWS, candidate_sets, format_table, read_views, score_sets
from anpr_edge.ocr import PlateRecognizer
from anpr_edge.train.datasets import LabeledImage
from anpr_edge.voting import combine_views


def test_paired_views_are_only_tried_together() -> None:
    sets = candidate_sets(["wide", "cw", "ccw", "left", "right"], 3)
    assert () in sets and ("wide",) in sets and ("cw", "ccw") in sets and ("wide", "cw", "ccw") in sets
    assert not any(("cw" in s) != ("ccw" in s) or ("left" in s) != ("right" in s) for s in sets)
    assert all(len(s) <= 3 for s in sets) and ("cw", "ccw", "left", "right") not in sets
    assert candidate_sets(["wide"], 0) == [()]


def _plate(text: str, tilt: float = 0.0) -> np.ndarray:
    image = np.full((60, 200, 3), 235, np.uint8)
    cv2.putText(image, text, (8, 42), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (20, 20, 20), 3, cv2.LINE_AA)
    turn = cv2.getRotationMatrix2D((100.0, 30.0), tilt, 1.0)
    return cv2.warpAffine(image, turn, (200, 60), borderMode=cv2.BORDER_REPLICATE)


def test_sets_of_views_are_voted_and_ranked_on_the_same_reads(tmp_path: Path) -> None:
    recognizer = PlateRecognizer(create_backend("onnxruntime", paths.bundled_model(paths.OCR_MODEL), threads=1))
    items = []
    for n, (text, tilt) in enumerate([("ABC1234", 0.0), ("KLM5678", 12.0), ("XYZ9012", -3.0)]):
        cv2.imwrite(str(tmp_path / f"{n}.png"), _plate(text, tilt))
        items.append(LabeledImage(tmp_path / f"{n}.png", text, None, "toy"))
    rows = read_views(recognizer, items, margin=0.15, padding=0.15, views=list(VIEWS))
    assert [truth for truth, _ in rows] == ["ABC1234", "KLM5678", "XYZ9012"]
    # Every view is read where it exists; "level" only for the plate tilted past 4 degrees.
    assert all({"box", "wide", "cw", "ccw", "narrow", "left"} <= set(reads) for _, reads in rows)
    assert ["level" in reads for _, reads in rows] == [False, True, False]
    candidates = [(), ("wide",), ("cw", "ccw"), ("wide", "cw", "ccw")]
    scores = score_sets({"toy:val @ 0.15": rows, "test-set": rows[:1]}, ["toy:val"], candidates, recognizer.charset)
    assert sorted(s.views for s in scores) == sorted(candidates)
    assert [s.criterion for s in scores] == sorted((s.criterion for s in scores), reverse=True)
    for s in scores:  # the criterion is the selection set's exact match of the voted reads, nothing else
        voted = [combine_views([reads[v] for v in ("box", *s.views) if v in reads], recognizer.charset).text == truth
                 for truth, reads in rows]
        assert s.criterion == np.mean(voted) == s.exact["toy:val @ 0.15"] and s.reads == 1 + len(s.views)
    table = format_table(scores, top=1, keep=[(), ("wide", "cw", "ccw")])
    assert "(box cut alone)" in table and "| wide, cw, ccw | 4 |" in table and "toy:val @ 0.15" in table


def test_a_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "anpr_edge", "bench-cuts", "--model", str(tmp_path / "nope.onnx")],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "--model: file not found" in result.stderr and "Traceback" not in result.stderr
