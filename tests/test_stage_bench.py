"""`anpr-edge bench`, `eval` and `bench-sizes`: the output structure on tiny inputs, never timings.

Tiny ONNX models (tests/tiny_models.py): a detector that sees one plate in every image and an OCR that reads
'A' on bright crops and 'B' on dark ones. The commands are run through their ``register`` functions on a
parser of their own, as ``anpr_edge/cli.py`` adds them.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import brightness_ocr, constant_detector

from anpr_edge.bench import accuracy, baselines, sizes, stage_bench
from anpr_edge.errors import AnprError, ConfigError

STAGE_KEYS = {"calls", "median_ms", "p95_ms", "max_ms", "total_ms", "ms_per_frame"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    parser = argparse.ArgumentParser(prog="anpr-edge")
    commands = parser.add_subparsers(dest="command", required=True)
    stage_bench.register(commands)
    accuracy.register(commands)
    sizes.register(commands)
    args = parser.parse_args(list(argv))
    assert args.handler(args) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    rows = np.array([[32, 32, 20, 10, 0.9], [33, 32, 20, 10, 0.8]], np.float32)
    return {
        "detector": constant_detector(folder / "det.onnx", rows),
        "dynamic": constant_detector(folder / "dyn.onnx", rows, size=None),
        "ocr": brightness_ocr(folder / "ocr.onnx"),
    }


def write_config(folder: Path, models: dict[str, Path], detector: str = "detector") -> Path:
    path = folder / "config.yaml"
    path.write_text(f"models:\n  detector: {{path: {models[detector]}}}\n  ocr: {{path: {models['ocr']}}}\n"
                    "inference: {threads: 1}\ncameras:\n  - {id: demo, source: demo}\n")
    return path


def make_clip(path: Path, frames: int = 20) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (200, 100))
    for _ in range(frames):
        writer.write(np.full((100, 200, 3), 230, np.uint8))
    writer.release()
    return path


# ------------------------------------------------------------------------------------------------ bench
def test_bench_reports_every_stage_and_writes_json(tmp_path: Path, models: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "gate.mp4")
    out = tmp_path / "out" / "bench.json"
    table = run(capsys, "bench", "--source", str(clip), "--config", str(write_config(tmp_path, models)),
                "--threads", "1", "--json", str(out), "--no-progress")
    for name in stage_bench.STAGE_NAMES.values():
        assert name in table
    assert "decode-only frames/s" in table and "peak RSS" in table
    data = json.loads(out.read_text())
    assert data["command"] == "bench"
    assert set(data["stages"]) == set(stage_bench.STAGES)
    for stage in data["stages"].values():
        assert set(stage) == STAGE_KEYS
        assert all(v is None or v >= 0 for v in stage.values())
    assert data["stages"]["decode"]["calls"] == data["stages"]["detect"]["calls"] == 20
    assert data["stages"]["ocr"]["calls"] >= 1 and data["stages"]["track_vote"]["calls"] == 20
    e2e = data["end_to_end"]
    assert e2e["frames"] == 20 and e2e["fps"] > 0 and e2e["cpu_percent"] >= 0
    assert e2e["events"] == 1 and data["stages"]["publish"]["calls"] == 1  # one plate, one passage, published
    assert e2e["crops_read"] + e2e["crops_skipped_settled"] == e2e["detections"]
    assert e2e["peak_rss_mb"] is None or e2e["peak_rss_mb"] > 0
    assert data["ceiling"]["frames"] == 20 and data["ceiling"]["fps"] > 0
    settings = data["settings"]
    assert settings["backend"] == "onnxruntime" and settings["threads"] == 1 and settings["input_size"] == 64
    assert settings["width"] == 200 and settings["height"] == 100 and settings["clip_frames"] == 20
    for key in ("cpu", "cores", "usable_cores", "python", "onnxruntime"):
        assert key in data["machine"]


def test_bench_seconds_replays_the_clip_and_json_on_stdout(tmp_path: Path, models: dict[str, Path],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    clip = make_clip(tmp_path / "short.mp4", frames=5)
    out = run(capsys, "bench", "--source", str(clip), "--config", str(write_config(tmp_path, models)),
              "--seconds", "0.3", "--no-publish", "--json", "-", "--no-progress")
    data = json.loads(out)  # JSON only: no table on stdout
    assert data["end_to_end"]["frames"] > 5  # replayed past the end of the 5-frame clip
    assert data["stages"]["publish"]["calls"] == 0 and data["settings"]["publish"] == "none"
    assert data["ceiling"]["frames"] == data["end_to_end"]["frames"]


def test_bench_missing_source_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    stage_bench.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "--source", str(tmp_path / "nope.mp4")])
    with pytest.raises(ConfigError, match="file not found"):
        args.handler(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--input-size", "300"])  # not a multiple of 32


# ------------------------------------------------------------------------------------------------- eval
def _labelled_sets(folder: Path, models: dict[str, Path]) -> tuple[Path, Path]:
    """A crop CSV (bright 'A', dark 'B', one wrong label) and a scene CSV with the box the detector finds."""
    from anpr_edge.config import load_config
    from anpr_edge.pipeline import PlateReader

    crops = folder / "crops"
    crops.mkdir()
    with (crops / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "text", "xmin", "ymin", "xmax", "ymax"])
        for n, (value, text) in enumerate([(235, "A"), (20, "B"), (230, "A"), (25, "A")]):
            cv2.imwrite(str(crops / f"{n}.png"), np.full((40, 120, 3), value, np.uint8))
            writer.writerow([f"{n}.png", text, "", "", "", ""])
    scenes = folder / "scenes"
    scenes.mkdir()
    image = np.full((100, 200, 3), 230, np.uint8)
    reader = PlateReader.from_config(load_config(write_config(folder, models)))
    box = [round(float(v), 1) for v in reader.detector.detect([image])[0].xyxy[0]]
    with (scenes / "labels.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "text", "xmin", "ymin", "xmax", "ymax"])
        for n in range(3):
            cv2.imwrite(str(scenes / f"{n}.jpg"), image)
            writer.writerow([f"{n}.jpg", "A", *box])
    return crops / "labels.csv", scenes / "labels.csv"


def test_eval_scores_crops_and_full_images(tmp_path: Path, models: dict[str, Path],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    crop_csv, scene_csv = _labelled_sets(tmp_path, models)
    out = tmp_path / "eval.json"
    table = run(capsys, "eval", str(crop_csv), str(scene_csv), "--no-shared", "--config",
                str(write_config(tmp_path, models)), "--json", str(out), "--no-progress")
    assert "Plate crops" in table and "Full images" in table
    data = json.loads(out.read_text())
    assert data["command"] == "eval" and data["settings"]["baselines"] == {}
    by_set = {row["set"]: row for row in data["crops"]}
    assert set(by_set) == {"crops", "scenes"}
    crops = by_set["crops"]["ours"]
    assert crops["count"] == 4 and crops["exact_match"] == 0.75 and crops["cer"] == 0.25
    assert crops["ms_median"] >= 0 and crops["ms_p95"] >= crops["ms_median"]
    assert by_set["scenes"]["ours"]["exact_match"] == 1.0  # cut at the labelled box: bright, 'A'
    (images,) = data["images"]
    ours = images["ours"]
    assert images["set"] == "scenes" and ours["images"] == 3 and ours["plates"] == 3
    assert ours["recall"] == 1.0 and ours["precision"] == 1.0 and ours["exact_match"] == 1.0
    assert ours["ms_median"] >= 0


def test_eval_limit_spreads_and_unknown_baseline_is_refused(tmp_path: Path, models: dict[str, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert accuracy.spread(list(range(10)), 3) == [0, 3, 6]
    assert accuracy.spread([1, 2], 5) == [1, 2]
    crop_csv, _ = _labelled_sets(tmp_path, models)
    out = run(capsys, "eval", str(crop_csv), "--no-shared", "--limit", "2", "--json", "-", "--no-progress",
              "--config", str(write_config(tmp_path, models)))
    data = json.loads(out)
    assert data["crops"][0]["ours"]["count"] == 2 and data["notes"]
    parser = argparse.ArgumentParser()
    accuracy.register(parser.add_subparsers())
    with pytest.raises(SystemExit):
        parser.parse_args(["eval", "--baseline", "openalpr"])
    with pytest.raises(ConfigError, match="no labelled set"):
        accuracy.collect_sets([], "AB", shared=False)


def test_eval_with_baselines_reports_them_or_why_not(tmp_path: Path, models: dict[str, Path],
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Tesseract when installed (else its skip reason); RapidOCR replaced by a fake reader, so the test
    does not depend on it (its real loading is tested below when it is installed)."""
    crop_csv, scene_csv = _labelled_sets(tmp_path, models)
    fake = baselines.LineReader("rapidocr", "3.fake", lambda image: [("STATE", 0.9), ("A", 0.8)], whole_images=True)
    monkeypatch.setitem(baselines.FACTORIES, "rapidocr", lambda threads, charset: fake)
    out = run(capsys, "eval", str(crop_csv), str(scene_csv), "--no-shared", "--baseline", "rapidocr,tesseract",
              "--json", "-", "--no-progress", "--config", str(write_config(tmp_path, models)))
    data = json.loads(out)
    assert data["settings"]["baselines"]["rapidocr"]["version"] == "3.fake"
    tesseract_ran = "tesseract" in data["settings"]["baselines"]
    assert tesseract_ran or "tesseract" in data["settings"]["baselines_skipped"]
    crops = {row["set"]: row for row in data["crops"]}["crops"]
    fake_score = crops["baselines"]["rapidocr"]
    # Picked: the longest line ('STATE': no line is plate-like) -> no exact read;
    # any line: 'A' is there, right for the three crops labelled 'A'.
    assert fake_score["count"] == 4 and fake_score["exact_match"] == 0.0 and fake_score["exact_any_line"] == 0.75
    assert ("tesseract" in crops["baselines"]) == tesseract_ran
    (images,) = data["images"]
    assert set(images["baselines"]) == {"rapidocr"}  # Tesseract reads crops only
    assert images["baselines"]["rapidocr"]["count"] == 3


