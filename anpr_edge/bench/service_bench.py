"""``anpr-edge bench-service``: the daemon's ``Service`` on N cameras played in real time, scored by event.

The issue target: four 720p25 sources played in real time on a 2-core machine with CPU backends give at
least ``TARGET_FPS`` processed frames per second per camera, event recall on the labelled clips at that rate
within ``TARGET_RECALL_POINTS`` points of processing every frame, and under ``TARGET_MB_PER_CAMERA`` of
memory per camera.

How it measures (nothing of the daemon's path is copied; the real ``service.Service`` runs in-process):

- **Clips**: the labelled passage clips of ``passage_clips`` (real plate photos driving towards the camera,
  with ground truth) rendered at ``--width`` x ``--height`` and ``--fps`` and cached. They are rendered (or
  read from the cache) in a child process, so rendering leaves nothing in the measured process's heap.
- **Live run**: an ``AppConfig`` with one FILE camera per clip, ``realtime: true``: each clip is decoded by
  its camera's capture thread at its native rate, and the service's latest-frame hand-off drops the frames
  inference was too slow to take, exactly as with live cameras. Models come from the config (the bundled
  engines by default) through ``PlateReader.from_config``; events go through an ``EventRouter`` to a sink
  that serialises the MQTT payload, as stdout would. The run ends when the clips end.
- **Reference run** ("every frame"): the same clips and code with ``realtime: false`` (the lossless
  hand-off: the capture thread waits for inference, nothing is dropped).
- **Probes**, thin and transparent: each camera's ``PassageBuilder`` is wrapped so every processed frame
  (index, timestamp, age), its tracks and reads are recorded, which maps event times back to clip frames
  for ``passage_score.score_clip``; the detector and OCR calls are timed. They add microseconds per frame.
- **Per camera**: frames in the clip, frames delivered by the source, processed (``RunStats.frames``),
  dropped (stale: ``slot.dropped + source.stats.frames_dropped``), processed fps over the whole clip and
  while all N cameras are playing (clips differ in length; the second figure is the one under full load,
  and the one the verdict uses), events.
- **Memory**: process RSS after the models are loaded and before the cameras start (baseline), and the peak
  during the live run (``/proc/self/status`` VmRSS sampled every 0.2 s, and VmHWM after resetting it through
  ``/proc/self/clear_refs`` where the kernel allows). Per camera: peak / N (the whole process, models
  included: what the verdict uses) and (peak - baseline) / N (what each camera adds).
- **Recall**: per passage, detected (at least one event), read (an event with the correct text) and correct
  (exactly one event, with the correct text), duplicates and false events, live against every frame; the
  verdict wants detected and read recall within ``TARGET_RECALL_POINTS`` points.

``--rounds R`` plays R groups of N clips one after the other (more passages for the recall comparison:
with one round of four clips a passage is 3 to 5 points of recall, so "within 2 points" means no passage
lost). ``register`` adds the command to the main parser (``anpr_edge/cli.py``).

**Threads.** ``--threads`` defaults to the config's ``inference.threads`` (2 unless the config says
otherwise): the benchmark measures the daemon as it is deployed. On 2 cores the work per second at the
target is the capture threads' decoding of every frame (4 x 25 frames of 720p H.264, in FFmpeg with the GIL
released) plus, in the one inference thread, detector, OCR of unsettled tracks, tracking and voting on
4 x 8 = 32 frames (``bench-passages`` measured 24.5 ms per frame median single-threaded at 960x540, the
detector being most of it). With one ONNX Runtime thread the inference loop can never use more than one
core, which caps it near 40 frames/s in all, close to the 32 needed, while the decoders leave part of the
second core idle; two threads let the detector's convolutions use what the decoders leave. The cost of
two threads is ONNX Runtime's worker spinning between parallel sections, which competes with the decoders.
Which wins is a measurement: compare ``--threads 1`` and ``--threads 2`` (``--skip-full`` makes each a
one-minute run) on an idle machine, and set ``inference.threads`` to the winner.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import platform
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from anpr_edge.argtypes import int_at_least, non_negative_int, positive_float, positive_int
from anpr_edge.bench.passage_bench import _observe, _record_tracks
from anpr_edge.bench.passage_score import (
    ClipScore,
    ObservedEvent,
    ObservedTrack,
    TrackRead,
    format_rows,
    score_clip,
    summarize,
)
from anpr_edge.bench.stage_bench import reset_peak_rss
from anpr_edge.config import AppConfig, CameraConfig
from anpr_edge.service import EventRouter, Service, model_versions
from anpr_edge.values import Detections, Frame, PlateEvent, PlateRead

if TYPE_CHECKING:
    import numpy as np

    from anpr_edge.bench.passage_clips import Box, ClipOptions, ClipTruth
    from anpr_edge.passages import PassageBuilder
    from anpr_edge.pipeline import PlateReader

log = logging.getLogger("anpr_edge.bench")

TARGET_FPS = 8.0
TARGET_RECALL_POINTS = 2.0
TARGET_MB_PER_CAMERA = 150.0
SAMPLE_INTERVAL_S = 0.2
STALL_S = 60.0  # no frame processed for this long: the run is stopped and reported as stalled
PROGRESS_EVERY_S = 5.0


# ------------------------------------------------------------------------------------------- memory
def _proc_status_kb(key: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (VmRSS, VmHWM); None where there is no such file."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mb() -> float | None:
    """The process's resident memory now, in MB (MiB), or None where /proc is missing."""
    kb = _proc_status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def _lifetime_peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


