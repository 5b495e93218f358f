"""The passage benchmark: the real ``run`` loop over labelled clips, scored event by event.

Each clip is processed as ``service.run_cameras`` processes a camera: a ``FileSource`` from the camera's
config, a ``PassageBuilder.from_config``, and per frame ``service._process`` (detector, OCR only for tracks
not settled yet, ``PassageBuilder.update``) with the events routed through an ``EventRouter`` (to a sink
that serialises the JSON payload, as stdout would), then ``flush`` at the end of the clip. Nothing of that
path is copied here; the loop only adds measurements around it:

- a thin stand-in for the ``PlateReader`` records each frame's detections and reads, so the reads can be
  attributed to the builder's tracks (for the single-best-frame baseline) without changing what runs;
- the wall time from a frame's arrival (``source.read`` returned) to each event it produced being routed:
  for an *early* event (its track still in view: the vote settled on this frame's read) that is the
  early-event latency the issue bounds at 0.5 s.

``bench_passages`` scores the runs with ``passage_score``; ``smoke_traffic`` runs the two real traffic clips
(no ground truth: the number of events and their texts). ``format_report`` renders the Markdown tables
(stdout of ``anpr-edge bench-passages``), ``PassageBenchReport.as_dict`` the JSON.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import cv2
import numpy as np
from tqdm import tqdm

from anpr_edge.bench.passage_clips import Box, ClipTruth
from anpr_edge.bench.passage_score import (
    LATENCY_TARGET_MS,
    ClipScore,
    ConfidenceSummary,
    LatencySummary,
    ObservedEvent,
    ObservedTrack,
    ScoreRow,
    TrackRead,
    confidence_summary,
    event_dict,
    format_confidence,
    format_rows,
    latency_summary,
    score_clip,
    summarize,
)
from anpr_edge.config import AppConfig, CameraConfig
from anpr_edge.passages import PassageBuilder
from anpr_edge.service import EventRouter, RunStats, _process, model_versions
from anpr_edge.sources import open_source
from anpr_edge.tracking import iou_matrix
from anpr_edge.values import Detections, PlateEvent, PlateRead

if TYPE_CHECKING:
    from anpr_edge.pipeline import PlateReader


class _RecordingReader:
    """Stands in for a ``PlateReader`` in ``service._process``: calls the real one, keeps the frame's
    detections and reads."""

    def __init__(self, reader: PlateReader) -> None:
        self.reader = reader
        self.detections = Detections.empty()
        self.reads: list[PlateRead] = []

    @property
    def detector(self) -> _RecordingReader:
        return self  # service._process calls reader.detector.detect

    @property
    def recognizer(self) -> Any:
        return self.reader.recognizer

    def reset(self) -> None:
        self.detections, self.reads = Detections.empty(), []

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        found = self.reader.detector.detect(images)
        self.detections = found[0]
        return found

    def read_detections(self, image: np.ndarray, detections: Detections, **kwargs: Any) -> list[PlateRead]:
        self.reads = self.reader.read_detections(image, detections, **kwargs)
        return self.reads


@dataclass(frozen=True)
class ClipRun:
    """What one clip's run observed, in frame numbers of the clip."""

    name: str
    fps: float
    frames: int
    wall_s: float  # the whole loop: decoding, processing, routing
    frame_ms: tuple[float, ...]  # service._process per frame (detector + OCR + passages)
    ocr_reads: int
    ocr_skipped: int
    events: tuple[ObservedEvent, ...]
    tracks: tuple[ObservedTrack, ...]


def _camera_config(config: AppConfig, camera_id: str, path: Path) -> tuple[AppConfig, CameraConfig]:
    camera = CameraConfig.model_validate({"id": camera_id, "source": str(path)})
    return config.model_copy(update={"cameras": [camera]}), camera


