"""The passage benchmark: the labelled clip generator, the event-level scorer, the runner and its command."""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from tiny_models import brightness_ocr, constant_plate_config

from anpr_edge.bench import passage_clips as pc
from anpr_edge.bench.cli import register
from anpr_edge.bench.passage_bench import bench_passages, format_report
from anpr_edge.bench.passage_score import (
    ObservedEvent,
    ObservedTrack,
    TrackRead,
    confidence_summary,
    format_confidence,
    format_rows,
    latency_summary,
    match_events,
    score_clip,
    scored,
    summarize,
)
from anpr_edge.config import parse_config
from anpr_edge.pipeline import PlateReader
from anpr_edge.train.datasets import split_of
from anpr_edge.values import Detections

SMALL = pc.ClipOptions(width=320, height=180, fps=10.0, passages=(3, 4), drive_s=(1.0, 1.6), idle_s=(1.0, 1.5),
                       return_gap_s=2.0, min_source_plate_px=60)
CROP_SETS = ("us-nyc-plate-crops", "br-plate-crops", "tn-plate-crops")


# ------------------------------------------------------------------------------------------ fake data
def texts_of_split(split: str, count: int, prefix: str) -> list[str]:
    """``count`` plate texts in ``split`` of the fixed text split, all at least two edits apart."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        text = f"{prefix}{n:04d}{'XYZ'[n % 3]}"
        n += 1
        if split_of(text) == split and all(sum(a != b for a, b in zip(text, t)) > 1 for t in found):
            found.append(text)
    return found


def plate_picture(text: str, width: int = 150, height: int = 50) -> np.ndarray:
    """A white plate with black text: the frame pixels inside a ground-truth box should be bright."""
    image = np.full((height, width, 3), 235, np.uint8)
    cv2.rectangle(image, (1, 1), (width - 2, height - 2), (20, 20, 20), 2)
    cv2.putText(image, text, (6, int(height * 0.7)), cv2.FONT_HERSHEY_SIMPLEX, height / 60, (15, 15, 15), 2)
    return image


def write_labels(folder: Path, rows: list[tuple[str, str, tuple[int, int, int, int] | None]]) -> None:
    with (folder / "labels.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "text", "xmin", "ymin", "xmax", "ymax"])
        for name, text, box in rows:
            writer.writerow([name, text, *(box if box else ("", "", "", ""))])


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three crop sets (val and train texts, one crop too narrow to use) and a scene set."""
    root = tmp_path_factory.mktemp("datasets")
    for k, name in enumerate(CROP_SETS):
        folder = root / name
        (folder / "images").mkdir(parents=True)
        rows: list[tuple[str, str, tuple[int, int, int, int] | None]] = []
        prefix = "ABC"[k]
        for text in texts_of_split("val", 4, prefix) + texts_of_split("train", 2, prefix + "T"):
            cv2.imwrite(str(folder / "images" / f"{text}.png"), plate_picture(text))
            rows.append((f"images/{text}.png", text, None))
        narrow = texts_of_split("val", 1, prefix + "N")[0]
        cv2.imwrite(str(folder / "images" / f"{narrow}.png"), plate_picture(narrow, width=40, height=14))
        rows.append((f"images/{narrow}.png", narrow, None))
        write_labels(folder, rows)
    scenes = root / "fr-plate-scenes"
    (scenes / "images").mkdir(parents=True)
    rows = []
    for i, text in enumerate(texts_of_split("train", 3, "F")):  # a test set: every text is used
        scene = np.full((400, 600, 3), (60 + 20 * i, 90, 120), np.uint8)
        box = (220, 250, 370, 300)
        scene[box[1] : box[3], box[0] : box[2]] = plate_picture(text, 150, 50)
        cv2.imwrite(str(scenes / "images" / f"{text}.jpg"), scene, [cv2.IMWRITE_JPEG_QUALITY, 95])
        rows.append((f"images/{text}.jpg", text, box))
    write_labels(scenes, rows)
    return root


@pytest.fixture(scope="module")
def clip_set(fake_root: Path, tmp_path_factory: pytest.TempPathFactory) -> list[pc.ClipTruth]:
    cache = tmp_path_factory.mktemp("cache")
    return pc.passage_clip_set(2, seed=5, options=SMALL, cache=cache, root=fake_root, progress=False)