# ------------------------------------------------------------------------------------------- probes
@dataclass
class _CameraProbe:
    """What one camera's run observed, filled in by the probes from the inference loop's thread."""

    camera_id: str
    clip: ClipTruth
    live: bool
    processed: list[int] = field(default_factory=list)  # clip frame indices, in processing order
    ages_ms: list[float] = field(default_factory=list)  # live: capture (frame timestamp) to tracking
    frame_of: dict[float, int] = field(default_factory=dict)  # frame timestamp -> clip frame index
    current_index: int = -1  # the frame being processed (events it returns were emitted on it)
    current_timestamp: float | None = None  # None: flushing at the end of the clip
    events: list[ObservedEvent] = field(default_factory=list)
    boxes: dict[int, dict[int, Box]] = field(default_factory=lambda: defaultdict(dict))
    reads: dict[int, list[TrackRead]] = field(default_factory=lambda: defaultdict(list))

    def tracks(self) -> tuple[ObservedTrack, ...]:
        return tuple(ObservedTrack(t, self.boxes[t], tuple(self.reads.get(t, ()))) for t in sorted(self.boxes))


class _BuilderProbe:
    """Stands in for a camera's ``PassageBuilder`` in the service: calls the real one and records each
    processed frame (index, timestamp, age), its tracks' boxes and the reads attributed to them."""

    def __init__(self, builder: PassageBuilder, probe: _CameraProbe) -> None:
        self._builder, self._probe = builder, probe

    def update(self, frame: Frame, detections: Detections, reads: Sequence[PlateRead] = ()) -> list[PlateEvent]:
        probe = self._probe
        if probe.live:
            probe.ages_ms.append(max(0.0, (time.time() - frame.timestamp) * 1000.0))
        probe.current_index, probe.current_timestamp = frame.index, frame.timestamp
        probe.frame_of[frame.timestamp] = frame.index
        probe.processed.append(frame.index)
        due = self._builder.update(frame, detections, reads)
        seen = SimpleNamespace(detections=detections, reads=list(reads))
        _record_tracks(self._builder, cast(Any, seen), frame.index, probe.boxes, probe.reads)
        return due

    def flush(self) -> list[PlateEvent]:
        self._probe.current_index, self._probe.current_timestamp = self._probe.clip.frames, None
        return self._builder.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._builder, name)


class _TimedDetector:
    def __init__(self, detector: Any, timings: _TimedReader) -> None:
        self._detector, self._timings = detector, timings

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        began = time.perf_counter()
        found = self._detector.detect(images)
        self._timings.detect_ms.append((time.perf_counter() - began) * 1000.0)
        self._timings.batch_sizes.append(len(images))
        return found

    def __getattr__(self, name: str) -> Any:
        return getattr(self._detector, name)


class _TimedReader:
    """Stands in for the ``PlateReader`` in the service: times the detector (per batch) and OCR calls."""

    def __init__(self, reader: PlateReader) -> None:
        self._reader = reader
        self.detect_ms: list[float] = []
        self.batch_sizes: list[int] = []
        self.ocr_ms: list[float] = []
        self.detector = _TimedDetector(reader.detector, self)

    @property
    def recognizer(self) -> Any:
        return self._reader.recognizer

    def read_detections(self, image: np.ndarray, detections: Detections, **kwargs: Any) -> list[PlateRead]:
        began = time.perf_counter()
        reads = self._reader.read_detections(image, detections, **kwargs)
        self.ocr_ms.append((time.perf_counter() - began) * 1000.0)
        return reads

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


class _CollectingRouter(EventRouter):
    """The service's ``EventRouter`` (no MQTT) with a sink that serialises each payload as stdout would;
    also keeps each event in clip frame numbers for scoring."""

    def __init__(self, device_id: str, probes: Mapping[str, _CameraProbe]) -> None:
        super().__init__(device_id, None, [self._serialise])
        self.probes = probes
        self.payload_bytes = 0

    def _serialise(self, payload: dict[str, Any]) -> None:
        self.payload_bytes += len(json.dumps(payload, ensure_ascii=False))

    def __call__(self, event: PlateEvent) -> PlateEvent:
        routed = super().__call__(event)
        probe = self.probes.get(routed.camera_id)
        if probe is not None:
            now = probe.current_timestamp
            early = now is not None and routed.end_time == now  # its track is seen in this very frame
            latency = (time.time() - now) * 1000.0 if early and probe.live and now is not None else None
            probe.events.append(_observe(routed, probe.frame_of, probe.current_index, early, latency))
        return routed


class _ProbedService(Service):
    """The daemon's ``Service``, unchanged but for each camera's builder being wrapped by a probe."""

    def __init__(self, config: AppConfig, reader: PlateReader, route: EventRouter,
                 probes: Mapping[str, _CameraProbe]) -> None:
        super().__init__(config, reader, route)
        self.probes = probes

    def start_camera(self, camera: CameraConfig) -> None:
        super().start_camera(camera)
        # The builder is only used by the inference loop, which is this thread: wrapping it now is safe.
        builder = self.builders.get(camera.id)
        if builder is not None and camera.id in self.probes:
            self.builders[camera.id] = cast("PassageBuilder", _BuilderProbe(builder, self.probes[camera.id]))