def run_clip(
    config: AppConfig,
    reader: PlateReader,
    path: Path,
    *,
    camera_id: str,
    versions: Mapping[str, str] | None = None,
    total: int | None = None,
    progress: bool = True,
) -> ClipRun:
    """Process the clip at ``path`` the way ``run`` processes a camera, and record what happened."""
    config, camera = _camera_config(config, camera_id, path)
    source = open_source(camera)
    versions = versions if versions is not None else model_versions(reader)
    builder = PassageBuilder.from_config(config, camera_id, charset=reader.recognizer.charset, versions=versions,
                                         model_calibration=reader.recognizer.vote_calibration)
    route = EventRouter(config.device_id, None, [lambda payload: json.dumps(payload)])
    stats = RunStats()
    recorder = _RecordingReader(reader)
    frame_of: dict[float, int] = {}  # frame timestamp -> index: event times are frame timestamps
    events: list[ObservedEvent] = []
    boxes: dict[int, dict[int, Box]] = defaultdict(dict)
    reads: dict[int, list[TrackRead]] = defaultdict(list)
    frame_ms: list[float] = []
    frames = 0
    started = time.perf_counter()
    source.open()
    bar = tqdm(total=total, desc=camera_id, unit="frame", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, leave=False)
    try:
        while True:
            frame = source.read()
            if frame is None:
                break
            arrived = time.perf_counter()
            frames += 1
            frame_of[frame.timestamp] = frame.index
            recorder.reset()
            due = _process(frame, cast("PlateReader", recorder), builder, stats)
            frame_ms.append((time.perf_counter() - arrived) * 1000.0)
            for event in due:
                routed = route(event)
                early = event.end_time == frame.timestamp  # its track is seen in this very frame
                latency = (time.perf_counter() - arrived) * 1000.0 if early else None
                events.append(_observe(routed, frame_of, frame.index, early, latency))
            _record_tracks(builder, recorder, frame.index, boxes, reads)
            bar.update()
    finally:
        bar.close()
        source.close()
    for event in builder.flush():  # the end of the file, as run_cameras does
        events.append(_observe(route(event), frame_of, frames, False, None))
    wall = time.perf_counter() - started
    tracks = tuple(ObservedTrack(t, boxes[t], tuple(reads.get(t, ()))) for t in sorted(boxes))
    return ClipRun(camera_id, source.native_fps or 25.0, frames, wall, tuple(frame_ms), stats.ocr_reads,
                   stats.ocr_skipped, tuple(events), tracks)


def _observe(event: PlateEvent, frame_of: Mapping[float, int], emitted: int, early: bool,
             latency_ms: float | None) -> ObservedEvent:
    return ObservedEvent(
        text=event.text, start_frame=frame_of.get(event.start_time, -1), end_frame=frame_of.get(event.end_time, -1),
        box=event.box, emitted_frame=emitted, early=early, latency_ms=latency_ms, confidence=event.confidence,
        score=event.score, reads=event.reads,
    )


def _record_tracks(builder: PassageBuilder, recorder: _RecordingReader, frame: int,
                   boxes: dict[int, dict[int, Box]], reads: dict[int, list[TrackRead]]) -> None:
    """Each live track's box this frame, and the reads of this frame attributed to their tracks."""
    track_of = {t.detection: t.id for t in builder.tracks if t.detection is not None}
    for track in builder.tracks:
        if track.detection is not None:
            boxes[track.id][frame] = track.box
    if not recorder.reads or not len(recorder.detections):
        return
    read_boxes = np.array([r.box for r in recorder.reads], np.float64).reshape(-1, 4)
    overlap = iou_matrix(read_boxes, recorder.detections.xyxy)
    for read, row in zip(recorder.reads, overlap):
        det = int(row.argmax())
        if row[det] >= 0.5 and det in track_of:
            reads[track_of[det]].append(TrackRead(frame, read.text, float(read.confidence)))


# ------------------------------------------------------------------------------------------- reports
@dataclass(frozen=True)
class SpeedSummary:
    frames: int
    wall_s: float
    frame_ms_median: float
    frame_ms_p95: float
    ocr_reads: int
    ocr_skipped: int

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {"frames": self.frames, "wall_s": round(self.wall_s, 2), "fps": round(self.fps, 2),
                "frame_ms_median": round(self.frame_ms_median, 2), "frame_ms_p95": round(self.frame_ms_p95, 2),
                "ocr_reads": self.ocr_reads, "ocr_skipped": self.ocr_skipped}


