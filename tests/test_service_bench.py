"""`anpr-edge bench-service`: the daemon's Service on cameras played in real time vs every frame.

Tiny: two cameras on short 320x180 clips at 10 fps (a few seconds each, rendered from fake plate photos in
a child process as the command does) and tiny ONNX models, so the real capture threads, hand-offs and
inference loop run in a few seconds.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import constant_plate_config

from anpr_edge.bench import service_bench as sb
from anpr_edge.bench.passage_clips import ClipOptions, ClipTruth
from anpr_edge.bench.passage_score import ClipScore, ObservedEvent, PassageOutcome
from anpr_edge.pipeline import PlateReader
from anpr_edge.train.datasets import split_of

TINY = ClipOptions(width=320, height=180, fps=10.0, passages=(2, 2), drive_s=(0.8, 1.0), idle_s=(0.5, 0.6),
                   return_gap_s=1.0, min_source_plate_px=60)


def _val_texts(count: int, prefix: str) -> list[str]:
    found: list[str] = []
    n = 0
    while len(found) < count:
        text = f"{prefix}{n:04d}{'XYZ'[n % 3]}"
        n += 1
        if split_of(text) == "val" and all(sum(a != b for a, b in zip(text, t)) > 1 for t in found):
            found.append(text)
    return found


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[ClipTruth]:
    """Clips 1 and 2 of a tiny set (plain traffic; clip 0 is a long barrier clip) from one fake crop set."""
    root = tmp_path_factory.mktemp("datasets")
    folder = root / "us-nyc-plate-crops"
    (folder / "images").mkdir(parents=True)
    with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "text", "xmin", "ymin", "xmax", "ymax"])
        for text in _val_texts(8, "K"):
            image = np.full((50, 150, 3), 235, np.uint8)
            cv2.putText(image, text, (6, 35), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (15, 15, 15), 2)
            cv2.imwrite(str(folder / "images" / f"{text}.png"), image)
            writer.writerow([f"images/{text}.png", text, "", "", "", ""])
    made = sb.prepare_clips(3, seed=3, options=TINY, cache=tmp_path_factory.mktemp("cache"), root=root,
                            progress=False)
    assert [c.index for c in made] == [0, 1, 2] and all(c.path.is_file() for c in made)
    return made[1:]


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory):
    return constant_plate_config(tmp_path_factory.mktemp("models"))


def test_live_and_every_frame_runs_are_measured_and_scored(tiny_config, clips: list[ClipTruth]) -> None:
    reader = PlateReader.from_config(tiny_config)
    report = sb.bench_service(tiny_config, reader, clips, cameras=2, progress=False)
    (live,), (reference,) = report.live, report.reference
    assert live.live and not reference.live
    assert [c.clip for c in live.cameras] == [c.name for c in clips] == [c.clip for c in reference.cameras]
    window = min(c.frames for c in clips)
    for run in (live, reference):
        for camera, clip in zip(run.cameras, clips):
            assert camera.frames == clip.frames and camera.delivered == clip.frames  # no fps limit
            assert camera.processed + camera.dropped == camera.delivered  # every frame taken or counted dropped
            assert camera.processed_fps > 0 and camera.concurrent_fps > 0
            assert camera.window_frames == window and 0 < camera.processed_in_window <= window
        # Every event's times map back to frames of its clip (the probes saw the frames the events span).
        assert run.events and all(0 <= e.start_frame <= e.end_frame < max(c.frames for c in clips) for e in run.events)
        assert run.baseline_mb > 0 and run.peak_mb >= run.baseline_mb and run.detect_ms and run.batch_sizes
    for camera in reference.cameras:  # the lossless hand-off: every frame processed, none dropped
        assert camera.processed == camera.frames and camera.dropped == 0
        assert camera.processed_fps == pytest.approx(camera.fps)
    for camera in live.cameras:  # played in real time: the frame age is measured on every processed frame
        assert len(camera.frame_age_ms) == camera.processed and all(age >= 0 for age in camera.frame_age_ms)
    assert reference.wall_s < live.wall_s  # tiny models: far faster than real time
    assert live.wall_s >= 0.9 * max(c.frames / c.fps for c in clips)

    passages = sum(len(c.passages) for c in clips)
    for recall in (report.live_recall, report.reference_recall):
        assert recall is not None and 0 < recall.passages <= passages
        for count in (recall.detected, recall.read, recall.correct):
            assert 0.0 <= recall.rate(count) <= 1.0
        assert recall.correct <= recall.read <= recall.detected
    verdict = report.verdict
    assert verdict.mb_per_camera == pytest.approx(live.peak_mb / 2) and verdict.mb_per_camera > 0
    assert verdict.min_fps == min(c.concurrent_fps for c in live.cameras) > 0
    assert verdict.detected_drop is not None and verdict.complete

    text = sb.format_report(report)
    assert "| 1 | cam1 | clip-001 |" in text and "| 1 | cam2 | clip-002 |" in text and "Verdict: " in text
    data = json.loads(json.dumps(report.as_dict()))
    assert [c["processed"] for c in data["every_frame"][0]["cameras"]] == [c.frames for c in clips]
    assert data["live"][0]["memory"]["peak_per_camera_mb"] > 0
    assert data["verdict"]["passed"] in (True, False)


def test_command_runs_live_only_with_skip_full(tiny_config, clips: list[ClipTruth], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    sb.register(parser.add_subparsers(dest="command"))
    defaults = parser.parse_args(["bench-service"])
    assert (defaults.cameras, defaults.rounds, defaults.seed, defaults.width, defaults.height, defaults.fps,
            defaults.threads, defaults.input_size, defaults.fps_limit) == (4, 1, 1, 1280, 720, 25.0, None, None, None)
    for bad in (["--input-size", "100"], ["--input-size", "330"], ["--cameras", "0"], ["--fps-limit", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["bench-service", *bad])

    asked: list[tuple[int, ClipOptions]] = []

    def fake_clips(count: int, *, seed: int, options: ClipOptions, **_: object) -> list[ClipTruth]:
        asked.append((count, options))
        return clips[:count]

    monkeypatch.setattr(sb, "prepare_clips", fake_clips)
    models = tiny_config.models
    config = tmp_path / "config.yaml"
    config.write_text(f"models:\n  detector: {{path: {models.detector.path}}}\n  ocr: {{path: {models.ocr.path}}}\n"
                      "inference: {threads: 1}\ncameras: [{id: a, source: demo}]\n")
    args = parser.parse_args(["bench-service", "--cameras", "2", "--skip-full", "--json", "--config", str(config),
                              "--width", "320", "--height", "180", "--fps", "10"])
    assert args.handler(args) == 0
    assert asked == [(2, ClipOptions(width=320, height=180, fps=10.0))]
    result = json.loads(capsys.readouterr().out)
    assert result["settings"]["threads"] == 1 and result["settings"]["cameras"] == 2
    assert result["every_frame"] == [] and result["recall"]["every_frame"] is None
    assert result["verdict"]["recall_ok"] is None and result["verdict"]["passed"] in (None, False)
    cams = result["live"][0]["cameras"]
    assert [c["frames"] for c in cams] == [c.frames for c in clips] and all(c["processed"] > 0 for c in cams)


def test_verdict_against_the_targets() -> None:
    ok = sb.Verdict(min_fps=8.0, mb_per_camera=149.0, detected_drop=2.0, read_drop=-3.0)
    assert ok.passed is True and "Verdict: PASS" in ok.line()
    assert sb.Verdict(7.9, 100.0, 0.0, 0.0).passed is False
    assert sb.Verdict(9.0, 150.0, 0.0, 0.0).passed is False
    assert sb.Verdict(9.0, 100.0, 0.0, 2.5).passed is False
    assert sb.Verdict(9.0, 100.0, 2.5, 0.0).recall_ok is False
    unmeasured = sb.Verdict(9.0, 100.0, None, None)
    assert unmeasured.passed is None and "not measured" in unmeasured.line()
    assert sb.Verdict(9.0, 100.0, 0.0, 0.0, complete=False).passed is False


def test_recall_counts_read_apart_from_exactly_one_correct() -> None:
    def outcome(pid: str, texts: list[str]) -> PassageOutcome:
        events = tuple(ObservedEvent(text=t, start_frame=0, end_frame=1, box=None, emitted_frame=k)
                       for k, t in enumerate(texts))
        return PassageOutcome(clip="c", id=pid, text="AB123", source="s", kind="drive", events=events,
                              single_best=None, first_frame=0)

    score = ClipScore("c", (outcome("a", ["AB123"]), outcome("b", ["AB128", "AB123"]), outcome("c", ["XX"]),
                            outcome("d", [])), ())
    recall = sb.recall_of([score])
    assert (recall.passages, recall.detected, recall.read, recall.correct, recall.duplicates) == (4, 3, 2, 1, 1)
    other = sb.Recall(passages=4, detected=4, read=2, correct=1, duplicates=0, false_events=0)
    assert sb.recall_drop_points(recall, other, "detected") == pytest.approx(25.0)
    assert sb.recall_drop_points(recall, other, "read") == pytest.approx(0.0)