class _Monitor:
    """A thread sampling RSS every ``SAMPLE_INTERVAL_S``, logging progress and stopping a stalled run."""

    def __init__(self, probes: Mapping[str, _CameraProbe], stop: threading.Event, *, label: str, live: bool,
                 progress: bool, stall_s: float, deadline_s: float | None) -> None:
        self.probes, self.stop, self.label, self.live = probes, stop, label, live
        self.progress, self.stall_s, self.deadline_s = progress, stall_s, deadline_s
        self.duration_s = max(p.clip.frames / p.clip.fps for p in probes.values())
        self.total_frames = sum(p.clip.frames for p in probes.values())
        self.peak_reset = reset_peak_rss()
        self.peak_mb = rss_mb() or 0.0
        self.samples = 0
        self.stalled = False
        self.timed_out = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self._started = time.monotonic()

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def finish(self) -> float:
        """Stop sampling; the peak RSS in MB over the run."""
        self._done.set()
        self._thread.join()
        now = rss_mb()
        if now is None:  # no /proc: the lifetime peak is all there is
            return max(self.peak_mb, _lifetime_peak_mb())
        self.peak_mb = max(self.peak_mb, now)
        if self.peak_reset:
            hwm = _proc_status_kb("VmHWM")
            if hwm is not None:
                self.peak_mb = max(self.peak_mb, hwm / 1024.0)
        return self.peak_mb

    def _run(self) -> None:
        last_count, last_change, last_log = 0, self._started, self._started
        while not self._done.wait(SAMPLE_INTERVAL_S):
            now = time.monotonic()
            rss = rss_mb()
            if rss is not None:
                self.peak_mb = max(self.peak_mb, rss)
                self.samples += 1
            count = sum(len(p.processed) for p in self.probes.values())
            if count != last_count:
                last_count, last_change = count, now
            elif now - last_change > self.stall_s and not self.stop.is_set():
                log.error("%s: no frame processed for %.0f s; stopping the run", self.label, self.stall_s)
                self.stalled = True
                self.stop.set()
            if self.deadline_s is not None and now - self._started > self.deadline_s and not self.stop.is_set():
                log.error("%s: still running after %.0f s; stopping it", self.label, self.deadline_s)
                self.timed_out = True
                self.stop.set()
            if self.progress and now - last_log >= PROGRESS_EVERY_S:
                last_log = now
                elapsed = now - self._started
                if self.live:
                    rates = ", ".join(f"{c} {len(p.processed) / elapsed:.1f}" for c, p in self.probes.items())
                    log.info("%s: %.0f of %.0f s, processed frames/s: %s", self.label, elapsed, self.duration_s, rates)
                else:
                    log.info("%s: %d of %d frames (%.1f frames/s)", self.label, count, self.total_frames,
                             count / elapsed)


# ------------------------------------------------------------------------------------------- results
def _quantile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q * len(ordered)) - 1)])  # nearest rank


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def _r(value: float, digits: int = 2) -> float | None:
    return None if value != value else round(value, digits)


@dataclass(frozen=True)
class CameraResult:
    """One camera of one run."""

    camera: str
    clip: str
    fps: float  # the clip's native rate
    frames: int  # in the clip
    delivered: int  # by the source (after the fps limit)
    skipped: int  # by the fps limit
    processed: int  # RunStats.frames
    dropped: int  # stale: superseded before inference took them
    window_frames: int  # clip frames played while every camera of the run was playing
    processed_in_window: int
    events: int
    frame_age_ms: tuple[float, ...] = ()

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    @property
    def processed_fps(self) -> float:
        """Processed frames per second of clip, over the whole clip."""
        return self.processed / self.duration_s if self.duration_s > 0 else float("nan")

    @property
    def concurrent_fps(self) -> float:
        """Processed frames per second while all the run's cameras were playing (the full load)."""
        seconds = self.window_frames / self.fps
        return self.processed_in_window / seconds if seconds > 0 else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {
            "camera": self.camera, "clip": self.clip, "clip_fps": self.fps, "frames": self.frames,
            "seconds": round(self.duration_s, 2), "delivered": self.delivered, "skipped_fps_limit": self.skipped,
            "processed": self.processed, "dropped_stale": self.dropped, "processed_fps": _r(self.processed_fps),
            "processed_fps_all_playing": _r(self.concurrent_fps), "all_playing_frames": self.window_frames,
            "events": self.events,
            "frame_age_ms_median": _r(_median(self.frame_age_ms), 1),
            "frame_age_ms_p95": _r(_quantile(self.frame_age_ms, 0.95), 1),
        }