def speed_summary(runs: Sequence[ClipRun]) -> SpeedSummary:
    ms = [v for r in runs for v in r.frame_ms]
    return SpeedSummary(
        frames=sum(r.frames for r in runs),
        wall_s=sum(r.wall_s for r in runs),
        frame_ms_median=statistics.median(ms) if ms else float("nan"),
        frame_ms_p95=float(np.quantile(ms, 0.95)) if ms else float("nan"),
        ocr_reads=sum(r.ocr_reads for r in runs),
        ocr_skipped=sum(r.ocr_skipped for r in runs),
    )


@dataclass(frozen=True)
class TrafficResult:
    """A real clip without ground truth: how many events, with which texts."""

    name: str
    speed: SpeedSummary
    texts: tuple[str | None, ...]

    def as_dict(self) -> dict[str, object]:
        return {"clip": self.name, **self.speed.as_dict(), "events": len(self.texts), "texts": list(self.texts)}


@dataclass(frozen=True)
class PassageBenchReport:
    clips: int
    seed: int | tuple[int, ...] | None  # the clip set seed; several when their clips are pooled
    rows: tuple[ScoreRow, ...] = ()
    speed: SpeedSummary | None = None
    latency: LatencySummary | None = None
    confidence: ConfidenceSummary | None = None
    scores: tuple[ClipScore, ...] = ()
    traffic: tuple[TrafficResult, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        return {
            "clips": self.clips,
            "seed": list(self.seed) if isinstance(self.seed, tuple) else self.seed,
            "rows": [r.as_dict() for r in self.rows],
            "speed": self.speed.as_dict() if self.speed else None,
            "latency": self.latency.as_dict() if self.latency else None,
            "confidence": self.confidence.as_dict() if self.confidence else None,
            "passages": [o.as_dict() for s in self.scores for o in s.outcomes],
            "false_events": [{"clip": s.clip, **event_dict(e)} for s in self.scores for e in s.false_events],
            "traffic": [t.as_dict() for t in self.traffic],
            "notes": list(self.notes),
        }


def bench_passages(config: AppConfig, reader: PlateReader, clips: Sequence[ClipTruth], *,
                   seed: int | tuple[int, ...] | None = None, progress: bool = True) -> PassageBenchReport:
    """Run every clip through the pipeline and score it. Clips of several seeds are pooled into one report,
    each named ``s<seed>-<clip>`` (passage ids repeat across seeds; the clip name tells them apart)."""
    versions = model_versions(reader)
    pooled = len({clip.seed for clip in clips}) > 1
    runs, scores = [], []
    for clip in clips:
        name = f"s{clip.seed}-{clip.name}" if pooled else clip.name
        run = run_clip(config, reader, clip.path, camera_id=name, versions=versions, total=clip.frames,
                       progress=progress)
        runs.append(run)
        scores.append(score_clip(name, clip.passages, run.events, run.tracks, fps=clip.fps))
    return PassageBenchReport(
        clips=len(clips),
        seed=seed,
        rows=tuple(summarize(scores)),
        speed=speed_summary(runs),
        latency=latency_summary(scores, [e for r in runs for e in r.events]),
        confidence=confidence_summary(scores),
        scores=tuple(scores),
        notes=(describe_clips(clips),) if clips else (),
    )


def describe_clips(clips: Sequence[ClipTruth]) -> str:
    """One line on what the clips are: size, length, codec, plate widths."""
    widths = [b[2] - b[0] for c in clips for p in c.passages for b in p.boxes.values()]
    seconds = sum(c.frames / c.fps for c in clips)
    sizes = sorted({f"{c.width}x{c.height} at {c.fps:g} fps" for c in clips})
    crfs = [c.crf for c in clips if c.codec == "h264"]
    codecs = sorted({"mp4v" for c in clips if c.codec != "h264"} | ({f"H.264 CRF {min(crfs)}-{max(crfs)}"} if crfs else set()))
    line = (f"Clips: {len(clips)} ({sum(c.frames for c in clips)} frames, {seconds:.0f} s), {', '.join(sizes)}, "
            f"{'; '.join(codecs)}; {sum(len(c.passages) for c in clips)} passages")
    if widths:
        p5, median, p95 = np.quantile(widths, [0.05, 0.5, 0.95])
        line += f"; plate width {p5:.0f} / {median:.0f} / {p95:.0f} px (5th percentile / median / 95th)"
    return line + "."


def traffic_clips(root: Path) -> list[Path]:
    return sorted((root / "traffic-videos").glob("*.mp4"))


def smoke_traffic(config: AppConfig, reader: PlateReader, paths: Sequence[Path], *,
                  progress: bool = True) -> list[TrafficResult]:
    versions = model_versions(reader)
    results = []
    for path in paths:
        capture = cv2.VideoCapture(str(path))
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        capture.release()
        camera_id = "".join(c if c.isalnum() or c in "_-" else "_" for c in path.stem)[:64]
        run = run_clip(config, reader, path, camera_id=camera_id, versions=versions, total=total, progress=progress)
        results.append(TrafficResult(path.name, speed_summary([run]), tuple(e.text for e in run.events)))
    return results


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f} ms"