def test_baseline_plate_pick_and_any_line_rules() -> None:
    assert baselines.pick_plate([("ALABAMA", 0.99), ("2A0D34M", 0.98), ("1123", 0.7)]) == "2A0D34M"
    assert baselines.pick_plate([("PEUGEOT", 0.9)]) == "PEUGEOT"
    assert baselines.pick_plate([]) == ""
    assert baselines.pick_plate([("AB12", 0.5), ("CD34", 0.9)]) == "CD34"  # the most confident plate-like line
    assert baselines.pick_plate([("X1", 0.99), ("AB123CD", 0.6)]) == "AB123CD"  # too short to be a plate
    assert baselines.any_line_matches([("AB123", 0.9), ("CD", 0.9)], "AB123CD")
    assert not baselines.any_line_matches([("AB123", 0.9), ("X", 0.1), ("CD", 0.9)], "AB123CD")
    readers, skipped = baselines.load_baselines([], threads=1)
    assert readers == [] and skipped == {}
    with pytest.raises(AnprError):
        baselines.load_baselines(["nope"])


def test_rapidocr_runs_offline_on_its_wheels_models() -> None:
    pytest.importorskip("rapidocr")
    try:
        reader = baselines.rapidocr_reader(threads=1)
    except baselines.BaselineUnavailable as error:
        pytest.skip(f"rapidocr here cannot run offline: {error}")
    image = np.full((64, 240, 3), 255, np.uint8)
    cv2.putText(image, "AB123", (10, 48), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 4)
    lines = reader.lines(image)
    assert reader.version.startswith("3.") and reader.whole_images
    assert all(isinstance(text, str) and isinstance(score, float) for text, score in lines)
    assert any("AB123" in text for text, _ in lines), lines
    crop_lines = reader.read_crop(image)  # its text lines plus the whole crop read as one line
    assert len(crop_lines) == len(lines) + 1 and "AB123" in baselines.pick_plate(crop_lines)


