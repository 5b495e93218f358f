"""``anpr-edge probe URI``: what an installer needs to know about a camera before it goes live.

Opens the source through the same layer as ``run`` (``sources.create_source``: files, RTSP/HTTP streams,
``/dev/videoN`` or a camera index), reads a few frames, and reports the codec, resolution, frame rate
(the stream's nominal rate and the rate measured over the frames read), and the plates the detector finds
in the best of those frames, each with its width in pixels and the OCR's reading, through ``PlateReader``
as ``anpr-edge read`` does. ``advise(report)`` turns the numbers into advice (zoom in, raise the frame
rate...). One JSON object goes to stdout; a short summary and the advice go to stderr. Stream credentials
never appear in either: the source is always shown in its redacted form (``SourceSpec.__str__``).

    anpr-edge probe rtsp://user:pass@10.0.0.5/Streaming/Channels/101 --snapshot cam.jpg
    anpr-edge probe clip.mp4 --frames 50 --no-detect

``add_parser(commands)`` adds the command to the main CLI; ``python -m anpr_edge.probe probe URI`` runs it
alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import cv2
import numpy as np

from anpr_edge.argtypes import positive_float, positive_int
from anpr_edge.config import AppConfig, default_config, load_config
from anpr_edge.errors import AnprError, ConfigError, SourceError
from anpr_edge.source_spec import SourceSpec, parse_source
from anpr_edge.sources import FileSource, FrameSource, LiveSource, SourceOptions, create_source
from anpr_edge.values import Frame

if TYPE_CHECKING:
    from anpr_edge.pipeline import PlateReader

log = logging.getLogger("anpr_edge.probe")

CAMERA_ID = "probe"
DEFAULT_FRAMES = 25
DEFAULT_TIMEOUT_S = 5.0  # the cameras' own open/read timeout default (config.CameraConfig)

# ------------------------------------------------------------------------------------- advice thresholds
# Plates narrower than this (frame pixels) are often missed: the bundled detector's recall is 30-57% on
# plates under 40 px wide against 86-97% at 40-80 px (engines/plate_det.md, eval-read per-width bins).
MIN_DETECT_PLATE_PX = 40
# The OCR reads 192x64 crops in which a plate (with the crop's 15% margins) spans about 145 px. Below
# about 100 px a 7-8 character plate has under ~12 px per character and the upscaled crop is a blur: the
# reads get unreliable even where the box is found.
MIN_OCR_PLATE_PX = 100
# A car at 30 km/h crosses a 5 m field of view in 0.6 s: at 8 fps that is 5 frames, the fewest for a track
# (tracking.min_hits 2) to form and its vote (voting.settle_reads 3) to settle before the car is gone.
MIN_FPS = 8.0
# 720p (1280 px across) is the least that keeps a 52 cm EU plate above MIN_OCR_PLATE_PX when the view
# spans a 4 m lane: 1280 * 0.52 / 4 = 166 px, where 640x480 gives 83 px.
MIN_HEIGHT_PX = 720
# Reads at least this sure are taken as the plates' real texts when advising on plate formats: a misread
# would suggest a format the site does not have. This is a single read's raw confidence, the sequence
# probability under the label smoothing (0.1) the OCR was trained with: a certain read of seven characters
# and the end token scores at most about 0.9^8 = 0.43 (the bundled model gives 0.45-0.57 on sure reads), so
# 0.5 would turn away most right reads; 0.3 leaves out reads with one or two doubtful characters.
MIN_FORMAT_ADVICE_CONFIDENCE = 0.3

# OpenCV's FOURCC (a container tag such as avc1/hvc1, or FFmpeg's codec name when there is no tag) and
# ffprobe's codec_name, folded to one name per codec family.
_CODEC_FAMILIES = {
    "h264": "h264", "avc1": "h264", "avc3": "h264", "x264": "h264", "davc": "h264",
    "hevc": "hevc", "h265": "hevc", "hvc1": "hevc", "hev1": "hevc", "x265": "hevc",
    "mjpg": "mjpeg", "mjpeg": "mjpeg", "jpeg": "mjpeg",
    "mp4v": "mpeg4", "mpeg4": "mpeg4", "xvid": "mpeg4", "divx": "mpeg4",
    "av01": "av1", "av1": "av1", "vp80": "vp8", "vp8": "vp8", "vp90": "vp9", "vp09": "vp9", "vp9": "vp9",
    "yuyv": "rawvideo", "yuy2": "rawvideo", "uyvy": "rawvideo", "nv12": "rawvideo", "rawvideo": "rawvideo",
}
FFPROBE_TIMEOUT_S = 10.0


# ------------------------------------------------------------------------------------------------ report
@dataclass(frozen=True)
class ProbedPlate:
    """A plate in the best frame: detector box (frame pixels) and score, its size, and the OCR's read."""

    box: tuple[float, float, float, float]
    confidence: float
    text: str = ""
    text_confidence: float = 0.0
    input_width_px: float | None = None  # the plate's width in the detector's letterboxed input
    format: str | None = None  # the plate format the text was read under (formats.regions), if any

    @property
    def width_px(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height_px(self) -> float:
        return float(self.box[3] - self.box[1])

    def as_dict(self) -> dict[str, Any]:
        return {
            "box": [round(float(v), 1) for v in self.box],
            "confidence": round(self.confidence, 4),
            "width_px": round(self.width_px, 1),
            "height_px": round(self.height_px, 1),
            "input_width_px": None if self.input_width_px is None else round(self.input_width_px, 1),
            "text": self.text,
            "text_confidence": round(self.text_confidence, 4),
            "format": self.format,
        }


@dataclass
class ProbeReport:
    """What ``probe`` found. ``plates`` is ``None`` when detection was off (``--no-detect``)."""

    source: str  # redacted
    kind: str
    width: int = 0
    height: int = 0
    codec: str | None = None  # codec family: h264, hevc, mjpeg...
    fourcc: str | None = None  # OpenCV's CAP_PROP_FOURCC as 4 characters
    codec_from: str | None = None  # "ffprobe" or "opencv"
    profile: str | None = None  # ffprobe only
    field_order: str | None = None  # ffprobe only: progressive, tt, bb...
    fps_nominal: float | None = None  # what the stream/container declares
    fps_measured: float | None = None  # live: frames received per second; files: from the frames' media times
    frames_requested: int = DEFAULT_FRAMES
    frames_read: int = 0
    frames_dropped: int = 0  # live sources: frames that arrived while the probe was busy detecting
    open_s: float = 0.0
    read_s: float = 0.0
    rtsp_transport: str | None = None
    detector_input_size: int | None = None
    frames_with_plates: int = 0
    best_frame: int | None = None  # index (in the source) of the frame the plates and snapshot come from
    plates: list[ProbedPlate] | None = None
    # The config's formats.regions (None: not known, no format advice).
    formats_configured: list[str] | None = None
    snapshot: str | None = None
    advice: list[str] = field(default_factory=list)

    @property
    def fps(self) -> float | None:
        """The rate the pipeline will see: measured where known, else the declared one."""
        return self.fps_measured or self.fps_nominal

    @property
    def widest_plate(self) -> ProbedPlate | None:
        return max(self.plates, key=lambda p: p.width_px) if self.plates else None

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["plates"] = None if self.plates is None else [p.as_dict() for p in self.plates]
        for key in ("fps_nominal", "fps_measured"):
            record[key] = None if record[key] is None else round(record[key], 2)
        record["open_s"], record["read_s"] = round(self.open_s, 3), round(self.read_s, 3)
        return record


# ------------------------------------------------------------------------------------------------ advice
def advise(report: ProbeReport) -> list[str]:
    """Installer advice for a probe report, most important first; empty when all looks fine."""
    advice: list[str] = []
    if report.plates is not None:
        widest = report.widest_plate
        if widest is None:
            advice.append(
                f"no plate in {report.frames_read} frame{'s' if report.frames_read != 1 else ''}: point the camera "
                "at traffic or use a clip with cars"
            )
        elif widest.width_px < MIN_DETECT_PLATE_PX:
            seen = ""
            if widest.input_width_px is not None and report.detector_input_size:
                seen = (f" (the detector sees the frame at {report.detector_input_size} px, where the plate is "
                        f"{widest.input_width_px:.0f} px)")
            advice.append(
                f"widest plate {widest.width_px:.0f} px: too small for the detector at this size{seen}: zoom in, "
                "give the camera an roi around the lane (the detector then looks only there: cameras[].roi, "
                f"detect_in_roi) or raise the detector input size (models.detector.input_size); aim for "
                f"{MIN_OCR_PLATE_PX}+ px"
            )
        elif widest.width_px < MIN_OCR_PLATE_PX:
            advice.append(
                f"widest plate {widest.width_px:.0f} px: detectable but the OCR needs ~{MIN_OCR_PLATE_PX}+ px for "
                "reliable reads: zoom in or move closer"
            )
    fps = report.fps
    if fps is not None and fps < MIN_FPS:
        advice.append(
            f"{fps:.1f} fps is below {MIN_FPS:g}: a passing car is seen in too few frames to track it and vote "
            "on its plate; raise the camera's frame rate (10-15 fps is plenty)"
        )
    if report.width and report.height and min(report.width, report.height) < MIN_HEIGHT_PX:
        advice.append(
            f"resolution {report.width}x{report.height} is below 720p: distant plates will be too small to read; "
            "use the camera's main stream (not the sub-stream) at 1280x720 or more"
        )
    advice.extend(_format_advice(report))
    if report.codec == "hevc":
        advice.append(
            "H.265 stream: fine, decoded by FFmpeg (in software here, more CPU per frame than H.264); "
            "on a Jetson use hardware decoding later"
        )
    return advice


def _format_advice(report: ProbeReport) -> list[str]:
    """Which plate formats the confident reads fit, where none is configured or they fit none configured."""
    from anpr_edge.plate_formats import BUILTIN_FORMATS, load_formats

    if report.plates is None or report.formats_configured is None:
        return []
    texts = list(dict.fromkeys(p.text for p in report.plates
                               if p.text and p.text_confidence >= MIN_FORMAT_ADVICE_CONFIDENCE))
    if not texts:
        return []
    shown = ", ".join(texts[:3])
    if not report.formats_configured:
        # GENERIC fits every plate and corrects nothing: not worth suggesting.
        known = load_formats([name for name in BUILTIN_FORMATS if name != "GENERIC"])
        fitting = [f.name for f in known if all(f.matches(text) for text in texts)]
        fits = (f"fit the formats {', '.join(fitting)}" if fitting
                else "fit no single built-in format (`anpr-edge formats TEXT` shows each one's)")
        return [f"no plate formats configured: the plates read here ({shown}) {fits}; list your region's in "
                "formats.regions so look-alikes (0/O, 8/B, 5/S...) are fixed where the format rules one out"]
    unfit = [p.text for p in report.plates if p.text in texts and p.format is None]
    if unfit:
        configured = ", ".join(report.formats_configured)
        return [f"plates read here ({', '.join(list(dict.fromkeys(unfit))[:3])}) fit none of formats.regions "
                f"[{configured}]: if they are read right, add their format (`anpr-edge formats TEXT` lists "
                "those each fits) or a custom one"]
    return []


# --------------------------------------------------------------------------------------------- codec
def fourcc_text(value: float) -> str | None:
    """OpenCV's CAP_PROP_FOURCC (a float holding 4 little-endian bytes) as text; None when unknown."""
    if not value or not math.isfinite(value):
        return None
    raw = int(value) & 0xFFFFFFFF
    text = raw.to_bytes(4, "little").decode("latin-1").rstrip("\x00 ")
    return text if text and text.isprintable() else None


def codec_family(name: str | None) -> str | None:
    """``avc1``/``H264``/``h264`` -> ``h264``, ``hvc1``/``hev1``/``hevc`` -> ``hevc``; others lower-cased."""
    if not name:
        return None
    key = name.strip().lower()
    return _CODEC_FAMILIES.get(key, key)


def ffprobe_stream(path: str) -> dict[str, Any] | None:
    """The first video stream's codec_name, profile and field_order from ffprobe, when it is on PATH.

    Optional: OpenCV's FOURCC is the fallback. Used for files only: on a camera it would be a second
    connection (some allow one or two) with the credentials on a command line any local user can list.
    """
    binary = shutil.which("ffprobe")
    if binary is None:
        return None
    command = [binary, "-v", "error", "-select_streams", "v:0",
               "-show_entries", "stream=codec_name,profile,field_order", "-of", "json", path]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=FFPROBE_TIMEOUT_S, check=False)
        streams = json.loads(done.stdout or "{}").get("streams") or []
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        log.debug("ffprobe failed on %s: %s", path, error)
        return None
    return streams[0] if streams and streams[0].get("codec_name") else None


