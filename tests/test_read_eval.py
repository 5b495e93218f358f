"""`eval-read`: box matching, label formats, the per-set scores, and the command on known boxes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_reads import CHARSET, make_read
from test_cli import cli, models, write_config  # noqa: F401  (models is a fixture)

from anpr_edge.errors import ConfigError
from anpr_edge.plate_formats import format_read, load_formats
from anpr_edge.read_eval import (
    LabeledScene,
    evaluate_read,
    format_table,
    iou_matrix,
    match_detections,
    read_scene_labels,
    width_bin,
    write_detection_errors,
)
from anpr_edge.values import PlateRead


def test_iou_and_greedy_matching() -> None:
    truth = np.array([[0, 0, 10, 10], [20, 0, 30, 10]], np.float32)
    assert iou_matrix(truth, truth) == pytest.approx(np.eye(2))
    assert iou_matrix([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    # The best-scored prediction claims its box first; a duplicate of it is then a false positive.
    predicted = np.array([[0, 0, 10, 9], [0, 0, 10, 10], [21, 0, 31, 10], [100, 100, 110, 110]], np.float32)
    assert match_detections(predicted, truth).tolist() == [0, 2]
    assert match_detections(predicted[3:], truth).tolist() == [-1, -1]
    assert match_detections(np.zeros((0, 4)), truth).tolist() == [-1, -1]
    # IoU 1/3 is below the 0.5 threshold.
    assert match_detections(np.array([[5, 0, 15, 10]]), truth[:1]).tolist() == [-1]


def test_width_bins() -> None:
    assert [width_bin(w) for w in (10, 39.9, 40, 80, 500)] == ["<40", "<40", "40-80", ">80", ">80"]


def test_both_label_layouts_and_multi_plate_rows(tmp_path: Path) -> None:
    (tmp_path / "ours.csv").write_text("file,text,xmin,ymin,xmax,ymax\na.jpg,AB-12,1,2,30,12\na.jpg,,40,2,70,12\n")
    (tmp_path / "tutorial.csv").write_text("files,text,xmin,xmax,ymin,ymax\na.jpg,ab12,1,30,2,12\n")
    (scene,) = read_scene_labels(tmp_path / "ours.csv")
    assert scene.path == tmp_path / "a.jpg"
    assert scene.boxes == ((1, 2, 30, 12), (40, 2, 70, 12)) and scene.texts == ("AB12", None)
    (tutorial,) = read_scene_labels(tmp_path / "tutorial.csv")
    assert tutorial.boxes == ((1, 2, 30, 12),) and tutorial.texts == ("AB12",)
    (tmp_path / "bad.csv").write_text("file,text\na.jpg,AB\n")
    with pytest.raises(ConfigError, match="bad.csv: needs box columns xmin, ymin, xmax, ymax"):
        read_scene_labels(tmp_path / "bad.csv")
    (tmp_path / "inverted.csv").write_text("file,xmin,ymin,xmax,ymax\na.jpg,30,2,1,12\n")
    with pytest.raises(ConfigError, match="inverted.csv:2: empty or inverted box"):
        read_scene_labels(tmp_path / "inverted.csv")


def read(text: str, box: tuple[float, float, float, float], confidence: float = 0.9) -> PlateRead:
    return PlateRead(text=text, confidence=confidence, char_confidences=(confidence,) * len(text), box=box)


def test_evaluate_read_scores_detection_and_text(tmp_path: Path) -> None:
    for name in ("one.png", "two.png", "broken.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((100, 200, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    scenes = [
        LabeledScene(tmp_path / "one.png", ((10, 10, 130, 40),), ("AB123",)),  # 120 px wide, found, read right
        LabeledScene(tmp_path / "two.png", ((10, 10, 40, 20), (100, 50, 160, 70)), (None, None)),  # one missed
        LabeledScene(tmp_path / "broken.png", ((0, 0, 10, 10),), (None,)),
    ]
    answers = iter([
        [read("AB123", (12, 10, 128, 41)), read("ZZ", (150, 60, 190, 90), 0.5)],  # + a false positive
        [read("X", (10, 10, 40, 20))],
    ])
    report = evaluate_read("toy", scenes, lambda image: next(answers), progress=False)
    assert (report.images, report.failed_images, report.plates, report.found) == (2, 1, 3, 2)
    assert report.recall == pytest.approx(2 / 3)
    assert report.precision == pytest.approx(2 / 3) and report.false_positives == 1
    assert report.by_width == {"<40": [1, 1], "40-80": [0, 1], ">80": [1, 1]}
    assert (report.text_images, report.exact) == (1, 1)
    assert report.misses == [{"file": str(tmp_path / "two.png"), "box": [100.0, 50.0, 160.0, 70.0]}]
    assert report.false_positive_boxes == [{"file": str(tmp_path / "one.png"), "box": [150.0, 60.0, 190.0, 90.0]}]
    assert write_detection_errors(tmp_path / "errors", report, scenes) == 2
    written = sorted(p.name for p in (tmp_path / "errors" / "toy").iterdir())
    assert written == ["fp_0000_one.png", "miss_0000_two.png"]
    view = cv2.imread(str(tmp_path / "errors" / "toy" / "fp_0000_one.png"))
    # the false positive with one box width of context each side, clipped to the 200x100 image: x 110-200, y 0-100
    assert view.shape[:2] == (100, 90) and (view[..., 2] == 255).any()  # its box drawn in red
    data = report.as_dict()
    assert data["false_positives_per_image"] == 0.5 and data["exact_match"] == 1.0
    table = format_table([report])
    assert "| toy | 2 | 3 | 66.7% |" in table and "100.0% (1/1)" in table


def test_exact_match_under_region_formats(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "one.png"), np.zeros((100, 200, 3), np.uint8))
    scenes = [LabeledScene(tmp_path / "one.png", ((10, 10, 130, 40),), ("AB123",))]
    # The OCR reads the B as an 8 but gives the B a fair chance: the LLDDD format fixes it.
    hesitant = replace(make_read("A8123", alternatives={1: ("B", 0.3)}), box=(12.0, 10.0, 128.0, 41.0))
    formats = load_formats(["XX"], {"XX": ["LLDDD"]})
    report = evaluate_read("toy", scenes, lambda image: [hesitant], progress=False, formats=("XX",),
                           reformat=lambda r: format_read(r, CHARSET, formats))
    assert (report.exact, report.exact_formats, report.text_images) == (0, 1, 1)
    assert report.as_dict()["exact_match_with_formats"] == 1.0 and report.as_dict()["formats"] == ["XX"]
    table = format_table([report])
    assert "exact, region formats" in table and "100.0% (1/1, XX)" in table
    plain = evaluate_read("toy", scenes, lambda image: [hesitant], progress=False)
    assert plain.as_dict()["exact_match_with_formats"] is None and "region formats" not in format_table([plain])


def test_eval_read_command_on_known_boxes(tmp_path: Path, models: dict[str, Path]) -> None:  # noqa: F811
    """The constant detector finds (22, 27)-(42, 37) in any 64x64 image; the OCR reads bright crops as 'A'."""
    config = write_config(tmp_path, models)
    cv2.imwrite(str(tmp_path / "bright.png"), np.full((64, 64, 3), 230, np.uint8))
    cv2.imwrite(str(tmp_path / "dark.png"), np.full((64, 64, 3), 20, np.uint8))
    (tmp_path / "labels.csv").write_text(
        "files,text,xmin,xmax,ymin,ymax\nbright.png,A,22,42,27,37\ndark.png,A,0,10,0,5\n"
    )
    result = cli("eval-read", "--json", "--config", str(config), str(tmp_path / "labels.csv"))
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["images"] == 2 and record["plates"] == 2
    assert record["recall"] == 0.5 and record["precision"] == 0.5
    assert record["exact_match"] == 0.5  # bright read 'A' (right); dark read 'B' (wrong)
    assert record["ms_median"] > 0
    table = cli("eval-read", "--config", str(config), "--errors", str(tmp_path / "errors"), str(tmp_path / "labels.csv"))
    assert table.returncode == 0 and table.stdout.startswith("| set |")
    # dark.png: the constant box matches no label (a false positive) and its labelled plate is missed
    assert sorted(p.name for p in (tmp_path / "errors" / tmp_path.name).iterdir()) == ["fp_0000_dark.png",
                                                                                      "miss_0000_dark.png"]
    missing = cli("eval-read", "--config", str(config))
    assert missing.returncode == 2 and "give label CSV files" in missing.stderr
    formatted = cli("eval-read", "--json", "--formats", "US,BR", "--config", str(config), str(tmp_path / "labels.csv"))
    assert formatted.returncode == 0, formatted.stderr
    (record,) = [json.loads(line) for line in formatted.stdout.splitlines()]
    # no format fits a one-letter read, so the reads stay as they are (bright right, dark wrong)
    assert record["formats"] == ["US", "BR"] and record["exact_match_with_formats"] == 0.5
    unknown = cli("eval-read", "--formats", "ATLANTIS", "--config", str(config), str(tmp_path / "labels.csv"))
    assert unknown.returncode == 2 and "ATLANTIS" in unknown.stderr
    # Zoomed out x2: each 64 px photo in one cell of a 128 px mosaic, its box moved with it. The constant
    # detector now boxes the mosaic's centre, so neither labelled plate is found.
    zoomed = cli("eval-read", "--json", "--zoom-out", "2", "--config", str(config), str(tmp_path / "labels.csv"),
                 env={"ANPR_EDGE_CACHE_DIR": str(tmp_path / "cache")})
    assert zoomed.returncode == 0, zoomed.stderr
    (record,) = [json.loads(line) for line in zoomed.stdout.splitlines()]
    assert record["images"] == 2 and record["plates"] == 2 and record["recall"] == 0.0
    (mosaics,) = (tmp_path / "cache").glob("zoom-out-*-g2-*")
    assert sorted(cv2.imread(str(p)).shape for p in mosaics.iterdir()) == [(128, 128, 3)] * 2
    bad = cli("eval-read", "--zoom-out", "7", "--config", str(config), str(tmp_path / "labels.csv"))
    assert bad.returncode == 2 and "--zoom-out" in bad.stderr


def test_report_figures_keep_enough_places_for_a_table_to_round_once() -> None:
    # 83 of 85 is 97.647%: rounding the JSON figure to 4 places first (0.9765) made `eval` print 97.7% where
    # `eval-read` printed 97.6% for the same result.
    from anpr_edge.read_eval import ReadEvalReport

    figures = ReadEvalReport("fr", images=85, plates=85, found=83).as_dict()
    assert f"{100 * figures['recall']:.1f}%" == "97.6%"
