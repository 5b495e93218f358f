"""ServiceMetrics: the metric names and labels the dashboards rely on, counting, histogram buckets,
removing a camera, the scrape-time callback, and no credentials in labels."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from anpr_edge import __version__
from anpr_edge.metrics import DROP_REASONS, STAGE_BUCKETS, ServiceMetrics

pytestmark = pytest.mark.timeout(30)


def samples(metrics: ServiceMetrics) -> dict[tuple[str, frozenset], float]:
    """Every sample of render(), parsed back: (name, labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(metrics.render().decode("utf-8")):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_every_metric_is_exposed_with_its_labels() -> None:
    m = ServiceMetrics(detector="plate_det.onnx", ocr="ocr.onnx")
    m.add_camera("cam1")
    m.set_queue_depth("inference", 2)
    text = m.render().decode()
    for line in (
        'anpr_frames_read_total{camera="cam1"} 0.0',
        'anpr_frames_processed_total{camera="cam1"} 0.0',
        'anpr_frames_dropped_total{camera="cam1",reason="stale"} 0.0',
        'anpr_frames_dropped_total{camera="cam1",reason="fps_limit"} 0.0',
        'anpr_frames_dropped_total{camera="cam1",reason="corrupt"} 0.0',
        'anpr_reconnects_total{camera="cam1"} 0.0',
        'anpr_events_total{camera="cam1"} 0.0',
        'anpr_ocr_reads_total{camera="cam1"} 0.0',
        'anpr_ocr_reads_at_frame_edge_total{camera="cam1"} 0.0',
        'anpr_ocr_skipped_total{camera="cam1"} 0.0',
        'anpr_camera_up{camera="cam1"} 0.0',
        'anpr_camera_fps{camera="cam1",kind="input"} 0.0',
        'anpr_camera_fps{camera="cam1",kind="processed"} 0.0',
        'anpr_queue_depth{queue="inference"} 2.0',
        "anpr_outbox_events 0.0",
        "anpr_mqtt_connected 0.0",
        f'anpr_build_info{{detector="plate_det.onnx",ocr="ocr.onnx",version="{__version__}"}} 1.0',
        'anpr_stage_seconds_count{stage="detector"} 0.0',
        'anpr_stage_seconds_count{stage="ocr"} 0.0',
        'anpr_stage_seconds_count{stage="end_to_end"} 0.0',
    ):
        assert line in text.splitlines(), line
    assert "# TYPE anpr_stage_seconds histogram" in text
    assert "# TYPE anpr_frames_read_total counter" in text or "# TYPE anpr_frames_read counter" in text
    # No _created series: they would double the series count for nothing a dashboard uses.
    assert "_created" not in text
    # Only our own metrics: no process_* or python_* collectors from prometheus_client's global registry.
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if not line.startswith("#")}
    assert all(name.startswith("anpr_") for name in names), names


def test_counters_and_gauges_follow_the_calls() -> None:
    m = ServiceMetrics()
    for _ in range(3):
        m.frame_read("cam1")
    m.frame_processed("cam1", 2)
    m.frames_dropped("cam1", "stale", 4)
    m.frames_dropped("cam1", "fps_limit", 0)  # nothing to count: no series made
    m.reconnected("cam1")
    m.event("cam1")
    m.ocr_read("cam1", 5)
    m.ocr_read_at_frame_edge("cam1", 2)
    m.ocr_skipped("cam1")
    m.camera_up("cam1", True)
    m.set_fps("cam1", "input", 7.9)
    m.set_fps("cam1", "processed", 5.0)
    m.set_outbox(12)
    m.set_mqtt_connected(True)
    assert value(m, "anpr_frames_read_total", camera="cam1") == 3
    assert value(m, "anpr_frames_processed_total", camera="cam1") == 2
    assert value(m, "anpr_frames_dropped_total", camera="cam1", reason="stale") == 4
    assert value(m, "anpr_frames_dropped_total", camera="cam1", reason="fps_limit") is None
    assert value(m, "anpr_reconnects_total", camera="cam1") == 1
    assert value(m, "anpr_events_total", camera="cam1") == 1
    assert value(m, "anpr_ocr_reads_total", camera="cam1") == 5
    assert value(m, "anpr_ocr_reads_at_frame_edge_total", camera="cam1") == 2
    assert value(m, "anpr_ocr_skipped_total", camera="cam1") == 1
    assert value(m, "anpr_camera_up", camera="cam1") == 1
    assert value(m, "anpr_camera_fps", camera="cam1", kind="input") == pytest.approx(7.9)
    assert value(m, "anpr_camera_fps", camera="cam1", kind="processed") == 5.0
    assert value(m, "anpr_outbox_events") == 12
    assert value(m, "anpr_mqtt_connected") == 1
    m.camera_up("cam1", False)
    m.set_mqtt_connected(False)
    assert value(m, "anpr_camera_up", camera="cam1") == 0
    assert value(m, "anpr_mqtt_connected") == 0


