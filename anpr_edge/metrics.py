"""Prometheus metrics of the running service, served at ``/metrics`` by ``anpr_edge.health``.

``ServiceMetrics`` owns its own ``CollectorRegistry`` rather than prometheus_client's global one, so a
test (or a config reload) can build as many as it likes without "duplicated timeseries" errors, and
nothing a third-party library registers globally ends up on our page.

The service calls small typed methods (``frame_read``, ``observe_stage``...) from its threads; each is a
dictionary lookup and an atomic add in prometheus_client, cheap enough for every frame. Values that live
elsewhere (outbox size, MQTT connection state) can instead be pulled when scraped, through
``set_collect_callback``.

Labels and credentials: the ``camera`` label is the camera *id* from the config, never its source URL.
Ids are validated by the config (letters, digits, ``_`` and ``-``, see ``CameraConfig.id``), so stream
credentials cannot reach a label; every free-form label value is still passed through ``redact_url``
(defence in depth: a label is published to whoever can scrape, and lives on in the time-series database).
The other labels come from fixed sets (``DROP_REASONS``, ``FPS_KINDS``, ``STAGES``), checked, so the
number of series stays bounded and ``remove_camera`` can delete all of a camera's series.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

from anpr_edge import __version__
from anpr_edge.redact import redact_url

log = logging.getLogger("anpr_edge.metrics")

DropReason = Literal["stale", "fps_limit", "corrupt"]
FpsKind = Literal["input", "processed"]
Stage = Literal["detector", "ocr", "end_to_end"]

DROP_REASONS: tuple[DropReason, ...] = ("stale", "fps_limit", "corrupt")
FPS_KINDS: tuple[FpsKind, ...] = ("input", "processed")
STAGES: tuple[Stage, ...] = ("detector", "ocr", "end_to_end")

# Edge inference spans three orders of magnitude: an OCR call on a GPU takes ~1-2 ms, a detector pass on
# a small ARM CPU a few hundred ms, and end to end includes waiting in the queue. Buckets every ~x2 from
# 1 ms to 2 s keep quantiles meaningful on both a Jetson and a CPU box with 15 series per stage.
STAGE_BUCKETS: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0,
)

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of ``ServiceMetrics.render()`` (the Prometheus text exposition format)."""


def _label(value: str) -> str:
    return redact_url(str(value))


def _check(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r} (expected one of: {', '.join(allowed)})")
    return value