@dataclass(frozen=True)
class RunResult:
    """One run of the service over a group of clips (one clip per camera)."""

    live: bool
    round: int
    wall_s: float
    cameras: tuple[CameraResult, ...]
    scores: tuple[ClipScore, ...]
    events: tuple[ObservedEvent, ...]
    baseline_mb: float
    peak_mb: float
    rss_samples: int
    peak_exact: bool  # VmHWM was reset before the run (else: the sampled maximum)
    detect_ms: tuple[float, ...]
    batch_sizes: tuple[int, ...]
    ocr_ms: tuple[float, ...]
    ocr_reads: int
    ocr_skipped: int
    stalled: bool = False

    @property
    def frames_processed(self) -> int:
        return sum(c.processed for c in self.cameras)

    def as_dict(self) -> dict[str, object]:
        n = len(self.cameras)
        return {
            "mode": "live" if self.live else "every_frame", "round": self.round, "wall_s": round(self.wall_s, 2),
            "stalled": self.stalled, "cameras": [c.as_dict() for c in self.cameras],
            "memory": {"baseline_mb": round(self.baseline_mb, 1), "peak_mb": round(self.peak_mb, 1),
                       "peak_per_camera_mb": round(self.peak_mb / n, 1),
                       "added_per_camera_mb": round((self.peak_mb - self.baseline_mb) / n, 1),
                       "samples": self.rss_samples, "peak_from_vmhwm": self.peak_exact},
            "stages": stage_summary([self]),
            "ocr_reads": self.ocr_reads, "ocr_skipped": self.ocr_skipped,
            "frames_per_s_total": _r(self.frames_processed / self.wall_s if self.wall_s > 0 else float("nan")),
        }


def stage_summary(runs: Sequence[RunResult]) -> dict[str, object]:
    detect = [v for r in runs for v in r.detect_ms]
    batches = [v for r in runs for v in r.batch_sizes]
    ocr = [v for r in runs for v in r.ocr_ms]
    per_image = [ms / b for r in runs for ms, b in zip(r.detect_ms, r.batch_sizes) if b]
    return {
        "detector_calls": len(detect),
        "detector_batch_mean": _r(statistics.fmean(batches) if batches else float("nan")),
        "detector_ms_per_batch_median": _r(_median(detect)), "detector_ms_per_batch_p95": _r(_quantile(detect, 0.95)),
        "detector_ms_per_image_median": _r(_median(per_image)),
        "ocr_calls": len(ocr), "ocr_ms_median": _r(_median(ocr)), "ocr_ms_p95": _r(_quantile(ocr, 0.95)),
    }


def run_service(
    config: AppConfig,
    reader: PlateReader,
    clips: Sequence[ClipTruth],
    *,
    live: bool,
    fps_limit: float | None = None,
    round_index: int = 0,
    progress: bool = True,
    stall_s: float = STALL_S,
) -> RunResult:
    """Run the daemon's ``Service`` with one FILE camera per clip: played in real time (``live``: the
    latest-frame hand-off drops what inference cannot take) or every frame (the lossless hand-off)."""
    ids = [f"cam{k + 1}" for k in range(len(clips))]
    cameras = [
        CameraConfig.model_validate({"id": cid, "source": str(clip.path), "realtime": live,
                                     "fps_limit": fps_limit if live else None})
        for cid, clip in zip(ids, clips)
    ]
    run_config = config.model_copy(update={"cameras": cameras})
    probes = {cid: _CameraProbe(cid, clip, live) for cid, clip in zip(ids, clips)}
    timed = _TimedReader(reader)
    router = _CollectingRouter(run_config.device_id, probes)
    service = _ProbedService(run_config, cast("PlateReader", timed), router, probes)
    stop = threading.Event()
    label = f"{'live' if live else 'every frame'}, round {round_index + 1}"
    longest = max(c.frames / c.fps for c in clips)
    gc.collect()
    baseline = rss_mb()
    monitor = _Monitor(probes, stop, label=label, live=live, progress=progress, stall_s=stall_s,
                       deadline_s=longest + 120.0 if live else None)
    log.info("%s: %d cameras (%s)", label, len(clips), ", ".join(f"{i}: {c.name}" for i, c in zip(ids, clips)))
    monitor.start()
    began = time.perf_counter()
    try:
        stats = service.run(stop)
    finally:
        peak = monitor.finish()
    wall = time.perf_counter() - began
    if baseline is None:
        baseline = float("nan")
    window = min(c.frames for c in clips)
    results = []
    for cid, clip in zip(ids, clips):
        worker, probe = service.workers[cid], probes[cid]
        source = worker.source.stats
        results.append(CameraResult(
            camera=cid, clip=clip.name, fps=clip.fps, frames=clip.frames, delivered=source.frames_read,
            skipped=source.frames_skipped, processed=stats.frames.get(cid, 0),
            dropped=worker.slot.dropped + source.frames_dropped, window_frames=window,
            processed_in_window=sum(1 for i in probe.processed if i < window), events=stats.events.get(cid, 0),
            frame_age_ms=tuple(probe.ages_ms),
        ))
    scores = tuple(score_clip(clip.name, clip.passages, probes[cid].events, probes[cid].tracks(), fps=clip.fps)
                   for cid, clip in zip(ids, clips))
    return RunResult(
        live=live, round=round_index, wall_s=wall, cameras=tuple(results), scores=scores,
        events=tuple(e for p in probes.values() for e in p.events), baseline_mb=baseline, peak_mb=peak,
        rss_samples=monitor.samples, peak_exact=monitor.peak_reset, detect_ms=tuple(timed.detect_ms),
        batch_sizes=tuple(timed.batch_sizes), ocr_ms=tuple(timed.ocr_ms), ocr_reads=stats.ocr_reads,
        ocr_skipped=stats.ocr_skipped, stalled=monitor.stalled or monitor.timed_out,
    )