def test_stage_histogram_buckets_span_1ms_to_2s() -> None:
    assert STAGE_BUCKETS[0] == 0.001 and STAGE_BUCKETS[-1] == 2.0
    assert list(STAGE_BUCKETS) == sorted(STAGE_BUCKETS)
    m = ServiceMetrics()
    m.observe_stage("detector", 0.0005)
    m.observe_stage("detector", 0.04)
    m.observe_stage("detector", 5.0)
    with m.time_stage("ocr"):
        pass
    buckets = {labels: v for (name, labels), v in samples(m).items() if name == "anpr_stage_seconds_bucket"}
    detector = {dict(labels)["le"]: v for labels, v in buckets.items() if dict(labels)["stage"] == "detector"}
    assert set(detector) == {str(b) for b in STAGE_BUCKETS} | {"+Inf"}
    assert detector["0.001"] == 1 and detector["0.03"] == 1 and detector["0.05"] == 2
    assert detector["2.0"] == 2 and detector["+Inf"] == 3
    assert value(m, "anpr_stage_seconds_count", stage="detector") == 3
    assert value(m, "anpr_stage_seconds_sum", stage="detector") == pytest.approx(5.0405)
    assert value(m, "anpr_stage_seconds_count", stage="ocr") == 1


def test_unknown_label_values_are_refused() -> None:
    """Fixed label sets keep the series bounded and let remove_camera find every series."""
    m = ServiceMetrics()
    with pytest.raises(ValueError, match="drop reason"):
        m.frames_dropped("cam1", "oops", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stage"):
        m.observe_stage("tracker", 0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fps kind"):
        m.set_fps("cam1", "output", 1.0)  # type: ignore[arg-type]


def test_remove_camera_drops_all_its_series() -> None:
    m = ServiceMetrics()
    for camera in ("cam1", "cam2"):
        m.add_camera(camera)
        m.frame_read(camera)
        for reason in DROP_REASONS:
            m.frames_dropped(camera, reason)
        m.camera_up(camera, True)
        m.set_fps(camera, "input", 8.0)
    m.remove_camera("cam1")
    m.remove_camera("never-added")  # no error
    text = m.render().decode()
    assert 'camera="cam1"' not in text
    assert 'anpr_frames_read_total{camera="cam2"} 1.0' in text
    assert 'anpr_frames_dropped_total{camera="cam2",reason="corrupt"} 1.0' in text
    m.frame_read("cam1")  # a camera that comes back starts again from zero
    assert value(m, "anpr_frames_read_total", camera="cam1") == 1


def test_queues_and_build_info_can_be_replaced() -> None:
    m = ServiceMetrics(detector="a.onnx", ocr="b.onnx")
    m.set_queue_depth("inference", 3)
    m.remove_queue("inference")
    m.set_build_info(detector="c.onnx", ocr="b.onnx")
    text = m.render().decode()
    assert "anpr_queue_depth{" not in text
    assert 'detector="a.onnx"' not in text and 'detector="c.onnx"' in text


def test_registries_are_independent() -> None:
    a, b = ServiceMetrics(), ServiceMetrics()
    a.frame_read("cam1")
    assert value(a, "anpr_frames_read_total", camera="cam1") == 1
    assert value(b, "anpr_frames_read_total", camera="cam1") is None


def test_collect_callback_runs_before_each_scrape() -> None:
    m = ServiceMetrics()
    outbox = [7]
    calls = []

    def collect() -> None:
        calls.append(1)
        m.set_outbox(outbox[0])
        m.set_mqtt_connected(True)

    m.set_collect_callback(collect)
    first = samples(m)
    assert first[("anpr_outbox_events", frozenset())] == 7 and first[("anpr_mqtt_connected", frozenset())] == 1
    outbox[0] = 3
    assert value(m, "anpr_outbox_events") == 3
    assert len(calls) == 2  # once per scrape
    m.set_collect_callback(None)
    outbox[0] = 99
    assert value(m, "anpr_outbox_events") == 3


def test_a_failing_callback_does_not_break_the_scrape(caplog: pytest.LogCaptureFixture) -> None:
    m = ServiceMetrics()
    m.set_outbox(4)

    def broken() -> None:
        raise RuntimeError("outbox closed")

    m.set_collect_callback(broken)
    assert value(m, "anpr_outbox_events") == 4
    assert "collect callback failed" in caplog.text


def test_credentials_never_reach_a_label() -> None:
    """Camera labels are config ids, which cannot hold a URL; if a URL is passed anyway it is masked."""
    m = ServiceMetrics(detector="rtsp://user:secret@host/x", ocr="ocr.onnx")
    m.frame_read("rtsp://user:secret@cam.local/stream")
    m.set_queue_depth("http://admin:hunter2@nvr/q", 1)
    text = m.render().decode()
    assert "secret" not in text and "hunter2" not in text
    assert 'camera="rtsp://user:***@cam.local/stream"' in text