class _CaptureWatch:
    """Keeps the OpenCV capture a source opens, to read its FOURCC (and, for files, each frame's time).

    The sources keep their capture private (a live source's lives in its reader thread), so this wraps the
    one method that creates it, on this source object only; frames are still read through the source.
    """

    def __init__(self, source: FrameSource) -> None:
        self.capture: cv2.VideoCapture | None = None
        self.fourcc: str | None = None
        name = "_open_capture" if isinstance(source, FileSource) else "_create_capture"
        original: Callable[[], cv2.VideoCapture] | None = getattr(source, name, None)
        if original is None or not isinstance(source, (FileSource, LiveSource)):
            return

        def opened() -> cv2.VideoCapture:
            capture = original()
            if capture.isOpened():
                self.capture = capture
                self.fourcc = fourcc_text(capture.get(cv2.CAP_PROP_FOURCC))
            return capture

        setattr(source, name, opened)

    def position_s(self) -> float | None:
        """Media time of the frame just read (file sources: the caller's thread owns the capture)."""
        if self.capture is None:
            return None
        ms = self.capture.get(cv2.CAP_PROP_POS_MSEC)
        return ms / 1000.0 if ms is not None and math.isfinite(ms) and ms >= 0 else None


# ------------------------------------------------------------------------------------------------ probing
def _measured_fps(times: Sequence[tuple[int, float]]) -> float | None:
    """Frames per second between the first and last (index, seconds) pair; None with under two frames."""
    if len(times) < 2:
        return None
    (first_index, first_t), (last_index, last_t) = times[0], times[-1]
    span = last_t - first_t
    return (last_index - first_index) / span if span > 0 and last_index > first_index else None


