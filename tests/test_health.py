"""HealthServer over real HTTP: /metrics, /healthz (200 / 503), 404, redaction, port in use, prompt stop."""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from anpr_edge.config import HttpConfig
from anpr_edge.errors import ConfigError
from anpr_edge.health import HealthServer
from anpr_edge.metrics import CONTENT_TYPE, ServiceMetrics

pytestmark = pytest.mark.timeout(30)


def get(url: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


@pytest.fixture
def health() -> dict[str, Any]:
    return {
        "status": "ok",
        "cameras": {"cam1": {"state": "streaming", "fps": 7.9, "last_frame_age_s": 0.1, "reconnects": 0,
                             "last_error": None}},
        "mqtt": {"connected": True, "outbox": 0},
        "uptime_s": 12.5,
    }


@pytest.fixture
def metrics() -> ServiceMetrics:
    m = ServiceMetrics(detector="plate_det.onnx", ocr="ocr.onnx")
    m.add_camera("cam1")
    m.frame_read("cam1")
    return m


@pytest.fixture
def server(metrics: ServiceMetrics, health: dict[str, Any]) -> Iterator[HealthServer]:
    s = HealthServer(metrics, lambda: health, port=0)
    s.start()
    yield s
    s.stop()


def test_binds_loopback_on_a_free_port(server: HealthServer) -> None:
    assert server.host == "127.0.0.1" and server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_metrics_page(server: HealthServer) -> None:
    status, content_type, body = get(server.url + "/metrics")
    assert status == 200
    assert content_type == CONTENT_TYPE and content_type.startswith("text/plain")
    assert 'anpr_frames_read_total{camera="cam1"} 1.0' in body.decode()


def test_metrics_scrape_runs_the_collect_callback(server: HealthServer, metrics: ServiceMetrics) -> None:
    metrics.set_collect_callback(lambda: metrics.set_outbox(42))
    assert "anpr_outbox_events 42.0" in get(server.url + "/metrics")[2].decode()


def test_healthz_ok_is_200(server: HealthServer, health: dict[str, Any]) -> None:
    status, content_type, body = get(server.url + "/healthz")
    assert status == 200 and content_type.startswith("application/json")
    assert json.loads(body) == health


@pytest.mark.parametrize("state", ["degraded", "starting", "stopping"])
def test_healthz_not_ok_is_503(server: HealthServer, health: dict[str, Any], state: str) -> None:
    health["status"] = state
    status, _, body = get(server.url + "/healthz?verbose=1")
    assert status == 503 and json.loads(body)["status"] == state


def test_healthz_when_health_fn_fails_is_503(metrics: ServiceMetrics) -> None:
    def broken() -> dict:
        raise RuntimeError("cannot open rtsp://admin:hunter2@10.0.0.5/live")

    with HealthServer(metrics, broken, port=0) as s:
        status, _, body = get(s.url + "/healthz")
    assert status == 503
    answer = json.loads(body)
    assert answer["status"] == "error" and "hunter2" not in answer["error"]
    assert "rtsp://admin:***@10.0.0.5/live" in answer["error"]


def test_healthz_strings_are_redacted(server: HealthServer, health: dict[str, Any]) -> None:
    health["cameras"]["cam1"]["last_error"] = "stream rtsp://user:secret@cam.local/x stalled"
    health["cameras"]["cam1"]["sources"] = ["rtsp://user:secret@cam.local/x"]
    health["uptime_s"] = float("nan")  # strict JSON has no NaN
    status, _, body = get(server.url + "/healthz")
    assert status == 200 and b"secret" not in body
    answer = json.loads(body)
    assert answer["cameras"]["cam1"]["last_error"] == "stream rtsp://user:***@cam.local/x stalled"
    assert answer["cameras"]["cam1"]["sources"] == ["rtsp://user:***@cam.local/x"]
    assert answer["uptime_s"] is None


@pytest.mark.parametrize("path", ["/", "/metrics/x", "/health", "/favicon.ico"])
def test_anything_else_is_404(server: HealthServer, path: str) -> None:
    assert get(server.url + path)[0] == 404


def test_requests_are_logged_at_debug_not_printed(
    server: HealthServer, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG, logger="anpr_edge.http")
    get(server.url + "/healthz")
    deadline = time.monotonic() + 2  # the handler thread logs after the response is sent
    while "GET /healthz" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    records = [r for r in caplog.records if "GET /healthz" in r.getMessage()]
    assert records and all(r.levelno == logging.DEBUG for r in records)
    captured = capsys.readouterr()
    assert "GET" not in captured.out and "GET" not in captured.err


def test_port_in_use_is_a_config_error_naming_http_port(metrics: ServiceMetrics) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=r"http\.port") as caught:
            HealthServer(metrics, lambda: {"status": "ok"}, port=port).start()
    assert str(port) in str(caught.value) and "in use" in str(caught.value)
    assert caught.value.exit_code == 2


def test_bad_host_is_a_config_error_naming_http_host(metrics: ServiceMetrics) -> None:
    with pytest.raises(ConfigError, match=r"http\.host"):
        HealthServer(metrics, lambda: {"status": "ok"}, host="192.0.2.1", port=0).start()  # TEST-NET-1


def test_stop_returns_promptly_and_frees_the_port(metrics: ServiceMetrics) -> None:
    s = HealthServer(metrics, lambda: {"status": "ok"}, port=0)
    s.start()
    port = s.port
    assert get(s.url + "/healthz")[0] == 200
    idle = socket.create_connection(("127.0.0.1", port))  # a client that never sends a request
    try:
        start = time.monotonic()
        s.stop()
        assert time.monotonic() - start < 1.0
    finally:
        idle.close()
    s.stop()  # twice is harmless
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    again = HealthServer(metrics, lambda: {"status": "ok"}, port=port)  # the port is free again
    again.start()
    again.stop()


def test_from_config(metrics: ServiceMetrics) -> None:
    s = HealthServer.from_config(HttpConfig(port=0), metrics, lambda: {"status": "ok"})
    assert s.host == "127.0.0.1"
    with s:
        assert get(s.url + "/healthz")[0] == 200