# ------------------------------------------------------------------------------------------ generator
def test_sources_are_the_val_crops_and_every_scene(fake_root: Path) -> None:
    pools = pc.plate_sources(fake_root, min_plate_px=60)
    assert set(pools) == {*CROP_SETS, "fr-plate-scenes"}
    for name in CROP_SETS:
        texts = {s.text for s in pools[name]}
        assert len(texts) == 4 and all(split_of(t) == "val" for t in texts)  # no train text, no narrow crop
        assert all(s.box is None for s in pools[name])
    assert len(pools["fr-plate-scenes"]) == 3 and all(s.box is not None for s in pools["fr-plate-scenes"])


def test_plans_are_deterministic_with_barrier_and_traffic_clips(fake_root: Path) -> None:
    pools = pc.plate_sources(fake_root)
    assert pc.plan_clip(5, 0, pools, SMALL) == pc.plan_clip(5, 0, pools, SMALL)
    assert pc.plan_clip(5, 1, pools, SMALL) != pc.plan_clip(6, 1, pools, SMALL)

    barrier = pc.plan_clip(5, 0, pools, SMALL)
    kinds = [c.kind for c in barrier.cars]
    assert kinds[0] == "idle" and barrier.cars[0].stop is not None and kinds.count("return") == 2
    gap = round(SMALL.return_gap_s * SMALL.fps)
    by_id = {c.id: c for c in barrier.cars}
    for car in barrier.cars:
        if car.returns is not None:
            first = by_id[car.returns]
            assert car.source == first.source and car.sprite_seed == first.sprite_seed
            assert car.start_frame >= first.end_frame + gap
    texts = [c.source.text for c in barrier.cars if c.returns is None]
    assert len(set(texts)) == len(texts)  # only the returning cars repeat a text

    traffic = pc.plan_clip(5, 1, pools, SMALL)
    assert all(c.kind == "drive" for c in traffic.cars) and 3 <= len(traffic.cars) <= 4
    on_road = np.zeros(traffic.frames, int)
    for car in traffic.cars:
        on_road[car.start_frame : car.end_frame] += 1
    assert on_road.max() >= 2  # two cars at once somewhere
    empty_runs = np.diff(np.flatnonzero(np.diff(np.r_[1, (on_road[: max(c.end_frame for c in traffic.cars)] > 0), 1])))
    assert empty_runs.max() >= round(1.5 * SMALL.fps)  # and the road empty for a while
    for lane in (0, 1):  # one car per lane at a time
        cars = sorted((c for c in traffic.cars if c.lane == lane), key=lambda c: c.start_frame)
        assert all(b.start_frame >= a.end_frame for a, b in zip(cars, cars[1:]))


def test_clip_truth_matches_the_frames(clip_set: list[pc.ClipTruth], fake_root: Path) -> None:
    pools = pc.plate_sources(fake_root)
    for clip in clip_set:
        capture = cv2.VideoCapture(str(clip.path))
        decoded = []
        while True:
            ok, image = capture.read()
            if not ok:
                break
            decoded.append(image)
        capture.release()
        assert len(decoded) == clip.frames and decoded[0].shape == (clip.height, clip.width, 3)
        starts = [p.start_frame for p in clip.passages]
        assert starts == sorted(starts)
        val_texts = {s.text for pool in pools.values() for s in pool}
        for passage in clip.passages:
            assert passage.text in val_texts and passage.boxes
            assert passage.start_frame <= passage.first_frame <= passage.last_frame <= passage.end_frame
            for frame, (x1, y1, x2, y2) in [*passage.boxes.items(), *passage.partial.items()]:
                assert 0 <= x1 < x2 <= clip.width and 0 <= y1 < y2 <= clip.height
            assert not set(passage.boxes) & set(passage.partial)
            assert all(passage.start_frame <= f <= passage.end_frame for f in passage.partial)
            # The plates are white: the box of a fully visible, large enough plate is bright in the video.
            frame, box = max(passage.boxes.items(), key=lambda item: item[1][2] - item[1][0])
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            inner = decoded[frame][y1 + 2 : y2 - 2, x1 + 2 : x2 - 2]
            assert inner.mean() > 140, (passage.id, frame, inner.mean())
        assert pc.load_clip_truth(clip.path.with_suffix(".json")) == clip
    assert any(p.partial for c in clip_set for p in c.passages)  # plates leave through the bottom edge
    barrier = clip_set[0]
    returns = [p for p in barrier.passages if p.kind == "return"]
    assert len(returns) == 2
    for again in returns:
        first = next(p for p in barrier.passages if p.id == again.returns)
        assert first.text == again.text and again.first_frame > first.last_frame
    assert next(p for p in barrier.passages if p.kind == "idle").stop is not None


