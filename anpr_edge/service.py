"""The daemon's core: capture threads -> shared inference -> passages -> events out.

Each enabled camera gets a ``CameraWorker`` (its own capture thread, reconnect with backoff; see
``camera_worker``). One inference loop takes the newest frame of every camera that has one, runs the
detector on them as one batch (so a GPU can batch across cameras), reads the crops whose track is not
settled yet, and hands frame, detections and reads to that camera's ``PassageBuilder``, which returns
finished passages as ``PlateEvent``s. Events go to the MQTT publisher (durable outbox first) when MQTT
is enabled, and as JSON lines (the MQTT payload) to stdout and/or a JSONL file.

Shutdown (SIGTERM/SIGINT) drains: capture stops, open passages are flushed (a car still in view gets its
event), the publisher is closed by the caller. ``reload(config)`` (SIGHUP) adds, removes and restarts
cameras whose settings changed, without touching the others.
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

import numpy as np

from anpr_edge import __version__
from anpr_edge.camera_worker import Backoff, CameraState, CameraWorker
from anpr_edge.config import AppConfig, CameraConfig
from anpr_edge.errors import AnprError
from anpr_edge.events import event_to_payload
from anpr_edge.passages import PassageBuilder
from anpr_edge.regions import Window, detect_in_windows, inside_roi, roi_window
from anpr_edge.values import Detections, Frame, PlateEvent

if TYPE_CHECKING:
    from anpr_edge.live_view import LiveView
    from anpr_edge.metrics import ServiceMetrics
    from anpr_edge.pipeline import PlateReader
    from anpr_edge.publisher import MqttPublisher
    from anpr_edge.sdnotify import SystemdNotifier
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


class Service:
    """Runs cameras until they end or ``stop`` is set; see the module docstring."""

    def __init__(
        self,
        config: AppConfig,
        reader: PlateReader | None,
        route: EventRouter,
        *,
        publisher: MqttPublisher | None = None,
        metrics: ServiceMetrics | None = None,
        notifier: SystemdNotifier | None = None,
        max_frames: int | None = None,
        source_factory: Callable[[CameraConfig], FrameSource] | None = None,
        live_view: LiveView | None = None,
    ) -> None:
        from anpr_edge.sources import open_source

        self.config, self.reader, self.route = config, reader, route
        self.publisher, self.metrics, self.notifier = publisher, metrics, notifier
        self.max_frames = max_frames
        self.source_factory = source_factory or open_source
        self.stats = RunStats()
        self.versions = model_versions(reader)
        self.workers: dict[str, CameraWorker] = {}
        self.cameras: dict[str, CameraConfig] = {}
        self.builders: dict[str, PassageBuilder] = {}
        self._ready = threading.Condition()
        self._started = time.monotonic()
        self._state = "starting"
        self._last_status = 0.0
        self._reported: dict[str, dict[str, int]] = {}  # per camera: counts already added to the metrics
        # Cameras whose stream broke: their open passages end (set by capture threads, handled by the
        # inference loop, which owns the builders).
        self._lost: set[str] = set()
        self._lost_lock = threading.Lock()
        # The web page's live view (optional): given each processed frame with its detections and tracks.
        self.live_view = live_view

    # --------------------------------------------------------------------------------- cameras
    def start_camera(self, camera: CameraConfig) -> None:
        source = self.source_factory(camera)
        if self.metrics is not None:
            self.metrics.add_camera(camera.id)
        worker = CameraWorker(camera.id, source, self._ready, on_status=self._camera_status,
                              max_frames=self.max_frames,
                              backoff=Backoff(camera.reconnect_min_s, camera.reconnect_max_s))
        self.cameras[camera.id] = camera
        self.workers[camera.id] = worker
        if self.reader is not None:
            self.builders[camera.id] = PassageBuilder.from_config(
                self.config.for_camera(camera.id), camera.id, charset=self.reader.recognizer.charset,
                versions=self.versions, model_calibration=self.reader.recognizer.vote_calibration)
        worker.start()

    def stop_camera(self, camera_id: str, *, remove: bool = False) -> None:
        """Stop a camera's capture, process what it already delivered, and flush its open passages."""
        worker = self.workers.get(camera_id)
        if worker is None:
            return
        worker.stop()
        worker.join(timeout=2.0)
        self._process_round([camera_id])  # a frame still in the slot
        self._finish(camera_id)
        if remove:
            self.workers.pop(camera_id, None)
            self.cameras.pop(camera_id, None)
            self._reported.pop(camera_id, None)
            if self.live_view is not None:
                self.live_view.remove(camera_id)
            if self.metrics is not None:
                self.metrics.remove_camera(camera_id)
                self.metrics.remove_queue(f"camera:{camera_id}")

    def reload(self, config: AppConfig) -> None:
        """Apply a new config: cameras added, removed or changed are started/stopped/restarted; the others
        run on. Sections other than ``cameras`` need a restart (models, MQTT): say so."""
        if self.notifier is not None:
            self.notifier.reloading()
        old = {c.id: c for c in self.config.enabled_cameras}
        new = {c.id: c for c in config.enabled_cameras}
        changed_sections = [name for name in type(config).model_fields
                            if name != "cameras" and getattr(config, name) != getattr(self.config, name)]
        if changed_sections:
            log.warning("config reload: changes to %s take effect after a restart; cameras are reloaded now",
                        ", ".join(changed_sections))
        for camera_id in old.keys() - new.keys():
            log.info("config reload: camera '%s' removed", camera_id)
            self.stop_camera(camera_id, remove=True)
        for camera_id in sorted(old.keys() & new.keys()):
            if old[camera_id] != new[camera_id]:
                log.info("config reload: camera '%s' changed: restarting it", camera_id)
                self.stop_camera(camera_id, remove=True)
                self.start_camera(new[camera_id])
        # Keep the running sections; take the new camera list.
        self.config = self.config.model_copy(update={"cameras": config.cameras})
        for camera_id in sorted(new.keys() - old.keys()):
            log.info("config reload: camera '%s' added", camera_id)
            self.start_camera(new[camera_id])
        if self.notifier is not None:
            self.notifier.ready(self._status_line())

    # ------------------------------------------------------------------------------------ main loop
    def run(self, stop: threading.Event, reload_requested: Callable[[], AppConfig | None] | None = None) -> RunStats:
        """Process frames until every camera has finished (files) or ``stop`` is set, then drain."""
        for camera in self.config.enabled_cameras:
            self.start_camera(camera)
        self._state = "running"
        if self.notifier is not None:
            self.notifier.ready(self._status_line())
        try:
            while not stop.is_set():
                if reload_requested is not None:
                    new_config = reload_requested()
                    if new_config is not None:
                        self.reload(new_config)
                if not self._process_round():
                    if self.workers and all(w.finished for w in self.workers.values()):
                        break
                    with self._ready:
                        if not any(not w.slot.empty for w in self.workers.values()):
                            self._ready.wait(0.25)
                self._housekeeping()
        finally:
            self._state = "stopping"
            if self.notifier is not None:
                self.notifier.stopping()
            self._drain()
        return self.stats

    def _process_round(self, only: list[str] | None = None) -> bool:
        """Take the waiting frame of each camera, detect on all of them at once, read and track.
        Returns whether there was any frame."""
        with self._ready:
            frames = [f for camera_id, w in list(self.workers.items())
                      if (only is None or camera_id in only) and (f := w.slot.take()) is not None]
        if not frames:
            return False
        for frame in frames:
            self.stats.frames[frame.camera_id] += 1
        if self.reader is None:
            for frame in frames:
                self._processed(frame.camera_id)
                self._observe(frame)
            return True
        began = time.perf_counter()
        views = [self._detector_view(frame) for frame in frames]
        all_detections = detect_in_windows(self.reader.detector, [frame.image for frame in frames],
                                           [window for window, _ in views], [tiles for _, tiles in views])
        if self.metrics is not None:
            self.metrics.observe_stage("detector", time.perf_counter() - began)
        for frame, detections in zip(frames, all_detections):
            builder = self.builders.get(frame.camera_id)
            if builder is None:
                continue
            seen = detections
            detections = self._camera_filter(frame, detections)
            for event in _process(frame, self.reader, builder, self.stats, detections=detections, metrics=self.metrics):
                self._emit(frame.camera_id, event)
            self._processed(frame.camera_id)
            self._observe(frame, seen, detections, builder)
        if self.metrics is not None:
            self.metrics.observe_stage("end_to_end", (time.perf_counter() - began) / len(frames))
        return True

    def _detector_view(self, frame: Frame) -> tuple[Window, int]:
        """What the detector looks at in this frame: the camera's ROI window (or the whole frame) and how many
        tiles a side it is also cut into (1: none)."""
        camera = self.cameras.get(frame.camera_id)
        if camera is None:
            return roi_window(None, frame.image.shape), 1
        window = roi_window(camera.roi if camera.detect_in_roi else None, frame.image.shape, camera.detect_margin)
        return window, camera.detect_tiles

    def _camera_filter(self, frame: Frame, detections: Detections) -> Detections:
        """Keep the detections this camera wants: above its own threshold and centred in its ROI."""
        camera = self.cameras.get(frame.camera_id)
        if camera is None or not len(detections):
            return detections
        keep = np.ones(len(detections), bool)
        if camera.confidence is not None:
            keep &= detections.confidence >= camera.confidence
        elif self.reader is not None and self.reader.detector.confidence < self.config.models.detector.confidence:
            keep &= detections.confidence >= self.config.models.detector.confidence
        if camera.roi is not None:
            keep &= inside_roi(detections.xyxy, camera.roi, frame.image.shape[:2])
        return detections if keep.all() else detections[keep]

    def _observe(self, frame: Frame, seen: Detections | None = None, kept: Detections | None = None,
                 builder: PassageBuilder | None = None) -> None:
        """Hand the frame and what came of it to the live view (a reference swap; never fails the loop)."""
        if self.live_view is None:
            return
        try:
            ignored = None
            if seen is not None and kept is not None and len(kept) < len(seen):
                kept_boxes = {tuple(box) for box in kept.xyxy.tolist()}
                ignored = seen[np.array([tuple(box) not in kept_boxes for box in seen.xyxy.tolist()], bool)]
            self.live_view.update(frame, kept, builder.tracks if builder is not None else (),
                                  builder.votes if builder is not None else None,
                                  ignored=ignored, camera=self.cameras.get(frame.camera_id))
        except Exception:  # noqa: BLE001 - the page must never cost an event
            log.debug("live view update failed", exc_info=True)

    def _processed(self, camera_id: str) -> None:
        worker = self.workers.get(camera_id)
        if worker is not None:
            worker.frames_processed.tick()
        if self.metrics is not None:
            self.metrics.frame_processed(camera_id)

    def _emit(self, camera_id: str, event: PlateEvent) -> None:
        self.route(event)
        self.stats.events[camera_id] += 1
        if self.metrics is not None:
            self.metrics.event(camera_id)

    def _finish(self, camera_id: str) -> None:
        """A camera is done (ended, failed, stopped): flush its passages, log its summary."""
        builder = self.builders.pop(camera_id, None)
        if builder is not None:
            for event in builder.flush():
                self._emit(camera_id, event)
        worker = self.workers.get(camera_id)
        if worker is not None:
            _log_camera_summary(camera_id, worker.source, time.monotonic() - self._started)

    def _housekeeping(self) -> None:
        """Per loop: end the passages of cameras that lost their stream, flush cameras that finished, ping
        the watchdog, refresh status and gauges."""
        with self._lost_lock:
            lost, self._lost = self._lost, set()
        for camera_id in lost:
            builder = self.builders.get(camera_id)
            if builder is not None:
                # A reconnect takes seconds: whatever was in view has most likely left. Ending the passages
                # now reports them at once instead of merging them with the next car after the reconnect.
                self._process_round([camera_id])
                for event in builder.flush():
                    self._emit(camera_id, event)
        for camera_id, worker in list(self.workers.items()):
            if worker.finished and camera_id in self.builders:
                self._finish(camera_id)
        if self.notifier is not None:
            self.notifier.watchdog()
        now = time.monotonic()
        if now - self._last_status >= 5.0:
            self._last_status = now
            self._refresh_gauges()
            if self.notifier is not None:
                self.notifier.status(self._status_line())

    def _refresh_gauges(self) -> None:
        if self.metrics is None:
            return
        for camera_id, worker in self.workers.items():
            self.metrics.set_fps(camera_id, "input", worker.frames_in.rate())
            self.metrics.set_fps(camera_id, "processed", worker.frames_processed.rate())
            # Counters advance by what the capture side counted since the last refresh.
            source = worker.source.stats
            totals = {"read": source.frames_read, "stale": worker.slot.dropped + source.frames_dropped,
                      "fps_limit": source.frames_skipped}
            seen = self._reported.setdefault(camera_id, dict.fromkeys(totals, 0))
            if totals["read"] > seen["read"]:
                self.metrics.frame_read(camera_id, totals["read"] - seen["read"])
            for reason in ("stale", "fps_limit"):
                if totals[reason] > seen[reason]:
                    self.metrics.frames_dropped(camera_id, reason, totals[reason] - seen[reason])  # type: ignore[arg-type]
            self._reported[camera_id] = totals
            self.metrics.set_queue_depth(f"camera:{camera_id}", 0 if worker.slot.empty else 1)
        if self.publisher is not None:
            self.metrics.set_mqtt_connected(self.publisher.connected)
            self.metrics.set_outbox(len(self.publisher.outbox))

    def _drain(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        deadline = time.monotonic() + 3.0
        for worker in self.workers.values():
            worker.join(timeout=max(0.1, deadline - time.monotonic()))
        self._process_round()  # frames already captured
        for camera_id in list(self.workers):
            if camera_id in self.builders:
                try:
                    self._finish(camera_id)
                except AnprError as error:  # e.g. the outbox cannot store: say so, keep closing the rest
                    log.error("camera '%s': %s", camera_id, error)
        self.stats.failed_cameras = sum(w.state is CameraState.FAILED for w in self.workers.values())
        self._refresh_gauges()

    # ------------------------------------------------------------------------------------- status
    def _camera_status(self, worker: CameraWorker) -> None:
        """Called from capture threads on every state change."""
        camera_id = worker.camera_id
        if worker.state is CameraState.RECONNECTING:
            with self._lost_lock:
                self._lost.add(camera_id)
            with self._ready:
                self._ready.notify_all()
        if self.metrics is not None:
            self.metrics.camera_up(camera_id, worker.state is CameraState.STREAMING)
            if worker.state is CameraState.RECONNECTING:
                self.metrics.reconnected(camera_id)
        if self.publisher is not None:
            state = worker.state
            self.publisher.set_camera_status(
                camera_id, connected=state is CameraState.STREAMING,
                fps=worker.source.native_fps if state is CameraState.STREAMING else 0.0,
                last_error=worker.last_error, state=state.value, reconnects=worker.reconnects,
                source=str(worker.source.spec))

    def _status_line(self) -> str:
        streaming = sum(w.state is CameraState.STREAMING for w in self.workers.values())
        return (f"{streaming}/{len(self.workers)} cameras streaming, "
                f"{sum(self.stats.events.values())} events")

    def health(self) -> dict[str, Any]:
        """For ``/healthz``: ok when every camera streams (or ended normally) and MQTT, if used, is up."""
        now = time.monotonic()
        cameras = {}
        for camera_id, worker in self.workers.items():
            cameras[camera_id] = {
                "state": worker.state.value,
                "fps_in": round(worker.frames_in.rate(), 2),
                "fps_processed": round(worker.frames_processed.rate(), 2),
                "last_frame_age_s": None if worker.last_frame_at is None else round(now - worker.last_frame_at, 2),
                "reconnects": worker.reconnects,
                "dropped": worker.slot.dropped + worker.source.stats.frames_dropped,
                "last_error": worker.last_error,
            }
        degraded = any(c["state"] in ("reconnecting", "failed") for c in cameras.values())
        mqtt = None
        if self.publisher is not None:
            mqtt = {"connected": self.publisher.connected, "outbox": len(self.publisher.outbox)}
            degraded = degraded or not mqtt["connected"]
        status = self._state if self._state != "running" else ("degraded" if degraded else "ok")
        return {"status": status, "uptime_s": round(now - self._started, 1), "cameras": cameras, "mqtt": mqtt,
                "events": sum(self.stats.events.values())}


def run_cameras(
    config: AppConfig,
    reader: PlateReader | None,
    route: EventRouter,
    *,
    stop: threading.Event,
    max_frames: int | None = None,
    publisher: MqttPublisher | None = None,
) -> RunStats:
    """Run the configured cameras to the end (files) or until ``stop``; the simple entry point for tests."""
    return Service(config, reader, route, publisher=publisher, max_frames=max_frames).run(stop)


def _process(
    frame: Frame,
    reader: PlateReader,
    builder: PassageBuilder,
    stats: RunStats,
    *,
    detections: Detections | None = None,
    metrics: ServiceMetrics | None = None,
) -> list[PlateEvent]:
    """One frame of one camera: detect (unless done for a batch), read what needs reading, track."""
    if detections is None:
        (detections,) = reader.detector.detect([frame.image])
    needed = builder.reads_needed(detections, frame.index) if len(detections) else None
    reads = []
    if needed is not None and needed.any():
        wanted = detections[needed]
        began = time.perf_counter()
        reads = reader.read_detections(frame.image, wanted, camera_id=frame.camera_id, frame_index=frame.index)
        stats.ocr_reads += len(wanted)
        if metrics is not None:
            metrics.observe_stage("ocr", time.perf_counter() - began)
            metrics.ocr_read(frame.camera_id, len(wanted))
            cut = sum(read.at_frame_edge for read in reads)
            if cut:
                metrics.ocr_read_at_frame_edge(frame.camera_id, cut)
    if needed is not None:
        skipped = int((~needed).sum())
        stats.ocr_skipped += skipped
        if metrics is not None and skipped:
            metrics.ocr_skipped(frame.camera_id, skipped)
    return builder.update(frame, detections, reads)


def _log_camera_summary(camera_id: str, source: FrameSource, elapsed: float) -> None:
    stats = source.stats
    rate = stats.frames_read / elapsed if elapsed > 0 else 0.0
    log.info(
        "camera '%s': %d frames processed in %.1f s (%.1f fps), %d dropped (stale), %d skipped (fps limit)",
        camera_id, stats.frames_read, elapsed, rate, stats.frames_dropped, stats.frames_skipped,
    )