# -------------------------------------------------------------------------------------- sizes and plots
def test_bench_sizes_sweeps_and_plots(tmp_path: Path, models: dict[str, Path],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, scene_csv = _labelled_sets(tmp_path, models)
    out, plot = tmp_path / "sizes.json", tmp_path / "docs" / "bench-sizes.png"
    table = run(capsys, "bench-sizes", str(scene_csv), "--no-shared", "--sizes", "192,160", "--plot", str(plot),
                "--json", str(out), "--no-progress", "--config", str(write_config(tmp_path, models, "dynamic")))
    data = json.loads(out.read_text())
    assert [row["input_size"] for row in data["sizes"]] == [160, 192]
    for row in data["sizes"]:
        assert row["detector_ms_median"] >= 0 and row["read_ms_median"] >= 0
        assert set(row["sets"]) == {str(scene_csv)}
        assert row["sets"][str(scene_csv)]["plates"] == 3
    assert "| 160 |" in table and "| 192 |" in table
    if data.get("plot"):
        assert plot.is_file() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(argparse.ArgumentTypeError):
        sizes.parse_sizes("320,300")


def test_plot_sizes_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from anpr_edge.bench.plots import plot_sizes

    rows = [{"input_size": s, "detector_ms_median": s / 10, "read_ms_median": s / 8, "read_ms_p95": s / 6,
             "sets": {"val": {"recall": 0.5 + s / 2000, "exact_match": None},
                      "test": {"recall": 0.9, "exact_match": 0.4}}} for s in (320, 416, 512)]
    path = plot_sizes(rows, tmp_path / "plot.png", title="test")
    assert path is not None and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
