"""The installer's web page: the recent-events store, the live view, the HTTP routes and their
authentication, and end to end: the daemon on a clip, the page in headless Chromium (Debian's
``chromium`` driven by ``playwright``; skipped with the reason when either is missing)."""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from servers import free_port
from test_cli import REPO
from tiny_models import constant_detector

from anpr_edge.config import CameraConfig, HttpConfig, parse_config
from anpr_edge.event_store import EventStore, normalise_plate
from anpr_edge.events import format_time
from anpr_edge.health import HealthServer, WebOptions
from anpr_edge.live_view import LiveView, render
from anpr_edge.metrics import ServiceMetrics
from anpr_edge.values import Detections, Frame

pytestmark = pytest.mark.timeout(60)

CHROMIUM = os.environ.get("ANPR_EDGE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-background-networking"]
PLATE = "AB123CD"
TOKEN = "web-test-token-0123456789"


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[dev]')"
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


# ------------------------------------------------------------------------------------------ helpers
def jpeg(colour: int = 200, size: tuple[int, int] = (64, 20)) -> bytes:
    ok, data = cv2.imencode(".jpg", np.full((size[1], size[0], 3), colour, np.uint8))
    assert ok
    return data.tobytes()


def payload(event_id: str, text: str | None, *, camera: str = "gate", end: float = 1_700_000_000.0,
            crop: bytes | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "schema": 1, "type": "plate", "id": event_id, "device": "box", "camera": camera, "seq": 1,
        "start": format_time(end - 1), "end": format_time(end), "text": text, "text_hash": None,
        "reason": None if text else "unreadable", "confidence": 0.9, "char_confidences": [],
        "candidates": [], "reads": 3, "box": [1.0, 2.0, 3.0, 4.0], "direction": "in", "angle": 90.0,
        "plate_format": None, "matched": None, "crop_jpeg": None if crop is None else base64.b64encode(crop).decode(),
        "crop_path": None, "snapshot_jpeg": None, "versions": {}, "replayed": False, **extra,
    }


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def request(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310 - a local test server
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def constant_ocr(path: Path, text: str, charset: str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") -> Path:
    """An OCR that reads ``text`` in every crop (project OCR contract, confident softmax rows)."""
    steps = len(text) + 1
    probs = np.full((steps, len(charset) + 1), 0.001, np.float32)
    for i, char in enumerate(text):
        probs[i, 1 + charset.index(char)] = 1.0
    probs[len(text), 0] = 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    crops = helper.make_tensor_value_info("crops", TensorProto.FLOAT, ["batch", 3, 32, 128])
    output = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", steps, len(charset) + 1])
    nodes = [
        helper.make_node("ReduceSum", ["crops", "axes"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["zeros"]),
        helper.make_node("Reshape", ["zeros", "shape"], ["zeros3"]),
        helper.make_node("Add", ["zeros3", "table"], ["probs"]),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape"),
        numpy_helper.from_array(probs[None], "table"),
    ]
    model = helper.make_model(helper.make_graph(nodes, "constant_ocr", [crops], [output], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "charset", charset
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# -------------------------------------------------------------------------------------- event store
def test_store_search_by_normalised_substring_since_and_camera(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.sqlite") as store:
        store.add(payload("e1", "AB123CD", end=1000.0, crop=jpeg()))
        store.add(payload("e2", "XY987ZZ", end=2000.0, camera="yard"))
        store.add(payload("e3", None, end=3000.0))
        assert len(store) == 3
        assert [e["id"] for e in store.search()] == ["e3", "e2", "e1"]  # newest first
        assert [e["id"] for e in store.search("ab-12 3")] == ["e1"]  # normalised, substring
        assert [e["id"] for e in store.search("123cd")] == ["e1"]
        assert store.search("zz9") == [] and store.search("--") == []
        assert [e["id"] for e in store.search(since=2000.0)] == ["e3", "e2"]
        assert [e["id"] for e in store.search(since=1000.0, until=3000.0)] == ["e2", "e1"]
        assert [e["id"] for e in store.search(camera="yard")] == ["e2"]
        assert [e["id"] for e in store.search(limit=1)] == ["e3"]
        first = store.get("e1")
        assert first is not None and first["text"] == "AB123CD" and first["has_crop"]
        assert first["crop_jpeg"] is None  # images are kept apart from the JSON
        assert store.crop("e1") == jpeg() and store.crop("e2") is None and store.crop("nope") is None
        assert store.counts_by_camera() == {"gate": 2, "yard": 1}
    assert normalise_plate(" ab-123 cd ") == "AB123CD"


def test_store_retention_by_count_and_age(tmp_path: Path) -> None:
    clock = Clock()
    with EventStore(tmp_path / "events.sqlite", max_events=3, max_age_s=60.0, clock=clock) as store:
        for n in range(5):
            store.add(payload(f"e{n}", f"AA{n}", end=1000.0 + n))
            clock.now += 1
        assert [e["id"] for e in store.search()] == ["e4", "e3", "e2"]
        clock.now += 57.5  # e2 was stored 60.5 s ago, e3 59.5 s, e4 58.5 s
        assert store.prune() == 1
        assert [e["id"] for e in store.search()] == ["e4", "e3"]
        clock.now += 100
        store.add(payload("late", "BB1", end=5000.0))  # adding prunes too
        assert [e["id"] for e in store.search()] == ["late"]
    with EventStore(tmp_path / "events.sqlite", max_events=3, max_age_s=1e9, clock=clock) as again:
        assert [e["id"] for e in again.search()] == ["late"]  # kept across a restart


def test_store_crop_file_replay_and_failures(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    crop_file = tmp_path / "crop.jpg"
    crop_file.write_bytes(jpeg(90))
    with EventStore(tmp_path / "events.sqlite") as store:
        store.add(payload("f1", "CD45", crop_path=str(crop_file)))
        assert store.crop("f1") == jpeg(90)
        store.add(payload("f1", "CD45", replayed=True))  # the same event again (a replay): one row
        assert len(store) == 1
        assert store.add(payload("f2", "EF", crop_path=str(tmp_path / "missing.jpg")))  # no crop, still stored
        assert store.crop("f2") is None
        assert not store.add({"no": "id"})  # never raises into the event path
        assert "not stored" in caplog.text
    assert not store.add(payload("f3", "GH"))  # closed: ignored
    assert store.search() == [] and store.crop("f1") is None and len(store) == 0
    with EventStore(":memory:", max_events=0) as off:
        assert not off.add(payload("x", "AB")) and len(off) == 0


def test_store_is_thread_safe(tmp_path: Path) -> None:
    with EventStore(tmp_path / "events.sqlite", max_events=150) as store:
        def writer(k: int) -> None:
            for n in range(50):
                assert store.add(payload(f"t{k}-{n}", f"AB{k}{n}", end=1000.0 + n, crop=jpeg()))

        def reader() -> None:
            for _ in range(50):
                store.search("AB")
                store.crop("t0-0")

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)] + \
                  [threading.Thread(target=reader) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert len(store) == 150


# --------------------------------------------------------------------------------------- live view
class FakeTrack:
    def __init__(self, track_id: int, box: tuple[float, ...], *, seen: bool = True, confirmed: bool = True) -> None:
        self.id, self.box, self.predicted_box = track_id, box, box
        self.detection = 0 if seen else None
        self.confirmed = confirmed


class FakeVote:
    def __init__(self, text: str, confidence: float) -> None:
        self.text, self.confidence = text, confidence


def scene(width: int = 1280, height: int = 720) -> np.ndarray:
    return np.full((height, width, 3), 120, np.uint8)


def test_live_view_renders_overlays_scaled_and_rate_limited() -> None:
    clock = Clock(100.0)
    view = LiveView(max_fps=2.0, max_width=640, clock=clock)
    assert view.jpeg("gate") is None  # no frame yet (and the camera is now watched)
    camera = CameraConfig.model_validate({
        "id": "gate", "source": "demo", "roi": [[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]],
        "counting_line": {"start": [0.0, 0.9], "end": [1.0, 0.9]}})
    detections = Detections(np.array([[500, 300, 700, 360]], np.float32), np.array([0.9], np.float32))
    ignored = Detections(np.array([[20, 20, 100, 50]], np.float32), np.array([0.8], np.float32))
    asked = []

    def votes() -> dict[int, FakeVote]:
        asked.append(1)
        return {7: FakeVote(PLATE, 0.97)}

    view.update(Frame("gate", 5, 1_700_000_000.0, scene()), detections, [FakeTrack(7, (500, 300, 700, 360))], votes,
                ignored=ignored, camera=camera)
    assert asked == [1]  # watched: the votes were taken
    data = view.jpeg("gate")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)  # scaled to max_width, aspect kept
    assert image[20, 20].mean() < 80 < image[180, 240].mean()  # outside the ROI dimmed, inside not
    # The detector's window (ROI bounding box + 10% of the frame: x 192-1088, y 108-612) is drawn, at half size.
    assert image[54, 300].max() > 150 and image[40, 300].max() < 80
    assert image[180, 320][1] > 150  # the green track box's left edge (frame x=500 -> 250)... or near it
    info = view.info("gate")
    assert info["width"] == 1280 and info["index"] == 5
    assert info["tracks"] == [{"id": 7, "box": [500.0, 300.0, 700.0, 360.0], "confirmed": True, "seen": True,
                               "text": PLATE, "confidence": 0.97}]

    view.update(Frame("gate", 6, 1_700_000_000.1, scene()), detections, [], votes, camera=camera)
    assert view.jpeg("gate") == data  # within 1 / max_fps: the cached JPEG
    clock.now += 0.6
    assert view.jpeg("gate") != data  # a newer frame after the interval: rendered again
    clock.now += 60
    view.update(Frame("gate", 7, 1_700_000_000.2, scene()), detections, [], votes, camera=camera)
    assert len(asked) == 2  # frame 6 was watched; frame 7 comes after the watch expired: no votes asked


def test_live_view_update_never_waits_for_a_render() -> None:
    view = LiveView()
    frame = Frame("gate", 1, time.time(), scene())
    view.update(frame)
    view.jpeg("gate")
    entry = view._cameras["gate"]
    with entry.render_lock:  # a render in progress in another thread
        started = time.perf_counter()
        for n in range(100):
            view.update(Frame("gate", n, time.time(), scene()))
        assert time.perf_counter() - started < 0.5
    assert view.info("gate")["index"] == 99


def test_render_handles_gray_frames_dashed_and_tentative_tracks() -> None:
    view = LiveView()
    gray = np.full((100, 200), 50, np.uint8)
    view.update(Frame("c", 1, 0.0, gray), None, [FakeTrack(1, (10, 10, 60, 30), seen=False),
                                                 FakeTrack(2, (80, 10, 150, 40), confirmed=False)], None)
    snapshot = view._cameras["c"].snapshot
    assert render(snapshot).shape == (100, 200, 3)


# ----------------------------------------------------------------------------------- HTTP routes
@pytest.fixture
def store(tmp_path: Path) -> Iterator[EventStore]:
    with EventStore(tmp_path / "events.sqlite") as s:
        s.add(payload("11111111-aaaa", PLATE, end=time.time() - 10, crop=jpeg()))
        s.add(payload("22222222-bbbb", "ZZ999", end=time.time() - 5000, camera="yard"))
        yield s


def cameras_fn() -> list[dict[str, Any]]:
    return [{"id": "gate", "source": "rtsp://admin:hunter2@10.0.0.5/live", "state": "streaming",
             "last_error": "cannot open rtsp://admin:hunter2@10.0.0.5/live", "frame_url": "/api/cameras/gate/frame.jpg"}]


def web_server(store: EventStore | None, **options: Any) -> HealthServer:
    view = LiveView()
    view.update(Frame("gate", 1, time.time(), scene(320, 180)))
    web = WebOptions(cameras_fn, live_view=view, events=store, device_id="box-1", **options)
    return HealthServer(ServiceMetrics(), lambda: {"status": "ok", "cameras": {}}, port=0, web=web)


def test_page_api_and_images_without_auth_on_loopback(store: EventStore) -> None:
    with web_server(store) as server:
        status, headers, body = request(server.url + "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
        assert b'src="/static/app.js"' in body and b"http" not in body.replace(b"http.", b"")  # no other host
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
            status, headers, _ = request(server.url + "/static/" + name)
            assert status == 200 and headers["Content-Type"].startswith(kind)
        assert request(server.url + "/static/../health.py")[0] == 404
        assert request(server.url + "/static/nothing.js")[0] == 404

        status, _, body = request(server.url + "/api/cameras")
        answer = json.loads(body)
        assert status == 200 and answer["device"] == "box-1" and answer["cameras"][0]["id"] == "gate"
        assert b"hunter2" not in body and "admin:***@" in answer["cameras"][0]["source"]

        status, _, body = request(server.url + "/api/events")
        answer = json.loads(body)
        assert [e["id"] for e in answer["events"]] == ["11111111-aaaa", "22222222-bbbb"]
        assert answer["events"][0]["crop_url"] == "/api/events/11111111-aaaa/crop.jpg"
        assert answer["events"][1]["crop_url"] is None and "crop_jpeg" not in answer["events"][0]
        found = json.loads(request(server.url + "/api/events?plate=b12&since=" + str(time.time() - 60))[2])
        assert [e["id"] for e in found["events"]] == ["11111111-aaaa"] and found["plate"] == "B12"
        iso = format_time(time.time() - 60)
        assert json.loads(request(server.url + "/api/events?since=" + iso)[2])["count"] == 1
        assert json.loads(request(server.url + "/api/events?camera=yard")[2])["count"] == 1
        assert request(server.url + "/api/events?since=yesterday")[0] == 400
        assert request(server.url + "/api/events?limit=0")[0] == 400

        assert json.loads(request(server.url + "/api/events/11111111-aaaa")[2])["text"] == PLATE
        status, headers, body = request(server.url + "/api/events/11111111-aaaa/crop.jpg")
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and body == jpeg()
        assert request(server.url + "/api/events/22222222-bbbb/crop.jpg")[0] == 404
        assert request(server.url + "/api/events/nope")[0] == 404

        status, headers, body = request(server.url + "/api/cameras/gate/frame.jpg")
        assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
        assert request(server.url + "/api/cameras/other/frame.jpg")[0] == 404
        assert request(server.url + "/api/nothing")[0] == 404
        assert request(server.url + "/healthz")[0] == 200 and request(server.url + "/metrics")[0] == 200


def test_token_auth(store: EventStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="anpr_edge.http")
    with web_server(store, token=TOKEN) as server:
        for path in ("/", "/api/cameras", "/api/events", "/api/events/11111111-aaaa/crop.jpg",
                     "/api/cameras/gate/frame.jpg"):
            status, headers, body = request(server.url + path)
            assert status == 401, path
            assert headers["WWW-Authenticate"].startswith("Bearer")
            assert request(server.url + path, {"Authorization": "Bearer wrong-token-000"})[0] == 401
            assert request(server.url + path + "?token=wrong-token-000")[0] == 401
            assert request(server.url + path, {"Authorization": f"Bearer {TOKEN}"})[0] == 200, path
            assert request(server.url + path + f"?token={TOKEN}")[0] == 200, path
        assert b"<form" in request(server.url + "/")[2]  # the page asks for the token
        # The page's files and health/metrics are not behind the token (no data / unchanged behaviour).
        assert request(server.url + "/static/app.js")[0] == 200
        assert request(server.url + "/healthz")[0] == 200 and request(server.url + "/metrics")[0] == 200
        assert request(server.url + "/", {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()})[0] == 401
    time.sleep(0.2)  # handler threads log after answering
    assert TOKEN not in caplog.text and "token=***" in caplog.text


def test_basic_auth(store: EventStore) -> None:
    with web_server(store, username="installer", password="correct horse") as server:
        status, headers, _ = request(server.url + "/api/cameras")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")

        def basic(user: str, password: str) -> dict[str, str]:
            return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

        assert request(server.url + "/api/cameras", basic("installer", "correct horse"))[0] == 200
        assert request(server.url + "/api/cameras", basic("installer", "wrong"))[0] == 401
        assert request(server.url + "/api/cameras", basic("someone", "correct horse"))[0] == 401
        assert request(server.url + "/api/cameras", {"Authorization": "Basic !!!"})[0] == 401


def test_not_allowed_answers_403_but_health_and_metrics_work(store: EventStore) -> None:
    with web_server(store, allowed=False) as server:
        assert request(server.url + "/")[0] == 403
        status, _, body = request(server.url + "/api/events")
        assert status == 403 and "http.token" in json.loads(body)["error"]
        assert request(server.url + "/healthz")[0] == 200 and request(server.url + "/metrics")[0] == 200


def test_server_closes_its_store(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    server = web_server(store)
    server.start()
    server.stop()
    assert not store.add(payload("late", "AB12"))  # closed with the server


def test_without_web_options_only_health_and_metrics() -> None:
    with HealthServer(ServiceMetrics(), lambda: {"status": "ok"}, port=0) as server:
        for path in ("/", "/api/cameras", "/static/app.js"):
            assert request(server.url + path)[0] == 404
        assert request(server.url + "/healthz")[0] == 200


class StubRouter:
    def __init__(self) -> None:
        self.sinks: list[Any] = []


class StubService:
    """What ``web_for_service`` and ``service_cameras`` use of a ``Service``."""

    def __init__(self) -> None:
        self.route, self.live_view = StubRouter(), None
        self.cameras = {"gate": CameraConfig.model_validate({
            "id": "gate", "source": "rtsp://u:pw-secret@cam/x", "counting_line": {"start": [0, 0.5], "end": [1, 0.5]}})}

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "cameras": {"gate": {"state": "streaming", "fps_in": 8.0, "reconnects": 2,
                                                     "last_error": "rtsp://u:pw-secret@cam/x stalled"}}}


def test_web_for_service_wires_live_view_and_store(tmp_path: Path) -> None:
    from anpr_edge.health import service_cameras, web_for_service

    config = parse_config({"cameras": [{"id": "a", "source": "demo"}],
                           "http": {"events_path": str(tmp_path / "ev.sqlite"), "events_keep": 5}})
    service = StubService()
    web = web_for_service(config, service)
    assert web.allowed and not web.authenticated and isinstance(service.live_view, LiveView)
    assert service.route.sinks == [web.events.add]
    service.route.sinks[0](payload("e1", "AB12"))
    assert len(web.events) == 1
    (camera,) = service_cameras(service, web.live_view, web.events)
    assert camera["connected"] and camera["reconnects"] == 2 and camera["recent_events"] == 1
    assert camera["source"] == "rtsp://u:***@cam/x" and camera["counting_line"]["in_side"] == "right"
    assert camera["frame"] is None  # no frame processed yet
    web.events.close()

    closed = parse_config({"cameras": [{"id": "a", "source": "demo"}], "http": {"host": "0.0.0.0"}})
    other = StubService()
    web = web_for_service(closed, other)
    assert not web.allowed and other.live_view is None and other.route.sinks == []
    off = parse_config({"cameras": [{"id": "a", "source": "demo"}], "http": {"events_keep": 0}})
    assert web_for_service(off, StubService()).events is None


# ------------------------------------------------------------------------------------------ config
def test_http_config_auth_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"cameras": [{"id": "a", "source": "demo"}]}
    config = parse_config({**base, "http": {"host": "0.0.0.0", "token": TOKEN, "events_keep": 10}})
    assert config.http.effective_token() == TOKEN and config.http.web_allowed and not config.http.loopback
    assert TOKEN not in repr(config.http)
    assert not HttpConfig(host="0.0.0.0").web_allowed and not HttpConfig(host="box.lan").web_allowed
    assert HttpConfig().web_allowed and HttpConfig(host="::1").loopback and HttpConfig(host="localhost").loopback
    assert HttpConfig(host="0.0.0.0", username="u", password="long enough").web_allowed
    for http, message in (({"token": "short"}, "http.token: must be at least 8 characters"),
                          ({"token": 12345}, "http.token: must be at least 8 characters"),
                          ({"username": "u"}, "http: username needs password"),
                          ({"password": "long enough"}, "password needs username"),
                          ({"events_keep": -1}, "http.events_keep")):
        with pytest.raises(Exception, match=message.replace(".", r"\.")) as caught:
            parse_config({**base, "http": http})
        assert "12345" not in str(caught.value)
    monkeypatch.setenv("ANPR_EDGE_HTTP_TOKEN", "from-the-environment")
    monkeypatch.setenv("ANPR_EDGE_HTTP_PASSWORD", "from-the-environment")
    assert HttpConfig(host="0.0.0.0").effective_token() == "from-the-environment"
    assert HttpConfig(username="u").effective_password() == "from-the-environment"


# -------------------------------------------------------------------------------------- end to end
def make_plate_clip(path: Path, frames: int = 50) -> Path:
    """A 640x360 clip with a plate where the constant detector puts its box (centre 320,180, 200x100)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 360))
    for n in range(frames):
        image = np.full((360, 640, 3), (90, 110, 100), np.uint8)
        cv2.rectangle(image, (0, 250), (640, 360), (70, 70, 70), -1)
        cv2.rectangle(image, (205, 120 + n % 3), (435, 245 + n % 3), (40, 40, 160), -1)  # a car
        cv2.rectangle(image, (225, 150), (415, 210), (240, 240, 240), -1)
        cv2.putText(image, PLATE, (235, 193), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (20, 20, 20), 3)
        writer.write(image)
    writer.release()
    return path


@pytest.fixture(scope="module")
def web_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("web-models")
    return {"detector": constant_detector(folder / "det.onnx", np.array([[32, 32, 20, 10, 0.9]], np.float32)),
            "ocr": constant_ocr(folder / "ocr.onnx", PLATE)}


def wait_until(predicate, timeout: float, what: str):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.mark.slow
@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
def test_page_in_chromium(tmp_path: Path, web_models: dict[str, Path]) -> None:
    """The daemon runs on a clip; the page shows the camera online with its live view, the event appears,
    the search finds it (and nothing for another plate), the API says the same, a wrong token gets 401,
    credentials and other hosts never show up."""
    from playwright.sync_api import expect, sync_playwright

    clip = make_plate_clip(tmp_path / "gate.mp4")
    port, dead_port = free_port(), free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"device_id: web-box\n"
        f"models:\n  detector: {{path: {web_models['detector']}}}\n  ocr: {{path: {web_models['ocr']}}}\n"
        f"inference: {{threads: 1}}\n"
        f"http: {{port: {port}, token: {TOKEN}, events_path: {tmp_path / 'events.sqlite'}, events_keep: 100}}\n"
        "cameras:\n"
        f"  - id: gate\n    source: {clip}\n    loop: true\n    realtime: true\n"
        "    roi: [[0.1, 0.1], [0.9, 0.1], [0.9, 0.95], [0.1, 0.95]]\n"
        "    counting_line: {start: [0.0, 0.8], end: [1.0, 0.8], in_side: right}\n"
        f"  - id: yard\n    source: rtsp://admin:s3cret-pass@127.0.0.1:{dead_port}/stream\n"
        "    open_timeout_s: 1\n    reconnect_min_s: 0.5\n    reconnect_max_s: 1\n"
    )
    env = {**os.environ, "ANPR_EDGE_STATE_DIR": str(tmp_path / "state")}
    stderr_file = (tmp_path / "daemon.log").open("w+b")
    daemon = subprocess.Popen([sys.executable, "-m", "anpr_edge", "run", "--config", str(config)], cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=stderr_file, env=env)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    def api(path: str) -> Any:
        status, _, body = request(base + path, auth)
        assert status == 200, (path, status, body)
        return json.loads(body)

    try:
        wait_until(lambda: _up(base), 30, "the daemon's HTTP server")
        events = wait_until(lambda: api(f"/api/events?plate={PLATE}")["events"], 20, "the event in the API")
        assert events[0]["text"] == PLATE and events[0]["camera"] == "gate" and events[0]["crop_url"]

        # Authentication: none, or a wrong token: 401; the right one: 200.
        assert request(base + "/api/cameras")[0] == 401
        assert request(base + "/api/events", {"Authorization": "Bearer not-the-token"})[0] == 401
        assert request(base + "/?token=not-the-token")[0] == 401

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                requested: list[str] = []
                page.on("request", lambda r: requested.append(r.url))
                denied = page.goto(base + "/?token=not-the-token")
                assert denied is not None and denied.status == 401
                assert page.goto(base + f"/?token={TOKEN}").status == 200
                assert "token=" not in page.url  # taken out of the address bar

                gate = page.locator('[data-testid="camera"][data-camera="gate"]')
                expect(gate.locator('[data-testid="camera-state"]')).to_have_text("online", timeout=15_000)
                frame = gate.locator('[data-testid="camera-frame"]')
                page.wait_for_function(
                    "() => { const i = document.querySelector('[data-camera=gate] img.frame');"
                    " return i && !i.hidden && i.complete && i.naturalWidth === 640; }", timeout=15_000)
                assert frame.is_visible()
                expect(gate.locator('[data-testid="camera-tracks"]')).to_contain_text(PLATE, timeout=10_000)
                yard = page.locator('[data-testid="camera"][data-camera="yard"]')
                expect(yard.locator('[data-testid="camera-state"]')).not_to_have_text("online", timeout=10_000)
                expect(yard).to_contain_text("admin:***@127.0.0.1")

                rows = page.locator('[data-testid="event"]')
                expect(rows.filter(has_text=PLATE).first).to_be_visible(timeout=15_000)
                crop = rows.filter(has_text=PLATE).first.locator("img.crop")
                page.wait_for_function(
                    "() => { const i = document.querySelector('[data-testid=event] img.crop');"
                    " return i && i.complete && i.naturalWidth > 0; }", timeout=10_000)
                assert crop.is_visible()

                page.fill('[data-testid="search-input"]', "b12-3c")
                expect(page.locator('[data-testid="events-status"]')).to_contain_text("matching B123C", timeout=5_000)
                expect(rows).not_to_have_count(0)
                texts = rows.locator('[data-testid="event-text"]').all_inner_texts()
                assert texts and all(text == PLATE for text in texts)
                page_ids = [rows.nth(i).get_attribute("data-id") for i in range(rows.count())]
                assert page_ids == [e["id"] for e in api("/api/events?plate=b12-3c&limit=100")["events"]]
                page.screenshot(path=str(tmp_path / "web.png"), full_page=True)

                page.fill('[data-testid="search-input"]', "ZZZ999")
                expect(page.locator('[data-testid="events-status"]')).to_contain_text("0 events matching ZZZ999",
                                                                                       timeout=5_000)
                expect(rows).to_have_count(0)

                assert "s3cret" not in page.content()
                assert TOKEN not in page.inner_text("body")  # only in image URLs (?token=), never shown
                assert all(url.startswith((base + "/", "data:")) for url in requested), \
                    [u for u in requested if not u.startswith(base)]
            finally:
                browser.close()
        assert (tmp_path / "web.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("ANPR_EDGE_SCREENSHOT_DIR"):
            shutil.copy(tmp_path / "web.png", Path(os.environ["ANPR_EDGE_SCREENSHOT_DIR"]) / "web.png")

        cameras = {c["id"]: c for c in api("/api/cameras")["cameras"]}
        assert cameras["gate"]["connected"] and cameras["gate"]["state"] == "streaming"
        assert cameras["gate"]["counting_line"]["in_side"] == "right" and len(cameras["gate"]["roi"]) == 4
        assert cameras["gate"]["frame"]["width"] == 640
        assert not cameras["yard"]["connected"] and cameras["yard"]["source"].startswith("rtsp://admin:***@")
        assert "s3cret" not in json.dumps(api("/api/cameras"))
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        stderr_file.seek(0)
        log_text = stderr_file.read().decode(errors="replace")
        stderr_file.close()
    assert "s3cret" not in log_text and TOKEN not in log_text, log_text[-3000:]
    assert "web page at" in log_text


def _up(base: str) -> bool:
    try:
        return request(base + "/healthz")[0] in (200, 503)
    except OSError:
        return False


def test_live_view_draws_the_detector_tiles() -> None:
    view = LiveView(max_fps=100.0, max_width=640)
    view.jpeg("gate")  # watch it
    tiled = CameraConfig.model_validate({"id": "gate", "source": "demo", "detect_tiles": 2})
    view.update(Frame("gate", 1, 1_700_000_000.0, scene()), camera=tiled)
    image = cv2.imdecode(np.frombuffer(view.jpeg("gate"), np.uint8), cv2.IMREAD_COLOR)
    # 2x2 tiles of 1280x720 with a quarter overlap: the first is x 0-731, y 0-411; its right edge at half size
    # is x 365, drawn blue (B high, R low) over the grey scene
    column = image[150:200, 363:368].reshape(-1, 3).astype(int)
    assert (column[:, 0] - column[:, 2]).max() > 80
    plain = LiveView(max_fps=100.0, max_width=640)
    plain.jpeg("gate")
    plain.update(Frame("gate", 1, 1_700_000_000.0, scene()),
                 camera=CameraConfig.model_validate({"id": "gate", "source": "demo"}))
    image = cv2.imdecode(np.frombuffer(plain.jpeg("gate"), np.uint8), cv2.IMREAD_COLOR)
    column = image[150:200, 363:368].reshape(-1, 3).astype(int)
    assert (column[:, 0] - column[:, 2]).max() < 20