def test_clip_set_is_cached_and_rendering_is_deterministic(clip_set: list[pc.ClipTruth], fake_root: Path) -> None:
    folder = clip_set[0].path.parent
    assert folder.name.startswith(f"passage-clips-v{pc.VERSION}-s5-")
    stamps = {p: p.stat().st_mtime_ns for p in folder.iterdir()}
    again = pc.passage_clip_set(2, seed=5, options=SMALL, cache=folder.parent, root=fake_root, progress=False)
    assert again == clip_set and {p: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporary files left

    plan = pc.plan_clip(5, 1, pc.plate_sources(fake_root), SMALL)

    def digest() -> tuple[str, list[pc.PassageTruth]]:
        frames, truth = pc.render_frames(plan, fake_root)
        h = hashlib.sha1()
        for frame in frames:
            h.update(frame.tobytes())
        return h.hexdigest(), truth

    first, second = digest(), digest()
    assert first == second
    assert [p.boxes for p in first[1]] == [p.boxes for p in clip_set[1].passages]


# ------------------------------------------------------------------------------------------ scoring
def passage(pid: str, text: str, frames: range, x: float, kind: str = "drive", **kw: object) -> pc.PassageTruth:
    boxes = {f: (x, 100.0, x + 80.0, 120.0) for f in frames}
    return pc.PassageTruth(id=pid, text=text, source="set", image="", kind=kind, lane=0,  # type: ignore[arg-type]
                           start_frame=frames.start, end_frame=frames.stop - 1, boxes=boxes, **kw)  # type: ignore[arg-type]


def event(text: str | None, frames: range, x: float, emitted: int | None = None, **kw: object) -> ObservedEvent:
    return ObservedEvent(text=text, start_frame=frames.start, end_frame=frames.stop - 1, box=(x + 2, 101.0, x + 79, 119.0),
                         emitted_frame=frames.stop - 1 if emitted is None else emitted, **kw)  # type: ignore[arg-type]


TRUTH = (
    passage("a", "AB123", range(0, 30), 10),
    passage("b", "CD456", range(10, 40), 200),  # at the same time as a, elsewhere
    passage("c", "EF789", range(50, 80), 10, kind="idle", stop=(55, 75)),
    passage("d", "AB123", range(120, 150), 200, kind="return", returns="a"),  # a again, later
)


def test_a_perfect_event_list_scores_everything() -> None:
    events = [event(p.text, range(p.first_frame, p.last_frame + 1), p.boxes[p.first_frame][0]) for p in TRUTH]
    assert match_events(TRUTH, events) == [0, 1, 2, 3]
    score = score_clip("clip", TRUTH, events)
    (row, *_rest) = summarize([score])
    assert (row.passages, row.detected, row.exactly_one, row.correct, row.duplicates, row.false_events) == (4, 4, 4, 4, 0, 0)
    assert row.precision == 1.0 and "| all | 4 | 100.0% (4/4) |" in format_rows([row])


def test_duplicates_misses_wrong_texts_and_false_events_are_counted() -> None:
    events = [
        event("AB123", range(0, 10), 10),
        event("AB123", range(15, 30), 10),  # a again: a duplicate
        event("CD465", range(10, 40), 200),  # b with a wrong text
        # c: missed
        event("AB123", range(120, 150), 200),  # the returning car, told apart from a by time
        event("ZZ999", range(90, 100), 500),  # nothing there: a false event
    ]
    score = score_clip("clip", TRUTH, events)
    outcomes = {o.id: o for o in score.outcomes}
    assert outcomes["a"].duplicates == 1 and not outcomes["a"].exactly_one and not outcomes["a"].correct
    assert outcomes["b"].exactly_one and not outcomes["b"].correct
    assert not outcomes["c"].detected and outcomes["c"].answered_while_stopped is False
    assert outcomes["d"].correct
    row = summarize([score])[0]
    assert (row.detected, row.exactly_one, row.correct, row.duplicates, row.false_events) == (3, 2, 1, 1, 1)
    assert (row.events, row.precision) == (5, 3 / 5)
    by_name = {r.name: r for r in summarize([score])}
    assert by_name["kind: return"].correct == 1 and by_name["kind: idle"].detected == 0


def test_event_confidence_is_judged_against_the_events_texts() -> None:
    events = [
        event("AB123", range(0, 10), 10, confidence=0.95),  # right
        event("AB123", range(15, 30), 10, confidence=0.85),  # a duplicate, judged on its own text: right
        event("CD465", range(10, 40), 200, confidence=0.65),  # wrong text
        event(None, range(50, 80), 10, confidence=0.0),  # unread: claims nothing, left out
        event("AB123", range(120, 150), 200, confidence=1.0),  # right; 1.0 falls in the last bin
        event("ZZ999", range(90, 100), 500, confidence=0.25),  # false event: wrong
    ]
    summary = confidence_summary([score_clip("clip", TRUTH, events)], bins=5, thresholds=(0.5, 0.9))
    assert (summary.events, summary.correct) == (5, 3)
    assert [(b.events, b.correct) for b in summary.bins] == [(0, 0), (1, 0), (0, 0), (1, 0), (3, 3)]
    assert summary.mean_confidence == pytest.approx((0.95 + 0.85 + 0.65 + 1.0 + 0.25) / 5)
    # |0 - 0.25| + |0 - 0.65| + |3 - 2.8| over 5 events
    assert summary.calibration_error == pytest.approx((0.25 + 0.65 + 0.2) / 5)
    assert [(t.threshold, t.kept, t.kept_correct) for t in summary.thresholds] == [(0.5, 4, 3), (0.9, 2, 2)]
    table = format_confidence(summary)
    assert "| 0.8-1.0 | 3 | 100.0% (3/3) | 0.933 |" in table
    assert "| 0.9 | 40.0% (2/5) | 100.0% (2/2) | 100.0% (2/2) |" in table  # both wrong events dropped
    assert confidence_summary([]).events == 0 and "no event" in format_confidence(confidence_summary([]))
    # The JSON keeps each event's confidence (runs over several seeds can be pooled).
    assert score_clip("clip", TRUTH, events).outcomes[0].as_dict()["events"][0]["confidence"] == 0.95


def test_a_plate_boxed_inside_its_crop_margin_matches() -> None:
    crop = passage("a", "AB123", range(0, 10), 10)  # box (10, 100, 90, 120): a crop with a margin
    plate = ObservedEvent(text="AB123", start_frame=0, end_frame=9, box=(35.0, 105.0, 65.0, 115.0), emitted_frame=9)
    assert match_events([crop], [plate]) == [0]  # IoU 0.19 only, but wholly inside the crop
    stray = ObservedEvent(text="X", start_frame=0, end_frame=9, box=(80.0, 104.0, 120.0, 116.0), emitted_frame=9)
    assert match_events([crop], [stray]) == [None]
    loose = replace(plate, box=(0.0, 80.0, 110.0, 140.0))  # around the plate, 4 times its area
    huge = replace(plate, box=(0.0, 0.0, 300.0, 200.0))  # around everything
    assert match_events([crop], [loose, huge]) == [0, None]


def test_a_plate_partly_out_of_the_frame_matches_its_visible_part() -> None:
    leaving = replace(passage("a", "AB123", range(0, 10), 10), partial={10: (10.0, 170.0, 90.0, 180.0)})
    assert leaving.box_at(10) == (10.0, 170.0, 90.0, 180.0) and leaving.box_at(11) is None
    cut = ObservedEvent(text="AB123", start_frame=9, end_frame=10, box=(12.0, 171.0, 88.0, 180.0), emitted_frame=10)
    assert match_events([leaving], [cut]) == [0]


def test_voting_against_single_best_frame_uses_the_same_reads() -> None:
    def track(tid: int, p: pc.PassageTruth, reads: list[tuple[str, float]]) -> ObservedTrack:
        frames = sorted(p.boxes)
        return ObservedTrack(tid, {f: p.boxes[f] for f in frames},
                             tuple(TrackRead(frames[i], t, c) for i, (t, c) in enumerate(reads)))

    a, b, c, d = TRUTH
    tracks = [
        track(1, a, [("AB123", 0.6), ("A8123", 0.9), ("AB123", 0.7)]),  # one confident misread wins single best
        track(2, b, [("CD456", 0.8), ("CD456", 0.7)]),
        track(3, c, [("EF789", 0.5)]),
        track(4, c, [("EF780", 0.4)]),  # c's track broke in two: the best read over both counts
        # d: no reads at all
    ]
    events = [event(p.text, range(p.first_frame, p.last_frame + 1), p.boxes[p.first_frame][0]) for p in TRUTH]
    score = score_clip("clip", TRUTH, events, tracks)
    assert [o.single_best for o in score.outcomes] == ["A8123", "CD456", "EF789", None]
    # Every read of the passage's tracks is kept with it, in frame order, for diagnosing its event.
    assert sorted(r.text for r in score.outcomes[2].reads) == ["EF780", "EF789"]  # both of c's tracks
    assert [r.frame for r in score.outcomes[2].reads] == sorted(r.frame for r in score.outcomes[2].reads)
    assert score.outcomes[0].as_dict()["reads"] == [[r.frame, r.text, r.confidence] for r in tracks[0].reads]
    assert score.outcomes[3].reads == ()
    row = summarize([score])[0]
    assert (row.correct, row.single_correct) == (4, 2)


def test_latency_and_stopped_cars() -> None:
    c = TRUTH[2]
    events = [
        event("EF789", range(50, 60), 10, emitted=60, early=True, latency_ms=20.0),
        event("CD456", range(10, 40), 200, early=True, latency_ms=600.0),
        event("AB123", range(0, 30), 10, early=False),
    ]
    score = score_clip("clip", TRUTH, events, fps=10.0)
    summary = latency_summary([score], events)
    assert (summary.early_events, summary.median_ms, summary.max_ms, summary.within_target) == (2, 310.0, 600.0, 1)
    assert (summary.stopped, summary.answered_while_stopped) == (1, 1)
    outcome = next(o for o in score.outcomes if o.id == c.id)
    assert outcome.seconds_to_event == pytest.approx((60 - 50) / 10.0)


# -------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory):
    return constant_plate_config(tmp_path_factory.mktemp("models"))


def test_bench_runs_the_pipeline_on_the_clips(tiny_config, clip_set: list[pc.ClipTruth]) -> None:
    reader = PlateReader.from_config(tiny_config)
    clips = [clip_set[1]]
    report = bench_passages(tiny_config, reader, clips, seed=5, progress=False)
    assert report.speed is not None and report.speed.frames == clips[0].frames
    # One detection per frame: each is either read or skipped because its track's vote settled.
    assert report.speed.ocr_reads + report.speed.ocr_skipped == clips[0].frames
    assert report.speed.ocr_skipped > 0
    assert report.rows[0].passages == len(clips[0].passages)
    assert report.latency is not None and report.latency.early_events >= 1  # the constant track settles early
    text = format_report(report)
    assert "| all |" in text and "early-event latency" in text and "Event confidence" in text
    assert report.confidence is not None and report.confidence.events == report.rows[0].events
    json.dumps(report.as_dict())


def test_clip_sets_of_several_seeds_pool_into_one_report(tiny_config, clip_set: list[pc.ClipTruth]) -> None:
    reader = PlateReader.from_config(tiny_config)
    clip = clip_set[1]
    again = replace(clip, seed=clip.seed + 1)  # stands in for the same-named clip of another seed
    report = bench_passages(tiny_config, reader, [clip, again], seed=(clip.seed, again.seed), progress=False)
    assert [s.clip for s in report.scores] == [f"s{clip.seed}-{clip.name}", f"s{again.seed}-{clip.name}"]
    assert report.rows[0].passages == 2 * len(clip.passages)
    assert report.as_dict()["seed"] == [clip.seed, clip.seed + 1]
    assert f"(seed {clip.seed}, {clip.seed + 1})" in format_report(report)


def test_command_smoke_mode_on_traffic_clips(tiny_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "datasets"
    (root / "traffic-videos").mkdir(parents=True)
    writer = cv2.VideoWriter(str(root / "traffic-videos" / "street.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 96))
    for i in range(12):
        writer.write(np.full((96, 160, 3), 40 + 15 * i, np.uint8))
    writer.release()
    monkeypatch.setenv("ANPR_EDGE_DATASETS", str(root))
    monkeypatch.setenv("ANPR_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "config.yaml"
    models = tiny_config.models
    config.write_text(f"models:\n  detector: {{path: {models.detector.path}}}\n  ocr: {{path: {models.ocr.path}}}\n"
                      "cameras: [{id: a, source: demo}]\n")
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench-passages", "--clips", "0", "--traffic", "--json", "--config", str(config)])
    assert args.threads == 1
    assert args.handler(args) == 0
    result = json.loads(capsys.readouterr().out)
    (street,) = result["traffic"]
    assert street["clip"] == "street.mp4" and street["frames"] == 12 and street["events"] == len(street["texts"]) >= 1
    assert result["rows"] == [] and not list((tmp_path / "cache").glob("passage-clips-*"))


# ------------------------------------------------------------------------------------------ clip reads
class OracleDetector:
    """Finds exactly the scored passages' true boxes, in the order ``collect_crops`` asks for frames."""

    def __init__(self, clip: pc.ClipTruth, every: int) -> None:
        self.passages = [p for p in clip.passages if scored(p)]
        self.frames = iter([f for f in range(clip.frames) if f % every == 0 and any(f in p.boxes for p in self.passages)])

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        frame = next(self.frames)
        boxes = [p.boxes[frame] for p in self.passages if frame in p.boxes]
        return [Detections(np.array(boxes, np.float32), np.full(len(boxes), 0.9, np.float32))]


def test_clip_reads_pair_models_on_the_same_crops(clip_set: list[pc.ClipTruth], tmp_path: Path) -> None:
    from anpr_edge.backends import create_backend
    from anpr_edge.bench.clip_reads import collect_crops, pair, read_passages, score, sign_test
    from anpr_edge.ocr import PlateRecognizer

    clip = clip_set[1]
    clip = replace(clip, passages=tuple(replace(p, text="A") for p in clip.passages))
    bright_a = PlateRecognizer(create_backend("onnxruntime", brightness_ocr(tmp_path / "a.onnx"), threads=1))
    bright_b = PlateRecognizer(create_backend("onnxruntime", brightness_ocr(tmp_path / "b.onnx", charset="BA"), threads=1))
    config = parse_config({"cameras": [{"id": "demo", "source": "demo"}]})
    reader = PlateReader(OracleDetector(clip, 2), bright_a, padding=config.crop.padding)  # type: ignore[arg-type]
    passages = collect_crops(clip, reader, every=2, progress=False)

    scored_passages = [p for p in clip.passages if scored(p)]
    assert [p.id for p in passages] == [p.id for p in scored_passages]
    for crops, truth in zip(passages, scored_passages):  # every other frame with the plate in full view, one cut each
        assert crops.frames == tuple(f for f in sorted(truth.boxes) if f % 2 == 0)
        assert all(len(cuts) == 1 for cuts in crops.cut_sets)

    reads_a, reads_b = read_passages(bright_a, config, passages)[0], read_passages(bright_b, config, passages)[0]
    total = sum(len(p.frames) for p in passages)
    row_a, row_b = score("a", reads_a)[-1], score("b", reads_b)[-1]
    assert row_a.set == "all" and row_a.reads == row_b.reads == total
    # The second model reads the other letter on every crop: each read is right for exactly one of the two.
    assert row_a.per_read + row_b.per_read == pytest.approx(1.0)
    pairing = pair("a", "b", reads_a, reads_b)
    assert pairing.reads_only_base + pairing.reads_only_model == total
    assert pairing.passages_only_base + pairing.passages_only_model == len(passages)  # votes are complementary too
    assert pairing.passages_only_base == sum(r.vote_all == "A" for r in reads_a)
    assert (sign_test(0, 0), sign_test(5, 0), sign_test(2, 2)) == (1.0, 0.0625, 1.0)
    assert sign_test(14, 5) == pytest.approx(0.0636, abs=1e-3)

    # Other read weights vote the very same reads, one result list each, in the order asked.
    weighted = read_passages(bright_a, config, passages, weightings=("equal", "runtime"))
    assert len(weighted) == 2 and weighted[1] == reads_a
    assert [r.texts for r in weighted[0]] == [r.texts for r in reads_a]


def test_clip_read_weightings() -> None:
    from anpr_edge.bench.clip_reads import WEIGHTINGS
    from anpr_edge.voting import REFERENCE_WIDTH_PX, read_weight

    half = REFERENCE_WIDTH_PX / 2
    assert WEIGHTINGS["runtime"](0.8, half, 100.0) == read_weight(0.8, width_px=half, sharpness=100.0)
    assert WEIGHTINGS["equal"](0.1, 10.0, 1.0) == WEIGHTINGS["equal"](0.9, None, None) == 1.0
    assert WEIGHTINGS["confidence"](0.8, half, 1.0) == pytest.approx(0.8, abs=1e-5)  # crop quality ignored
    assert WEIGHTINGS["confidence2"](0.5, None, None) == pytest.approx(0.25, abs=1e-5)
    assert WEIGHTINGS["width2"](1.0, half, None) == pytest.approx(0.25, abs=1e-5)  # the size factor twice
    assert WEIGHTINGS["width2"](1.0, 2 * REFERENCE_WIDTH_PX, None) == pytest.approx(1.0, abs=1e-5)