def _plate_score(xyxy: np.ndarray) -> tuple[int, float]:
    """Frames rank by plate count, then total plate width: "the most, then the largest, plates"."""
    return len(xyxy), float((xyxy[:, 2] - xyxy[:, 0]).sum())


def probe_source(
    spec: SourceSpec,
    options: SourceOptions,
    *,
    frames: int = DEFAULT_FRAMES,
    reader: PlateReader | None = None,
) -> tuple[ProbeReport, np.ndarray | None]:
    """Read up to ``frames`` frames of ``spec`` and report on them; also returns the best frame's image.

    Plates are detected in every frame and the frame with the most (then the widest) plates is kept; its
    plates are then read with ``reader.read``, exactly as ``anpr-edge read`` reads a photo. Raises
    ``SourceError`` when the source cannot be opened or gives no frame.
    """
    source = create_source(CAMERA_ID, spec, options)
    watch = _CaptureWatch(source)
    report = ProbeReport(source=str(spec), kind=spec.kind, frames_requested=frames)
    if spec.uri.lower().startswith(("rtsp://", "rtsps://")):
        report.rtsp_transport = options.rtsp_transport
    if reader is not None:
        report.detector_input_size = reader.detector.input_size
    best: Frame | None = None
    best_score: tuple[int, float] = (-1, -1.0)
    times: list[tuple[int, float]] = []
    started = time.monotonic()
    try:
        source.open()
        report.open_s = time.monotonic() - started
        reading = time.monotonic()
        while report.frames_read < frames:
            try:
                frame = source.read()
            except SourceError as error:
                if report.frames_read == 0:
                    raise
                log.warning("%s; probing the %d frames read", error, report.frames_read)
                break
            if frame is None:
                break
            report.frames_read += 1
            if spec.is_live:
                times.append((frame.index, frame.timestamp))
            elif (position := watch.position_s()) is not None:
                times.append((frame.index, position))
            score = (0, 0.0)
            if reader is not None:
                (found,) = reader.detector.detect([frame.image])
                score = _plate_score(found.xyxy)
                report.frames_with_plates += int(len(found) > 0)
            # Without detection the last frame is kept, the freshest view of a live camera.
            if reader is None or score > best_score:
                best, best_score = frame, score
        report.read_s = time.monotonic() - reading
        report.fps_nominal = source.native_fps
        report.frames_dropped = source.stats.frames_dropped
    finally:
        source.close()
    if best is None:
        raise SourceError(f"camera '{CAMERA_ID}': no frame could be read from {spec}")
    report.fps_measured = _measured_fps(times)
    report.width, report.height = best.width, best.height
    report.best_frame = best.index
    report.fourcc = watch.fourcc
    report.codec, report.codec_from = codec_family(watch.fourcc), "opencv" if watch.fourcc else None
    if spec.kind in ("file", "demo") and isinstance(source, FileSource):
        probed = ffprobe_stream(source.spec.uri)
        if probed:
            report.codec, report.codec_from = codec_family(probed["codec_name"]), "ffprobe"
            report.profile, report.field_order = probed.get("profile"), probed.get("field_order")
    if reader is not None:
        (reads,) = reader.read([best.image], camera_id=CAMERA_ID, frame_indices=[best.index])
        size = reader.detector.input_size
        scale = min(size / best.height, size / best.width)
        report.plates = [
            ProbedPlate(
                box=(float(read.box[0]), float(read.box[1]), float(read.box[2]), float(read.box[3])),
                confidence=float(read.detector_confidence),
                text=read.text,
                text_confidence=float(read.confidence),
                input_width_px=float(read.box[2] - read.box[0]) * scale,
                format=read.format,
            )
            for read in reads
            if read.box is not None
        ]
        report.plates.sort(key=lambda p: -p.width_px)
        report.formats_configured = [f.name for f in reader.formats]
    report.advice = advise(report)
    return report, best.image