# ------------------------------------------------------------------------------------------- recall
@dataclass(frozen=True)
class Recall:
    """Passages found by a run: detected (>= 1 event), read (an event with the correct text), correct
    (exactly one event, with the correct text: the passage benchmark's main figure)."""

    passages: int
    detected: int
    read: int
    correct: int
    duplicates: int
    false_events: int

    def rate(self, count: int) -> float:
        return count / self.passages if self.passages else float("nan")

    def as_dict(self) -> dict[str, object]:
        return {"passages": self.passages, "detected": self.detected, "read": self.read, "correct": self.correct,
                "duplicates": self.duplicates, "false_events": self.false_events,
                "detected_rate": _r(self.rate(self.detected), 4), "read_rate": _r(self.rate(self.read), 4),
                "correct_rate": _r(self.rate(self.correct), 4)}


def recall_of(scores: Sequence[ClipScore]) -> Recall:
    outcomes = [o for s in scores for o in s.outcomes]
    return Recall(
        passages=len(outcomes),
        detected=sum(o.detected for o in outcomes),
        read=sum(any(e.text == o.text for e in o.events) for o in outcomes),
        correct=sum(o.correct for o in outcomes),
        duplicates=sum(o.duplicates for o in outcomes),
        false_events=sum(len(s.false_events) for s in scores),
    )


def recall_drop_points(live: Recall, reference: Recall, which: str) -> float:
    """How many points of recall the live run lost against every frame (negative: it found more)."""
    return 100.0 * (reference.rate(getattr(reference, which)) - live.rate(getattr(live, which)))


# ------------------------------------------------------------------------------------------- verdict
@dataclass(frozen=True)
class Verdict:
    min_fps: float  # lowest processed fps of any camera while all cameras played
    mb_per_camera: float  # peak RSS / cameras
    detected_drop: float | None  # points; None: no reference run
    read_drop: float | None
    complete: bool = True  # no run stalled

    @property
    def fps_ok(self) -> bool:
        return self.min_fps >= TARGET_FPS

    @property
    def memory_ok(self) -> bool:
        return self.mb_per_camera < TARGET_MB_PER_CAMERA

    @property
    def recall_ok(self) -> bool | None:
        if self.detected_drop is None or self.read_drop is None:
            return None
        limit = TARGET_RECALL_POINTS + 1e-9
        return self.detected_drop <= limit and self.read_drop <= limit

    @property
    def passed(self) -> bool | None:
        """True: every target met; False: one missed or a run stalled; None: all measured met, recall not run."""
        if not (self.complete and self.fps_ok and self.memory_ok) or self.recall_ok is False:
            return False
        return None if self.recall_ok is None else True

    def line(self) -> str:
        def mark(ok: bool | None) -> str:
            return "not measured" if ok is None else ("met" if ok else "MISSED")

        word = {True: "PASS", False: "FAIL", None: "INCOMPLETE"}[self.passed]
        if self.recall_ok is None:
            recall = "recall: not measured (--skip-full)"
        else:
            recall = (f"recall lost vs every frame {self.detected_drop:+.1f} points detected, {self.read_drop:+.1f} "
                      f"points correct text (target <= {TARGET_RECALL_POINTS:g}): {mark(self.recall_ok)}")
        parts = [
            f"processed fps per camera, lowest {self.min_fps:.1f} (target >= {TARGET_FPS:g}): {mark(self.fps_ok)}",
            recall,
            f"memory per camera {self.mb_per_camera:.0f} MB (peak RSS / cameras; target < "
            f"{TARGET_MB_PER_CAMERA:g} MB): {mark(self.memory_ok)}",
        ]
        if not self.complete:
            parts.append("a run stalled or ran over time (see the log)")
        return f"Verdict: {word}. " + "; ".join(parts) + "."

    def as_dict(self) -> dict[str, object]:
        return {"passed": self.passed, "min_fps": _r(self.min_fps), "fps_ok": self.fps_ok,
                "mb_per_camera": _r(self.mb_per_camera, 1), "memory_ok": self.memory_ok,
                "detected_drop_points": None if self.detected_drop is None else _r(self.detected_drop),
                "read_drop_points": None if self.read_drop is None else _r(self.read_drop),
                "recall_ok": self.recall_ok, "complete": self.complete,
                "targets": {"fps_per_camera": TARGET_FPS, "recall_points": TARGET_RECALL_POINTS,
                            "mb_per_camera": TARGET_MB_PER_CAMERA}}