class _WithoutCreated:
    """The registry's metrics less the ``*_created`` samples of counters and histograms.

    In the text format Prometheus stores each ``_created`` timestamp as one more series: on a box with a
    dozen cameras that would double the series count for a value no dashboard uses.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            if family.type in ("counter", "histogram"):
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class ServiceMetrics:
    """The service's counters, gauges and latency histograms, in a registry of their own."""

    def __init__(self, *, detector: str = "unknown", ocr: str = "unknown", version: str = __version__) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._frames_read = Counter(
            "anpr_frames_read", "Frames read from the camera's source.", ["camera"], registry=r
        )
        self._frames_processed = Counter(
            "anpr_frames_processed", "Frames that went through the detector.", ["camera"], registry=r
        )
        self._frames_dropped = Counter(
            "anpr_frames_dropped",
            "Frames read but not processed: stale (a newer frame replaced it), fps_limit (over the camera's "
            "fps_limit), corrupt (undecodable).",
            ["camera", "reason"],
            registry=r,
        )
        self._reconnects = Counter("anpr_reconnects", "Reconnects to the camera's source.", ["camera"], registry=r)
        self._events = Counter("anpr_events", "Plate events (vehicle passages) emitted.", ["camera"], registry=r)
        self._ocr_reads = Counter("anpr_ocr_reads", "Plate crops read by the OCR.", ["camera"], registry=r)
        self._ocr_reads_at_edge = Counter(
            "anpr_ocr_reads_at_frame_edge",
            "Plate crops read while the plate was cut by the frame's border (part of its text; they settle no "
            "vote). A large share of anpr_ocr_reads: the camera sees plates only as they enter or leave its view.",
            ["camera"],
            registry=r,
        )
        self._ocr_skipped = Counter(
            "anpr_ocr_skipped",
            "Plate crops not read because their track's vote was already settled (adaptive compute).",
            ["camera"],
            registry=r,
        )
        self._camera_up = Gauge(
            "anpr_camera_up", "1 while the camera's source delivers frames, else 0.", ["camera"], registry=r
        )
        self._camera_fps = Gauge(
            "anpr_camera_fps",
            "Frames per second: input (read from the source) or processed (through the detector).",
            ["camera", "kind"],
            registry=r,
        )
        self._queue_depth = Gauge("anpr_queue_depth", "Items waiting in an internal queue.", ["queue"], registry=r)
        self._outbox = Gauge("anpr_outbox_events", "Events in the MQTT outbox, not yet acknowledged.", registry=r)
        self._mqtt_connected = Gauge(
            "anpr_mqtt_connected", "1 while connected to the MQTT broker, else 0.", registry=r
        )
        self._build_info = Gauge(
            "anpr_build_info", "Always 1; the labels name the version and models.", ["version", "detector", "ocr"],
            registry=r,
        )
        self._stage_seconds = Histogram(
            "anpr_stage_seconds",
            "Latency per stage: detector and ocr (one inference call), end_to_end (frame read to its results).",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        for stage in STAGES:  # present (at zero) from the first scrape, so rate() works at once
            self._stage_seconds.labels(stage)
        self._build_labels: tuple[str, str, str] | None = None
        self.set_build_info(version=version, detector=detector, ocr=ocr)
        self._callback: Callable[[], None] | None = None
        self._render_lock = threading.Lock()
        self._exposed = _WithoutCreated(self.registry)

    # ------------------------------------------------------------------------------------ cameras
    def add_camera(self, camera: str) -> None:
        """Create a camera's series at zero (down), so dashboards and rate() see it before its first frame."""
        c = _label(camera)
        for counter in (self._frames_read, self._frames_processed, self._reconnects, self._events,
                        self._ocr_reads, self._ocr_reads_at_edge, self._ocr_skipped):
            counter.labels(c)
        for reason in DROP_REASONS:
            self._frames_dropped.labels(c, reason)
        for kind in FPS_KINDS:
            self._camera_fps.labels(c, kind).set(0)
        self._camera_up.labels(c).set(0)

    def remove_camera(self, camera: str) -> None:
        """Drop all of a camera's series (after a config reload removed it): no stale camera on dashboards."""
        c = _label(camera)
        for metric in (self._frames_read, self._frames_processed, self._reconnects, self._events,
                       self._ocr_reads, self._ocr_reads_at_edge, self._ocr_skipped, self._camera_up):
            with contextlib.suppress(KeyError):
                metric.remove(c)
        for reason in DROP_REASONS:
            with contextlib.suppress(KeyError):
                self._frames_dropped.remove(c, reason)
        for kind in FPS_KINDS:
            with contextlib.suppress(KeyError):
                self._camera_fps.remove(c, kind)

    def frame_read(self, camera: str, n: int = 1) -> None:
        self._frames_read.labels(_label(camera)).inc(n)

    def frame_processed(self, camera: str, n: int = 1) -> None:
        self._frames_processed.labels(_label(camera)).inc(n)

    def frames_dropped(self, camera: str, reason: DropReason, n: int = 1) -> None:
        """Count frames read but not processed; ``reason`` is one of ``DROP_REASONS`` (ValueError otherwise)."""
        if n:
            self._frames_dropped.labels(_label(camera), _check(reason, DROP_REASONS, "drop reason")).inc(n)

    def reconnected(self, camera: str) -> None:
        self._reconnects.labels(_label(camera)).inc()

    def camera_up(self, camera: str, up: bool) -> None:
        self._camera_up.labels(_label(camera)).set(1 if up else 0)

    def set_fps(self, camera: str, kind: FpsKind, value: float) -> None:
        """Set a rate the service measures itself (over its own window): ``kind`` is input or processed."""
        self._camera_fps.labels(_label(camera), _check(kind, FPS_KINDS, "fps kind")).set(value)

    def event(self, camera: str) -> None:
        self._events.labels(_label(camera)).inc()

    def ocr_read(self, camera: str, n: int = 1) -> None:
        self._ocr_reads.labels(_label(camera)).inc(n)

    def ocr_read_at_frame_edge(self, camera: str, n: int = 1) -> None:
        self._ocr_reads_at_edge.labels(_label(camera)).inc(n)

    def ocr_skipped(self, camera: str, n: int = 1) -> None:
        self._ocr_skipped.labels(_label(camera)).inc(n)

    # ---------------------------------------------------------------------------------- pipeline
    def observe_stage(self, stage: Stage, seconds: float) -> None:
        """Record one latency of ``stage`` (detector, ocr or end_to_end), in seconds."""
        self._stage_seconds.labels(_check(stage, STAGES, "stage")).observe(seconds)

    @contextlib.contextmanager
    def time_stage(self, stage: Stage) -> Iterator[None]:
        """``with metrics.time_stage("detector"): ...`` observes the block's duration (monotonic clock)."""
        _check(stage, STAGES, "stage")
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe_stage(stage, time.perf_counter() - start)

    def set_queue_depth(self, queue: str, n: int) -> None:
        """Items waiting in the named queue (a name the service chooses, e.g. ``inference``)."""
        self._queue_depth.labels(_label(queue)).set(n)

    def remove_queue(self, queue: str) -> None:
        with contextlib.suppress(KeyError):
            self._queue_depth.remove(_label(queue))

    # ---------------------------------------------------------------------------------- outputs
    def set_outbox(self, n: int) -> None:
        self._outbox.set(n)

    def set_mqtt_connected(self, connected: bool) -> None:
        self._mqtt_connected.set(1 if connected else 0)

    def set_build_info(self, *, version: str = __version__, detector: str, ocr: str) -> None:
        """Name the running version and models (e.g. the model files' names); replaces earlier values."""
        labels = (_label(version), _label(detector), _label(ocr))
        if self._build_labels is not None and self._build_labels != labels:
            self._build_info.remove(*self._build_labels)
        self._build_info.labels(*labels).set(1)
        self._build_labels = labels

    # ---------------------------------------------------------------------------------- scraping
    def set_collect_callback(self, fn: Callable[[], None] | None) -> None:
        """Run ``fn()`` just before each scrape, to pull values kept elsewhere (outbox size, MQTT state).

        A callback that raises is logged and the scrape goes on with the last values: a broken gauge must
        not take the other metrics down with it.
        """
        self._callback = fn

    def render(self) -> bytes:
        """The metrics in the Prometheus text format (``CONTENT_TYPE``), after the collect callback."""
        with self._render_lock:  # concurrent scrapes: one callback at a time, each sees its own values
            callback = self._callback
            if callback is not None:
                try:
                    callback()
                except Exception:
                    log.warning("metrics collect callback failed; serving the last values", exc_info=True)
            return generate_latest(self._exposed)  # type: ignore[arg-type]  # any object with collect()
