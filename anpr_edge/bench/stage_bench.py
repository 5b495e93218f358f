"""``anpr-edge bench``: per-stage latency, end-to-end frames/s, CPU and memory of the daemon's frame path on
one video, with the decode-only ceiling of the same frames measured in the same run.

What is timed (``time.perf_counter`` around the functions the daemon calls, in the order
``service._process`` calls them; nothing is re-implemented):

- **decode**: ``FileSource.read`` (OpenCV/FFmpeg decoding the next frame);
- **detect**: ``PlateDetector.detect`` on the frame (letterbox, model, NMS);
- **crop**: ``PlateReader.cuts`` for each detection that still needs reading: the box cut and the configured
  ``crop.extra_cuts`` (frames with such crops);
- **ocr**: ``PlateReader.read_cut_sets`` on those cuts, one batch per frame, each plate's cuts voted into one
  read (frames with crops);
- **track_vote**: ``PassageBuilder.reads_needed`` + ``PassageBuilder.update`` (tracking, voting, formats,
  and building the events due, crops JPEG-encoded included);
- **publish**: the daemon's ``EventRouter`` per event, with an ``MqttPublisher`` whose store-and-forward
  outbox is a throw-away SQLite file: the event is serialised and stored durably (fsync), as ``run`` does
  before anything is sent. Without ``--mqtt-url`` no broker is involved (the publisher is not started:
  what is timed is exactly the call ``run`` makes per event); with it the publisher runs and sends to
  that broker, whose round trip is not in this stage (``bench-mqtt`` measures delivery).

Per stage: calls, median and p95 ms per call, and mean ms per frame (total / frames: the stages' shares
add up to the frame time). End to end: frames / wall time of the loop (decoding included). CPU%: the
process's user + system time over the loop's wall time (``os.times``; 100% = one core busy). Peak RSS:
``VmHWM`` of ``/proc/self/status``, reset just before the loop where the kernel allows (then: the peak
during the run, models loaded), else the process's lifetime peak. Ceiling: the same number of frames of
the same source decoded and nothing else, right after the run.

One warm-up frame (the first) is detected and one crop read before the clock starts, so one-off
initialisation (ONNX Runtime's first run, TensorRT context) is not in the figures. The source is the
built-in demo clip unless ``--source`` names a file; with ``--seconds`` it is replayed until the time is up
(else it is played once). One camera, every frame processed, as fast as it goes: the throughput ceiling of
one camera's path on this machine; ``bench-service`` measures cameras played in real time.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anpr_edge.argtypes import int_at_least, non_negative_int, positive_float

if TYPE_CHECKING:
    from anpr_edge.config import AppConfig
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.service import EventRouter

log = logging.getLogger("anpr_edge.bench")

STAGES = ("decode", "detect", "crop", "ocr", "track_vote", "publish")
STAGE_NAMES = {
    "decode": "decode (FileSource.read)",
    "detect": "detect (PlateDetector.detect)",
    "crop": "crop (the cuts of each plate, per frame with crops)",
    "ocr": "OCR (all cuts in one batch per frame with crops)",
    "track_vote": "track/vote (PassageBuilder)",
    "publish": "publish (EventRouter + outbox, per event)",
}
CAMERA_ID = "bench"


# ------------------------------------------------------------------------------------------- helpers
def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q * len(ordered)) - 1)])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or value != value else round(float(value), digits)


def proc_status_mb(key: str) -> float | None:
    """A kB field of ``/proc/self/status`` (VmRSS, VmHWM) in MiB; None where there is no such file."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    peak = proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux
    except (ImportError, OSError):
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """CPU model, cores, usable cores, load, OS and the versions that decide the figures."""
    import cv2
    import numpy

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    info: dict[str, Any] = {
        "cpu": cpu_model(), "cores": os.cpu_count(), "usable_cores": usable,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(), "numpy": numpy.__version__, "opencv": cv2.__version__,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def backend_name(backend: object) -> str:
    name = type(backend).__name__
    return {"OnnxRuntimeBackend": "onnxruntime", "TensorRTBackend": "tensorrt"}.get(name, name)


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------- results
@dataclass
class StageBenchReport:
    """One run of ``bench``: per-stage times (ms per call) and the run's totals."""

    date: str
    machine: dict[str, Any]
    settings: dict[str, Any]
    frames: int = 0
    loop_s: float = 0.0
    stages: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    decode_only_frames: int = 0
    decode_only_s: float = 0.0
    cpu_s: float = 0.0
    rss_start_mb: float | None = None
    peak_rss_mb: float | None = None
    peak_rss_scope: str = "process lifetime"
    detections: int = 0
    crops_read: int = 0
    cuts_read: int = 0
    crops_skipped: int = 0
    events: int = 0
    native_fps: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.loop_s if self.loop_s > 0 else float("nan")

    @property
    def decode_only_fps(self) -> float:
        return self.decode_only_frames / self.decode_only_s if self.decode_only_s > 0 else float("nan")

    @property
    def cpu_percent(self) -> float:
        return 100.0 * self.cpu_s / self.loop_s if self.loop_s > 0 else float("nan")

    def stage_summary(self, stage: str) -> dict[str, Any]:
        times = self.stages.get(stage, [])
        total = sum(times)
        return {
            "calls": len(times),
            "median_ms": rounded(median(times), 3),
            "p95_ms": rounded(quantile(times, 0.95), 3),
            "max_ms": rounded(max(times), 3) if times else None,
            "total_ms": rounded(total, 1),
            "ms_per_frame": rounded(total / self.frames, 3) if self.frames else None,
        }

    def as_dict(self) -> dict[str, Any]:
        per_frame = [1000.0 * self.loop_s / self.frames] if self.frames else []
        streams = (self.fps / self.native_fps) if self.native_fps and self.fps == self.fps else float("nan")
        return {
            "command": "bench",
            "date": self.date,
            "machine": self.machine,
            "settings": self.settings,
            "stages": {stage: self.stage_summary(stage) for stage in STAGES},
            "end_to_end": {
                "frames": self.frames,
                "wall_s": rounded(self.loop_s, 3),
                "fps": rounded(self.fps, 2),
                "ms_per_frame": rounded(per_frame[0], 3) if per_frame else None,
                "streams_at_native_fps": rounded(streams, 2),
                "cpu_percent": rounded(self.cpu_percent, 1),
                "peak_rss_mb": rounded(self.peak_rss_mb, 1),
                "peak_rss_scope": self.peak_rss_scope,
                "rss_start_mb": rounded(self.rss_start_mb, 1),
                "detections": self.detections,
                "crops_read": self.crops_read,
                "cuts_read": self.cuts_read,
                "crops_skipped_settled": self.crops_skipped,
                "events": self.events,
            },
            "ceiling": {
                "what": "decode only, the same number of frames of the same source",
                "frames": self.decode_only_frames,
                "wall_s": rounded(self.decode_only_s, 3),
                "fps": rounded(self.decode_only_fps, 2),
            },
            "notes": list(self.notes),
        }


def _cell(value: Any, digits: int = 2, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def format_report(report: StageBenchReport) -> str:
    """Markdown: the per-stage table, then the run's totals (what docs/BENCHMARKS.md shows)."""
    data = report.as_dict()
    s, m, e2e, ceiling = data["settings"], data["machine"], data["end_to_end"], data["ceiling"]
    lines = [
        f"anpr-edge bench ({data['date']}): {s['source']} ({s.get('width')}x{s.get('height')} at "
        f"{_cell(s.get('native_fps'), 1)} fps), {e2e['frames']} frames; backend {s['backend']}, "
        f"{s['threads']} thread(s) per model, detector {s['input_size']} px; publish: {s['publish']}.",
        f"Machine: {m.get('cpu')}, {m.get('cores')} cores ({m.get('usable_cores')} usable), {m.get('os')}, "
        f"Python {m.get('python')}, ONNX Runtime {m.get('onnxruntime')}, OpenCV {m.get('opencv')}; "
        f"load average at the start {m.get('load_average')}.",
        "",
        "| stage | calls | median ms | p95 ms | ms per frame (mean) |",
        "|---|---:|---:|---:|---:|",
    ]
    for stage in STAGES:
        st = data["stages"][stage]
        lines.append(f"| {STAGE_NAMES[stage]} | {st['calls']} | {_cell(st['median_ms'])} | {_cell(st['p95_ms'])} | "
                     f"{_cell(st['ms_per_frame'], 3)} |")
    lines.append(f"| **end to end** (loop wall time / frames) | {e2e['frames']} | | | {_cell(e2e['ms_per_frame'], 3)} |")
    lines += [
        "",
        "| measure | value |",
        "|---|---:|",
        f"| end-to-end frames/s (one camera, every frame, decoding included) | {_cell(e2e['fps'], 1)} |",
        f"| ceiling: decode-only frames/s, same frames | {_cell(ceiling['fps'], 1)} |",
        f"| streams at the source's frame rate (end-to-end fps / native fps) | {_cell(e2e['streams_at_native_fps'], 2)} |",
        f"| CPU (user + system over wall; 100% = one core) | {_cell(e2e['cpu_percent'], 0, '%')} |",
        f"| peak RSS ({e2e['peak_rss_scope']}) | {_cell(e2e['peak_rss_mb'], 0, ' MB')} |",
        f"| RSS at the start of the loop (models loaded) | {_cell(e2e['rss_start_mb'], 0, ' MB')} |",
        f"| detections / crops read (OCR inputs: cuts) / crops skipped (vote settled) | {e2e['detections']} / "
        f"{e2e['crops_read']} ({e2e['cuts_read']}) / {e2e['crops_skipped_settled']} |",
        f"| events | {e2e['events']} |",
    ]
    if data["notes"]:
        lines += ["", *[f"- {note}" for note in data["notes"]]]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------- the bench
def bench_config(base: AppConfig, source: Path, *, threads: int | None = None, backend: str | None = None,
                 input_size: int | None = None) -> AppConfig:
    """``base`` with one FILE camera ``bench`` on ``source`` (processed as fast as it goes), the inference
    overrides, crops kept in memory (``events.crop: file`` would write JPEGs) and no text hashing."""
    from anpr_edge.config import CameraConfig

    camera = CameraConfig.model_validate({"id": CAMERA_ID, "source": str(source)})
    inference = base.inference.model_copy(update={
        k: v for k, v in (("threads", threads), ("backend", backend)) if v is not None})
    models = base.models
    if input_size is not None:
        models = models.model_copy(update={"detector": models.detector.model_copy(update={"input_size": input_size})})
    events = base.events.model_copy(update={
        "hash_text": False, "crop": "base64" if base.events.crop == "file" else base.events.crop})
    return base.model_copy(update={"cameras": [camera], "inference": inference, "models": models, "events": events})


def run_stage_bench(
    config: AppConfig,
    reader: PlateReader,
    source: Path,
    *,
    seconds: float | None = None,
    router: EventRouter | None = None,
    progress: bool | None = None,
    settings: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> StageBenchReport:
    """Play ``source`` once (or for ``seconds``, replaying it) through the daemon's per-frame path, timing
    each stage; then decode the same number of frames alone. ``router``: the publish stage (None: none)."""
    from tqdm import tqdm

    from anpr_edge.passages import PassageBuilder
    from anpr_edge.service import model_versions
    from anpr_edge.source_spec import SourceSpec
    from anpr_edge.sources import FileSource, SourceOptions

    spec = SourceSpec("file", str(source))
    options = SourceOptions(loop=seconds is not None)
    detector, recognizer = reader.detector, reader.recognizer
    report = StageBenchReport(date=now_utc(), machine=machine_info(), settings=dict(settings or {}))

    # Warm-up, not timed: the first frame through the detector and one crop through the OCR.
    with FileSource(CAMERA_ID, spec, SourceOptions()) as warm:
        first = warm.read()
        report.native_fps = warm.native_fps
        clip_frames = _frame_count(source)
    if first is None:
        from anpr_edge.errors import SourceError

        raise SourceError(f"bench: no frame could be decoded from {source}")
    (found,) = detector.detect([first.image])
    box = found.xyxy[0] if len(found) else (0.0, 0.0, float(first.width), float(first.height))
    reader.read_cut_sets([reader.cuts(first.image, box)])
    report.settings.setdefault("width", first.width)
    report.settings.setdefault("height", first.height)
    report.settings.setdefault("native_fps", rounded(report.native_fps, 3))
    report.settings.setdefault("clip_frames", clip_frames)

    builder = PassageBuilder.from_config(config.for_camera(CAMERA_ID), CAMERA_ID, charset=recognizer.charset,
                                         versions=model_versions(reader),
                                         model_calibration=recognizer.vote_calibration)
    stages = report.stages
    total = None if seconds is not None else clip_frames
    bar = tqdm(total=total, desc="bench", unit="frame", file=sys.stderr, dynamic_ncols=True,
               disable=(None if progress is None else not progress), mininterval=0.5)

    def publish(events: Sequence[Any]) -> None:
        for event in events:
            report.events += 1
            if router is None:
                continue
            began = clock()
            router(event)
            stages["publish"].append((clock() - began) * 1000.0)

    source_run = FileSource(CAMERA_ID, spec, options)
    source_run.open()
    try:
        report.rss_start_mb = proc_status_mb("VmRSS")
        if reset_peak_rss():
            report.peak_rss_scope = "during the run: VmHWM reset before the loop"
        cpu0 = os.times()
        start = clock()
        deadline = None if seconds is None else start + seconds
        while True:
            t0 = clock()
            frame = source_run.read()
            t1 = clock()
            if frame is None:
                break
            stages["decode"].append((t1 - t0) * 1000.0)
            (detections,) = detector.detect([frame.image])
            t2 = clock()
            stages["detect"].append((t2 - t1) * 1000.0)
            report.detections += len(detections)
            needed = builder.reads_needed(detections, frame.index) if len(detections) else None
            t3 = clock()
            reads: list[Any] = []
            if needed is not None and needed.any():
                wanted = detections[needed]
                cut_sets = [reader.cuts(frame.image, b, float(score), CAMERA_ID, frame.index)
                            for b, score in zip(wanted.xyxy, wanted.confidence)]
                t4 = clock()
                reads = reader.read_cut_sets(cut_sets)
                t5 = clock()
                stages["crop"].append((t4 - t3) * 1000.0)
                stages["ocr"].append((t5 - t4) * 1000.0)
                report.crops_read += len(cut_sets)
                report.cuts_read += sum(len(cuts) for cuts in cut_sets)
            if needed is not None:
                report.crops_skipped += int((~needed).sum())
            t_update = clock()
            events = builder.update(frame, detections, reads)
            t6 = clock()
            stages["track_vote"].append(((t3 - t2) + (t6 - t_update)) * 1000.0)  # crop and OCR excluded
            publish(events)
            report.frames += 1
            bar.update(1)
            if deadline is not None and clock() >= deadline:
                break
        report.loop_s = clock() - start
        cpu1 = os.times()
        report.cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        report.peak_rss_mb = peak_rss_mb()
    finally:
        bar.close()
        source_run.close()
    publish(builder.flush())  # passages still open at the end: their events are published (and timed) too

    # The ceiling: the same frames, decoded and nothing else.
    with FileSource(CAMERA_ID, spec, options) as ceiling:
        start = clock()
        while report.decode_only_frames < report.frames and ceiling.read() is not None:
            report.decode_only_frames += 1
        report.decode_only_s = clock() - start
    if report.frames == 0:
        report.notes.append("no frame was processed")
    if report.events and router is None:
        report.notes.append("publish stage not measured (--no-publish)")
    load = report.machine.get("load_average")
    usable = report.machine.get("usable_cores") or 1
    if load and load[0] > 0.5 * usable:
        report.notes.append(f"the machine was busy: load average {load[0]} on {usable} usable cores at the start; "
                            "figures are slower than on an idle machine")
    return report


def _frame_count(source: Path) -> int | None:
    import cv2

    capture = cv2.VideoCapture(str(source))
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    return count if count > 0 else None


# ------------------------------------------------------------------------------------------- command
def input_size_arg(text: str) -> int:
    """argparse type: a detector input size, a multiple of 32 from 160 to 1920."""
    value = int_at_least(160)(text)
    if value > 1920 or value % 32:
        raise argparse.ArgumentTypeError(f"must be a multiple of 32 from 160 to 1920: {value}")
    return value


def write_json(data: Mapping[str, Any], target: str) -> None:
    """``data`` as JSON to ``target`` (``-``: stdout)."""
    text = json.dumps(data, ensure_ascii=False, indent=1) + "\n"
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    log.info("wrote %s", path)


def make_router(config: AppConfig, folder: Path, mqtt_url: str | None) -> tuple[EventRouter, Any]:
    """The daemon's ``EventRouter`` with an ``MqttPublisher`` on an outbox in ``folder``: started (sending
    to ``mqtt_url``) when a URL is given, else never connected (the publish call stores the event, as
    ``run`` does before sending). Returns (router, publisher)."""
    from anpr_edge.outbox import Outbox
    from anpr_edge.publisher import MqttPublisher, mqtt_config_from_url
    from anpr_edge.service import EventRouter

    mqtt = mqtt_config_from_url(mqtt_url, config.mqtt) if mqtt_url else config.mqtt
    outbox = Outbox(folder / "outbox.sqlite", max_events=mqtt.outbox_max_events,
                    max_age_s=mqtt.outbox_max_age_h * 3600.0)
    publisher = MqttPublisher(mqtt, config.device_id, outbox=outbox)
    if mqtt_url:
        publisher.start()
    return EventRouter(config.device_id, publisher, []), publisher


def cmd_bench(args: argparse.Namespace) -> int:
    from anpr_edge.config import default_config, load_config
    from anpr_edge.errors import ConfigError
    from anpr_edge.pipeline import PlateReader

    if args.source:
        source = Path(args.source).expanduser()
        if not source.is_file():
            raise ConfigError(f"--source: file not found: {args.source}")
        label = str(args.source)
    else:
        from anpr_edge.demo_clip import default_demo_clip

        source = default_demo_clip().path
        label = "built-in demo clip"
    base = load_config(args.config) if args.config else default_config()
    config = bench_config(base, source.resolve(), threads=args.threads, backend=args.backend,
                          input_size=args.input_size)
    reader = PlateReader.from_config(config, photos=False)
    from anpr_edge.service import model_versions

    publish_mode = "none" if args.no_publish else (
        "MqttPublisher to the --mqtt-url broker (outbox in a temp dir)" if args.mqtt_url
        else "EventRouter + MqttPublisher.publish into a temp SQLite outbox, no broker")
    settings = {
        "source": label, "source_path": str(source), "seconds": args.seconds,
        "backend": backend_name(reader.detector.backend), "backend_requested": config.inference.backend,
        "ocr_backend": backend_name(reader.recognizer.backend),
        "threads": config.inference.threads, "input_size": reader.detector.input_size,
        "detector_confidence": reader.detector.confidence, "publish": publish_mode,
        "models": model_versions(reader), "config": args.config,
    }
    with tempfile.TemporaryDirectory(prefix="anpr-bench-") as folder:
        router, publisher = (None, None) if args.no_publish else make_router(config, Path(folder), args.mqtt_url)
        try:
            report = run_stage_bench(config, reader, source, seconds=args.seconds, router=router,
                                     progress=False if args.no_progress else None, settings=settings)
        finally:
            if publisher is not None:
                if args.mqtt_url:
                    publisher.close(timeout=5.0)  # what the broker has not acknowledged by then is dropped
                publisher.outbox.close()
    emit_report(format_report(report), report.as_dict(), args.json)
    return 0


def emit_report(table: str, data: dict[str, Any], json_target: str | None) -> None:
    """The Markdown table on stdout, unless the JSON goes there (``--json -``); the JSON to its target."""
    if json_target != "-":
        sys.stdout.write(table + "\n")
        sys.stdout.flush()
    if json_target:
        write_json(data, json_target)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``bench`` to the main CLI's subparsers object."""
    bench = commands.add_parser(
        "bench",
        help="per-stage latency (decode, detect, crop, OCR, track/vote, publish), end-to-end fps, CPU and peak "
        "RSS on one video, with the decode-only ceiling",
        description="Play one video (default: the built-in demo clip) through the daemon's per-frame path as "
        "fast as it goes, one camera, every frame, timing each stage around the real functions: median and "
        "p95 ms per call and ms per frame; end-to-end frames/s, CPU% and peak RSS; and the ceiling measured "
        "in the same run (the same frames decoded and nothing else). A Markdown table on stdout; --json "
        "writes the figures as JSON. Progress on stderr.",
    )
    bench.add_argument("--source", metavar="FILE", help="video file (default: the built-in demo clip)")
    bench.add_argument("--seconds", type=positive_float, metavar="N",
                       help="run for N seconds, replaying the video as needed (default: play it once)")
    bench.add_argument("--backend", choices=("auto", "onnxruntime", "tensorrt"),
                       help="inference backend (default: the config's inference.backend, auto)")
    bench.add_argument("--threads", type=non_negative_int, metavar="N",
                       help="threads per model for ONNX Runtime (default: the config's inference.threads, 2; "
                       "0: ONNX Runtime decides)")
    bench.add_argument("--input-size", type=input_size_arg, metavar="PX",
                       help="detector input size, a multiple of 32 (default: the config's, else the model's own)")
    bench.add_argument("--config", metavar="FILE", help="YAML config (models, thresholds, tracking, voting, events)")
    bench.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': JSON on "
                       "stdout instead of the table)")
    bench.add_argument("--mqtt-url", metavar="URL", help="publish the events to this broker "
                       "(mqtt://host[:port]); default: into a throw-away outbox, no broker")
    bench.add_argument("--no-publish", action="store_true", help="leave the publish stage out")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar")
    bench.set_defaults(handler=cmd_bench)