# ------------------------------------------------------------------------------------------- report
@dataclass(frozen=True)
class ServiceBenchReport:
    date: str
    machine: Mapping[str, object]
    settings: Mapping[str, object]
    live: tuple[RunResult, ...]
    reference: tuple[RunResult, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def live_recall(self) -> Recall:
        return recall_of([s for r in self.live for s in r.scores])

    @property
    def reference_recall(self) -> Recall | None:
        return recall_of([s for r in self.reference for s in r.scores]) if self.reference else None

    @property
    def memory_run(self) -> RunResult:
        """The live run with the highest peak RSS per camera."""
        return max(self.live, key=lambda r: r.peak_mb / len(r.cameras))

    @property
    def verdict(self) -> Verdict:
        reference = self.reference_recall
        live = self.live_recall
        run = self.memory_run
        return Verdict(
            min_fps=min(c.concurrent_fps for r in self.live for c in r.cameras),
            mb_per_camera=run.peak_mb / len(run.cameras),
            detected_drop=None if reference is None else recall_drop_points(live, reference, "detected"),
            read_drop=None if reference is None else recall_drop_points(live, reference, "read"),
            complete=not any(r.stalled for r in (*self.live, *self.reference)),
        )

    def as_dict(self) -> dict[str, object]:
        reference = self.reference_recall
        live_events = [e for r in self.live for e in r.events]
        latencies = [e.latency_ms for e in live_events if e.early and e.latency_ms is not None]
        ages = [v for r in self.live for c in r.cameras for v in c.frame_age_ms]
        return {
            "date": self.date, "machine": dict(self.machine), "settings": dict(self.settings),
            "live": [r.as_dict() for r in self.live],
            "every_frame": [r.as_dict() for r in self.reference],
            "recall": {"live": self.live_recall.as_dict(),
                       "every_frame": reference.as_dict() if reference is not None else None},
            "live_rows": [row.as_dict() for row in summarize([s for r in self.live for s in r.scores])],
            "every_frame_rows": [row.as_dict() for row in summarize([s for r in self.reference for s in r.scores])]
            if self.reference else [],
            "live_latency": {"frame_age_ms_median": _r(_median(ages), 1),
                             "frame_age_ms_p95": _r(_quantile(ages, 0.95), 1),
                             "early_events": len(latencies), "event_latency_ms_median": _r(_median(latencies), 1),
                             "event_latency_ms_max": _r(max(latencies) if latencies else float("nan"), 1)},
            "verdict": self.verdict.as_dict(),
            "notes": list(self.notes),
        }


def _pct(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}% ({count}/{total})" if total else "-"


def _num(value: object, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{value}{unit}"


def format_report(report: ServiceBenchReport) -> str:
    """Markdown: settings, per-camera rows, stages, recall live vs every frame, memory, the verdict."""
    s, m = report.settings, report.machine
    lines = [
        f"Service benchmark ({report.date}): {s['cameras']} cameras, clips {s['width']}x{s['height']} at "
        f"{s['fps']:g} fps played in real time (FILE sources, realtime: true) through the daemon's Service "
        f"(a capture thread per camera, shared batched inference); {s['rounds']} round(s), clip seed {s['seed']}; "
        f"ONNX Runtime {m.get('onnxruntime')} on CPU, {s['threads']} thread(s) per model, detector "
        f"{s['input_size']} px, fps limit {s['fps_limit'] or 'none'}.",
        f"Machine: {m.get('cpu')}, {m.get('usable_cores')} usable cores, {m.get('os')}, Python {m.get('python')}, "
        f"OpenCV {m.get('opencv')}; load average before the run {m.get('load_average_start')}.",
        "",
        "| round | camera | clip | s | frames | processed | dropped (stale) | fps processed | fps while all play "
        "| events | frame age median / p95 | every frame: processed | every frame: events |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    reference = {(r.round, c.camera): c for r in report.reference for c in r.cameras}
    for run in report.live:
        for c in run.cameras:
            ref = reference.get((run.round, c.camera))
            lines.append(
                f"| {run.round + 1} | {c.camera} | {c.clip} | {c.duration_s:.1f} | {c.frames} | {c.processed} | "
                f"{c.dropped} | {c.processed_fps:.1f} | {c.concurrent_fps:.1f} (first {c.window_frames} frames) | "
                f"{c.events} | {_median(c.frame_age_ms):.0f} / {_quantile(c.frame_age_ms, 0.95):.0f} ms | "
                f"{ref.processed if ref else '-'} | {ref.events if ref else '-'} |")
    stages = stage_summary(report.live)
    ref_stages = stage_summary(report.reference) if report.reference else None
    live_events = [e for r in report.live for e in r.events]
    latencies = [e.latency_ms for e in live_events if e.early and e.latency_ms is not None]
    lines += [
        "",
        "| stage | live | every frame |", "|---|---:|---:|",
    ]
    for key, name in (("detector_batch_mean", "detector batch (frames per call), mean"),
                      ("detector_ms_per_batch_median", "detector ms per batch, median"),
                      ("detector_ms_per_batch_p95", "detector ms per batch, p95"),
                      ("detector_ms_per_image_median", "detector ms per frame, median"),
                      ("ocr_ms_median", "OCR ms per call (crops of one frame), median"),
                      ("ocr_ms_p95", "OCR ms per call, p95")):
        lines.append(f"| {name} | {_num(stages[key])} | {_num(ref_stages[key]) if ref_stages else '-'} |")
    ref_fps = (sum(r.frames_processed for r in report.reference) / sum(r.wall_s for r in report.reference)
               if report.reference else None)
    lines += [
        f"| frames processed per second, all cameras | "
        f"{sum(r.frames_processed for r in report.live) / sum(r.wall_s for r in report.live):.1f} | "
        f"{'-' if ref_fps is None else f'{ref_fps:.1f}'} |",
        "| early-event latency, capture to event, median / max | "
        + (f"{_median(latencies):.0f} / {max(latencies):.0f} ms ({len(latencies)} events)" if latencies else "n/a")
        + " | - |",
    ]
    live_recall, ref_recall = report.live_recall, report.reference_recall
    lines += ["", f"| recall ({live_recall.passages} passages) | every frame | live | lost (points) |",
              "|---|---:|---:|---:|"]
    for which, name in (("detected", "detected (>= 1 event)"), ("read", "an event with the correct text"),
                        ("correct", "exactly one event, correct text")):
        live_cell = _pct(getattr(live_recall, which), live_recall.passages)
        if ref_recall is None:
            lines.append(f"| {name} | - | {live_cell} | - |")
        else:
            drop = recall_drop_points(live_recall, ref_recall, which)
            ref_cell = _pct(getattr(ref_recall, which), ref_recall.passages)
            lines.append(f"| {name} | {ref_cell} | {live_cell} | {drop:+.1f} |")
    for which, name in (("duplicates", "duplicate events"), ("false_events", "false events")):
        ref_cell = str(getattr(ref_recall, which)) if ref_recall else "-"
        lines.append(f"| {name} | {ref_cell} | {getattr(live_recall, which)} | - |")
    run = report.memory_run
    n = len(run.cameras)
    how = "VmHWM, reset before the run" if run.peak_exact else f"VmRSS sampled every {SAMPLE_INTERVAL_S:g} s"
    lines += [
        "", "| memory (live run) | MB |", "|---|---:|",
        f"| RSS with the models loaded, before the cameras start | {run.baseline_mb:.0f} |",
        f"| peak RSS while {n} cameras play ({how}) | {run.peak_mb:.0f} |",
        f"| per camera: peak / {n} (the whole process, models included) | {run.peak_mb / n:.0f} |",
        f"| per camera: (peak - baseline) / {n} (what each camera adds) | {(run.peak_mb - run.baseline_mb) / n:.0f} |",
    ]
    lines += ["", "Passages, live:", "", format_rows(summarize([s for r in report.live for s in r.scores]))]
    if report.reference:
        reference_rows = summarize([s for r in report.reference for s in r.scores])
        lines += ["", "Passages, every frame:", "", format_rows(reference_rows)]
    lines += ["", *report.notes, "", report.verdict.line()]
    return "\n".join(line for line in lines)


# ------------------------------------------------------------------------------------------- the bench
def machine_info(load_at_start: Sequence[float] | None = None) -> dict[str, object]:
    import cv2
    import onnxruntime

    from anpr_edge.bench.mqtt_bench import _cpu_model

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
        "load_average_start": [round(v, 2) for v in load_at_start] if load_at_start else None,
        "load_average_end": [round(v, 2) for v in load] if load else None,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(), "onnxruntime": onnxruntime.__version__, "opencv": cv2.__version__,
    }


def bench_service(
    config: AppConfig,
    reader: PlateReader,
    clips: Sequence[ClipTruth],
    *,
    cameras: int,
    fps_limit: float | None = None,
    skip_full: bool = False,
    progress: bool = True,
    settings: Mapping[str, object] | None = None,
) -> ServiceBenchReport:
    """Play ``clips`` in rounds of ``cameras`` at once through the service, live then every frame."""
    if not clips or cameras < 1:
        raise ValueError("bench_service: need at least one clip and one camera")
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    notes = []
    if load is not None and load[0] > 0.5:
        note = (f"The machine was not idle: load average {load[0]:.2f} on {usable} cores before the run, so other "
                f"processes took CPU time and the frame rates are lower than on an idle machine.")
        log.warning("%s", note)
        notes.append(note)
    groups = [list(clips[i : i + cameras]) for i in range(0, len(clips), cameras)]
    if len(groups) > 1 and len(groups[-1]) < cameras:
        groups.pop()  # a short last round would be a lighter load
    live = tuple(run_service(config, reader, g, live=True, fps_limit=fps_limit, round_index=k, progress=progress)
                 for k, g in enumerate(groups))
    reference = () if skip_full else tuple(
        run_service(config, reader, g, live=False, round_index=k, progress=progress) for k, g in enumerate(groups))
    passages = sum(len(s.outcomes) for r in live for s in r.scores)
    if passages:
        notes.append(f"{passages} scored passages: one passage is {100 / passages:.1f} points of recall.")
    if len({c.frames for g in groups for c in g}) > 1:
        notes.append("Clips differ in length: 'fps while all play' counts the frames played while every camera of "
                     "the round was still playing (the full load); the verdict uses it.")
    info = dict(settings or {})
    info.setdefault("cameras", cameras)
    info.setdefault("rounds", len(groups))
    first = groups[0][0]
    info.setdefault("width", first.width)
    info.setdefault("height", first.height)
    info.setdefault("fps", first.fps)
    info.setdefault("seed", first.seed)
    info.setdefault("codec", first.codec)
    info.setdefault("threads", config.inference.threads)
    info.setdefault("input_size", reader.detector.input_size)
    info.setdefault("fps_limit", fps_limit)
    info.setdefault("skip_full", skip_full)
    info.setdefault("models", model_versions(reader))
    return ServiceBenchReport(
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        machine=machine_info(load),
        settings=info,
        live=live,
        reference=reference,
        notes=tuple(notes),
    )


def prepare_clips(count: int, *, seed: int = 1, options: ClipOptions | None = None, cache: Path | None = None,
                  root: Path | None = None, progress: bool = True) -> list[ClipTruth]:
    """Clips 0..count-1 of the labelled passage set at ``options``, rendered into (or read from) the cache
    by ``passage_clip_set`` in a child process: rendering decodes thousands of photos, whose freed memory
    would otherwise stay in this process's heap and blur the memory measured here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from anpr_edge.bench.passage_clips import ClipOptions, passage_clip_set

    options = options or ClipOptions(width=1280, height=720)
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        future = pool.submit(passage_clip_set, count, seed=seed, options=options, cache=cache, root=root,
                             progress=progress)
        return list(future.result())


def with_input_size(config: AppConfig, size: int | None) -> AppConfig:
    if size is None:
        return config
    detector = config.models.detector.model_copy(update={"input_size": size})
    return config.model_copy(update={"models": config.models.model_copy(update={"detector": detector})})


# ------------------------------------------------------------------------------------------- command
def _input_size(text: str) -> int:
    value = int_at_least(160)(text)
    if value > 1920 or value % 32:
        raise argparse.ArgumentTypeError(f"must be a multiple of 32 from 160 to 1920: {value}")
    return value


def cmd_bench_service(args: argparse.Namespace) -> int:
    from anpr_edge.bench.cli import bench_config
    from anpr_edge.bench.passage_clips import ClipOptions
    from anpr_edge.config import default_config, load_config
    from anpr_edge.pipeline import PlateReader

    base = load_config(args.config) if args.config else default_config()
    threads = args.threads if args.threads is not None else base.inference.threads
    config = with_input_size(bench_config(args.config, threads), args.input_size)
    reader = PlateReader.from_config(config, photos=False)  # a missing model is a clear error before any clip is made
    options = ClipOptions(width=args.width, height=args.height, fps=args.fps)
    clips = prepare_clips(args.cameras * args.rounds, seed=args.seed, options=options)
    settings = {"cameras": args.cameras, "rounds": args.rounds, "seed": args.seed, "width": args.width,
                "height": args.height, "fps": args.fps, "config": args.config}
    report = bench_service(config, reader, clips, cameras=args.cameras, fps_limit=args.fps_limit,
                           skip_full=args.skip_full, settings=settings)
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict(), ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    sys.stdout.flush()
    return 1 if not report.verdict.complete else 0


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``bench-service`` to the main CLI's subparsers object."""
    bench = commands.add_parser(
        "bench-service",
        help="the daemon on N cameras played in real time: processed fps per camera, recall against every "
        "frame, memory per camera",
        description="Play N labelled passage clips (rendered at --width x --height, cached) as N FILE cameras in "
        "real time through the daemon's Service (a capture thread per camera, the latest-frame hand-off that "
        "drops stale frames, shared batched inference), then again processing every frame; report processed "
        "frames/s per camera, dropped frames, event recall live vs every frame, RSS per camera and a verdict "
        f"against the targets (>= {TARGET_FPS:g} fps per camera, recall within {TARGET_RECALL_POINTS:g} points, "
        f"< {TARGET_MB_PER_CAMERA:g} MB per camera). Run it on an otherwise idle machine.",
    )
    bench.add_argument("--cameras", type=positive_int, default=4, metavar="N",
                       help="cameras played at once (default 4)")
    bench.add_argument("--rounds", type=positive_int, default=1, metavar="R",
                       help="groups of N clips played one after the other, for more passages (default 1)")
    bench.add_argument("--seed", type=int, default=1, metavar="S", help="clip set seed (default 1)")
    bench.add_argument("--width", type=int_at_least(64), default=1280, metavar="PX", help="clip width (default 1280)")
    bench.add_argument("--height", type=int_at_least(64), default=720, metavar="PX", help="clip height (default 720)")
    bench.add_argument("--fps", type=positive_float, default=25.0, metavar="F", help="clip frame rate (default 25)")
    bench.add_argument("--threads", type=non_negative_int, default=None, metavar="T",
                       help="ONNX Runtime threads per model (default: the config's inference.threads, 2; 0: ONNX "
                       "Runtime decides)")
    bench.add_argument("--input-size", type=_input_size, default=None, metavar="PX",
                       help="detector input size, a multiple of 32 (default: the config's, else the model's own)")
    bench.add_argument("--fps-limit", type=positive_float, default=None, metavar="F",
                       help="process at most F frames per second per camera in the live run (default: no limit)")
    bench.add_argument("--config", metavar="FILE", help="YAML config (models, tracking, voting, events, formats)")
    bench.add_argument("--skip-full", action="store_true",
                       help="skip the every-frame reference run (no recall comparison)")
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout instead of Markdown")
    bench.set_defaults(handler=cmd_bench_service)
