"""The `run` loop: sources -> detector -> OCR (only where a track still needs it) -> passages -> events out.

One thread, cameras served round-robin: each turn reads a camera's next frame, detects plates, reads the
crops whose track is not settled yet, and hands frame, detections and reads to that camera's
``PassageBuilder``, which returns the finished passages as ``PlateEvent``s. Events go to the MQTT
publisher (durable outbox first) when MQTT is enabled, and as JSON lines (the MQTT payload) to stdout
and/or a JSONL file. At the end of a file source, or on SIGINT/SIGTERM, open passages are flushed, so a
car still in view when the daemon stops still gets its event. (The concurrent daemon with a capture
thread per camera and reconnects is the service issue's; this loop is its single-threaded core.)
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anpr_edge import __version__
from anpr_edge.config import AppConfig
from anpr_edge.errors import AnprError, SourceError
from anpr_edge.events import event_to_payload
from anpr_edge.passages import PassageBuilder
from anpr_edge.values import Frame, PlateEvent

if TYPE_CHECKING:
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.publisher import MqttPublisher
    from anpr_edge.sources import FrameSource

log = logging.getLogger(__name__)

EventSink = Callable[[dict[str, Any]], None]


def model_versions(reader: PlateReader | None) -> dict[str, str]:
    """Software and model versions carried by every event: a short content hash names each model file."""
    versions = {"anpr_edge": __version__}
    if reader is not None:
        for role, backend in (("detector", reader.detector.backend), ("ocr", reader.recognizer.backend)):
            versions[role] = f"{Path(backend.path).stem}@{_file_hash(Path(backend.path))}"
    return versions


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


@dataclass
class RunStats:
    frames: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    events: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    ocr_reads: int = 0
    ocr_skipped: int = 0  # crops not read because their track's vote was settled
    failed_cameras: int = 0


class EventRouter:
    """Sends each finished passage to the publisher (which numbers it) and to the JSON-line sinks."""

    def __init__(self, device_id: str, publisher: MqttPublisher | None, sinks: list[EventSink]) -> None:
        self.device_id, self.publisher, self.sinks = device_id, publisher, sinks
        self._seq: dict[str, int] = defaultdict(int)

    def __call__(self, event: PlateEvent) -> PlateEvent:
        if not event.device_id:
            event = replace(event, device_id=self.device_id)
        if self.publisher is not None:
            event = self.publisher.publish(event)  # on disk before anything else happens
        elif event.seq == 0:
            # Without MQTT there is no outbox to keep the count across restarts: number per run.
            self._seq[event.camera_id] += 1
            event = replace(event, seq=self._seq[event.camera_id])
        payload = event_to_payload(event)
        for sink in self.sinks:
            sink(payload)
        return event


def run_cameras(
    config: AppConfig,
    sources: dict[str, FrameSource],
    reader: PlateReader | None,
    route: EventRouter,
    *,
    stop: threading.Event,
    max_frames: int | None = None,
    publisher: MqttPublisher | None = None,
) -> RunStats:
    """Process ``sources`` (already built, not opened) until they end or ``stop`` is set."""
    stats = RunStats()
    versions = model_versions(reader)
    builders: dict[str, PassageBuilder] = {}
    started = time.monotonic()
    live: dict[str, FrameSource] = {}
    for camera_id, source in sources.items():
        try:
            source.open()
            log.info("camera '%s': opened %s", camera_id, source.spec)
            live[camera_id] = source
            if reader is not None:
                builders[camera_id] = PassageBuilder.from_config(
                    config, camera_id, charset=reader.recognizer.charset, versions=versions)
            if publisher is not None:
                publisher.set_camera_status(camera_id, connected=True, fps=source.native_fps, source=str(source.spec))
        except SourceError as error:
            log.error("%s", error)
            stats.failed_cameras += 1
            if publisher is not None:
                publisher.set_camera_status(camera_id, connected=False, last_error=str(error), source=str(source.spec))

    def finish(camera_id: str) -> None:
        source = live.pop(camera_id)
        _log_camera_summary(camera_id, source, time.monotonic() - started)
        source.close()
        builder = builders.pop(camera_id, None)
        if builder is not None:
            for event in builder.flush():
                route(event)
                stats.events[camera_id] += 1
        if publisher is not None:
            publisher.set_camera_status(camera_id, connected=False, fps=0.0, last_error=None, state="ended")

    try:
        while live and not stop.is_set():
            for camera_id, source in list(live.items()):
                try:
                    frame = source.read()
                except SourceError as error:
                    log.error("%s", error)
                    stats.failed_cameras += 1
                    if publisher is not None:
                        publisher.set_camera_status(camera_id, connected=False, last_error=str(error))
                    frame = None
                if frame is None or (max_frames and source.stats.frames_read > max_frames):
                    finish(camera_id)
                    continue
                stats.frames[camera_id] += 1
                if reader is not None:
                    for event in _process(frame, reader, builders[camera_id], stats):
                        route(event)
                        stats.events[camera_id] += 1
    finally:
        for camera_id in list(live):
            try:
                finish(camera_id)
            except AnprError as error:  # e.g. the outbox cannot store: say so, keep closing the rest
                log.error("camera '%s': %s", camera_id, error)
    return stats


def _process(frame: Frame, reader: PlateReader, builder: PassageBuilder, stats: RunStats) -> list[PlateEvent]:
    (detections,) = reader.detector.detect([frame.image])
    needed = builder.reads_needed(detections, frame.index) if len(detections) else None
    reads = []
    if needed is not None and needed.any():
        wanted = detections[needed]
        reads = reader.read_detections(frame.image, wanted, camera_id=frame.camera_id, frame_index=frame.index)
        stats.ocr_reads += len(wanted)
    if needed is not None:
        stats.ocr_skipped += int((~needed).sum())
    return builder.update(frame, detections, reads)


def _log_camera_summary(camera_id: str, source: FrameSource, elapsed: float) -> None:
    stats = source.stats
    rate = stats.frames_read / elapsed if elapsed > 0 else 0.0
    log.info(
        "camera '%s': %d frames processed in %.1f s (%.1f fps), %d dropped (stale), %d skipped (fps limit)",
        camera_id, stats.frames_read, elapsed, rate, stats.frames_dropped, stats.frames_skipped,
    )