# ----------------------------------------------------------------------------------------------- snapshot
def _plate_colour(width_px: float) -> tuple[int, int, int]:
    if width_px < MIN_DETECT_PLATE_PX:
        return (0, 0, 255)  # red: too small to detect reliably
    if width_px < MIN_OCR_PLATE_PX:
        return (0, 165, 255)  # orange: found, but too small to read reliably
    return (0, 200, 0)  # green


def _label(image: np.ndarray, text: str, x: int, y: int, scale: float, colour: tuple[int, int, int]) -> None:
    """Text on a dark box with its baseline at (x, y), kept inside the image."""
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, font, scale, thickness)
    height, width = image.shape[:2]
    x = int(min(max(x, 0), max(width - w - 4, 0)))
    y = int(min(max(y, h + 4), height - base - 2))
    cv2.rectangle(image, (x, y - h - 4), (x + w + 4, y + base + 2), (0, 0, 0), cv2.FILLED)
    cv2.putText(image, text, (x + 2, y), font, scale, colour, thickness, cv2.LINE_AA)


def draw_snapshot(image: np.ndarray, report: ProbeReport) -> np.ndarray:
    """The frame with each plate's box, width in pixels and reading, and a header line."""
    out = image.copy()
    height, width = out.shape[:2]
    scale = max(0.45, min(width, height) / 1000.0)
    header = " ".join(
        part for part in (
            report.codec or report.fourcc, f"{report.width}x{report.height}",
            f"{report.fps:.1f} fps" if report.fps else None,
            f"{len(report.plates)} plate(s)" if report.plates is not None else "detection off",
        ) if part
    )
    _label(out, header, 4, 0, scale, (255, 255, 255))
    for plate in report.plates or []:
        x1, y1, x2, y2 = (int(round(v)) for v in plate.box)
        colour = _plate_colour(plate.width_px)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, max(2, round(scale * 3)))
        text = f"{plate.width_px:.0f}px {plate.text or '?'} {plate.text_confidence:.2f}"
        _, text_h = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0]
        above = y1 - 6
        _label(out, text, x1, above if above - text_h > 0 else y2 + text_h + 8, scale, colour)
    return out