def format_report(report: PassageBenchReport) -> str:
    """Markdown: the passage table, speed and latency, and the traffic smoke clips."""
    parts = []
    if report.rows:
        seeds = ", ".join(map(str, report.seed)) if isinstance(report.seed, tuple) else report.seed
        parts.append(f"Passage benchmark: {report.clips} clips (seed {seeds}). Targets: exactly one event "
                     f">= 98%, correct text >= 95%, no duplicates, voting above single best frame, early events "
                     f"within {LATENCY_TARGET_MS:.0f} ms.\n")
        parts.append(format_rows(report.rows))
    if report.speed is not None and report.latency is not None:
        s, lat = report.speed, report.latency
        attempts = s.ocr_reads + s.ocr_skipped
        skipped = f"{s.ocr_skipped} of {attempts} ({100 * s.ocr_skipped / attempts:.0f}%)" if attempts else "0"
        lines = [
            "| speed and latency | value |", "|---|---:|",
            f"| frames processed | {s.frames} |",
            f"| frames/s (whole loop, decoding included) | {s.fps:.1f} |",
            f"| ms per frame, median / p95 (detector + OCR + passages) | {_ms(s.frame_ms_median)} / {_ms(s.frame_ms_p95)} |",
            f"| OCR reads made | {s.ocr_reads} |",
            f"| OCR reads skipped (vote settled) | {skipped} |",
            f"| early events | {lat.early_events} |",
            f"| early-event latency, median / max | {_ms(lat.median_ms)} / {_ms(lat.max_ms)} "
            f"({lat.within_target}/{lat.early_events} within {LATENCY_TARGET_MS:.0f} ms) |",
            f"| video time from the plate's first full view to its event, median | "
            f"{'n/a' if lat.seconds_to_event_median != lat.seconds_to_event_median else f'{lat.seconds_to_event_median:.2f} s'} |",
            f"| cars that stop: event out while stopped | {lat.answered_while_stopped}/{lat.stopped} |",
        ]
        parts.append("\n".join(lines))
    if report.confidence is not None:
        parts.append(format_confidence(report.confidence))
    if report.traffic:
        lines = ["Real traffic clips (no ground truth):\n", "| clip | frames | frames/s | events | texts |",
                 "|---|---:|---:|---:|---|"]
        for t in report.traffic:
            texts = ", ".join(x if x is not None else "(unread)" for x in t.texts) or "-"
            lines.append(f"| {t.name} | {t.speed.frames} | {t.speed.fps:.1f} | {len(t.texts)} | {texts} |")
        parts.append("\n".join(lines))
    parts += list(report.notes)
    return "\n\n".join(parts)