def check_snapshot_path(path: Path) -> None:
    """Fail before probing, not after, on a snapshot that cannot be written."""
    if not path.parent.is_dir():
        raise ConfigError(f"--snapshot: folder does not exist: {path.parent}")
    if not cv2.haveImageWriter(str(path)):
        raise ConfigError(f"--snapshot: {path}: not an image type OpenCV writes (use .jpg or .png)")


def write_snapshot(path: Path, image: np.ndarray, report: ProbeReport) -> None:
    check_snapshot_path(path)
    try:
        written = cv2.imwrite(str(path), draw_snapshot(image, report), [cv2.IMWRITE_JPEG_QUALITY, 90])
    except cv2.error:
        written = False
    if not written:
        raise ConfigError(f"--snapshot: cannot write {path} (a .jpg or .png file in a writable folder)")


# ------------------------------------------------------------------------------------------------- output
def _emit(record: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


def format_summary(report: ProbeReport) -> str:
    """A few lines for a person at the camera (stderr)."""
    codec = report.codec or "unknown codec"
    if report.fourcc and codec_family(report.fourcc) != report.fourcc.lower():
        codec += f" ({report.fourcc})"
    rates = []
    if report.fps_nominal:
        rates.append(f"{report.fps_nominal:.1f} fps nominal")
    if report.fps_measured:
        rates.append(f"{report.fps_measured:.1f} fps measured")
    lines = [
        f"{report.source}: {codec}, {report.width}x{report.height}, " + (", ".join(rates) or "frame rate unknown"),
        f"  {report.frames_read} frame(s) read in {report.read_s:.2f} s (opened in {report.open_s:.2f} s"
        + (f", {report.frames_dropped} dropped while busy" if report.frames_dropped else "") + ")",
    ]
    if report.plates is None:
        lines.append("  plates: not checked (--no-detect)")
    elif not report.plates:
        lines.append("  plates: none")
    else:
        lines.append(f"  plates in frame {report.best_frame} (plates seen in {report.frames_with_plates} of "
                     f"{report.frames_read} frames):")
        for plate in report.plates:
            read = f"read {plate.text} ({plate.text_confidence:.2f})" if plate.text else "not read"
            lines.append(f"    {plate.width_px:.0f} px wide, detector {plate.confidence:.2f}, {read}")
    if report.snapshot:
        lines.append(f"  snapshot: {report.snapshot}")
    if report.advice:
        lines.append("advice:")
        lines.extend(f"  - {item}" for item in report.advice)
    else:
        lines.append("advice: none, this view looks usable")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ command
def _config(path: str | None) -> AppConfig:
    return load_config(path) if path else default_config()


def cmd_probe(args: argparse.Namespace) -> int:
    try:
        spec = parse_source(args.uri)
    except ValueError as error:
        # parse_source's messages show URLs redacted and name the file.
        raise ConfigError(f"probe: {error}") from None
    snapshot = Path(args.snapshot) if args.snapshot else None
    if snapshot is not None:
        check_snapshot_path(snapshot)
    reader = None
    if not args.no_detect:
        from anpr_edge.pipeline import PlateReader

        try:
            reader = PlateReader.from_config(_config(args.config))
        except AnprError as error:
            error.args = (f"{error} (or probe without plates: --no-detect)",)
            raise
    options = SourceOptions(open_timeout_s=args.timeout, read_timeout_s=args.timeout,
                            rtsp_transport=args.rtsp_transport)
    try:
        report, image = probe_source(spec, options, frames=args.frames, reader=reader)
    except SourceError as error:
        if spec.uri.lower().startswith(("rtsp://", "rtsps://")):
            other = "udp" if args.rtsp_transport == "tcp" else "tcp"
            error.args = (f"{error} [RTSP over {args.rtsp_transport}; --rtsp-transport {other} tries the other]",)
        raise
    if snapshot is not None and image is not None:
        write_snapshot(snapshot, image, report)
        report.snapshot = str(snapshot)
    _emit(report.as_dict(), sys.stdout)
    sys.stderr.write(format_summary(report) + "\n")
    sys.stderr.flush()
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``probe`` to the main CLI's subparsers object."""
    probe = commands.add_parser(
        "probe",
        help="check a camera or clip for ANPR: codec, resolution, fps, plates and their width, advice",
        description="Open a source (video file, rtsp://, http(s)://, /dev/videoN or a camera index), read a few "
        "frames and report the codec, resolution, nominal and measured frame rate, and the plates found in the "
        "best frame with their width in pixels and the OCR's reading. One JSON object on stdout; a summary "
        "and advice (zoom in, raise the frame rate...) on stderr. Stream passwords are never printed.",
    )
    probe.add_argument("uri", metavar="URI", help="video file, stream URL, /dev/videoN or camera index")
    probe.add_argument("--frames", type=positive_int, default=DEFAULT_FRAMES, metavar="N",
                       help=f"frames to read; the one with the most/largest plates is kept (default {DEFAULT_FRAMES})")
    probe.add_argument("--snapshot", metavar="FILE.jpg",
                       help="write that frame with the plates boxed and labelled (width in px, text)")
    probe.add_argument("--rtsp-transport", choices=["tcp", "udp"], default="tcp",
                       help="RTSP transport (default tcp, as cameras[].rtsp_transport)")
    probe.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT_S, metavar="S",
                       help=f"give up opening the source, or waiting for a frame, after S seconds "
                       f"(default {DEFAULT_TIMEOUT_S:g})")
    probe.add_argument("--config", metavar="FILE",
                       help="YAML config for the detector and OCR models and settings (default: the bundled models)")
    probe.add_argument("--no-detect", action="store_true", help="only the stream: no plate detection, no models")
    probe.set_defaults(handler=cmd_probe)
