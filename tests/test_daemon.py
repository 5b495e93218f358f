"""`anpr-edge run` as the daemon: a real subprocess with a real RTSP camera, a real Mosquitto, the health
and metrics endpoint and a systemd notify socket. The camera server is killed and restarted (the camera
reconnects and events continue), frozen (the stall is detected within the read timeout), a camera is
added by SIGHUP, and SIGTERM drains."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from mosquitto import Collector, Mosquitto, mosquitto_available
from servers import RtspServer, rtsp_available
from test_cli import REPO, make_clip, models, write_config  # noqa: F401  (models is a fixture)

pytestmark = [
    pytest.mark.rtsp,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not rtsp_available()[0], reason=rtsp_available()[1] or "RTSP"),
    pytest.mark.skipif(not mosquitto_available()[0], reason=mosquitto_available()[1] or "mosquitto"),
]


class NotifySocket:
    """A fake systemd NOTIFY_SOCKET: a datagram socket that records every message."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except OSError:
                continue

    def lines(self) -> list[str]:
        return [line for message in list(self.messages) for line in message.splitlines()]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def health(port: int) -> dict:
    return json.loads(get(f"http://127.0.0.1:{port}/healthz")[1])


def logged_http_port(stderr_file) -> int:
    """The port the daemon says its health server listens on (it logs it before READY=1)."""
    stderr_file.seek(0)
    stderr = stderr_file.read().decode(errors="replace")
    found = re.search(r"health and metrics at http://127\.0\.0\.1:(\d+)/healthz", stderr)
    assert found, f"the daemon did not log its health server's address; its stderr:\n{stderr[-3000:]}"
    return int(found.group(1))


def metric(port: int, line_start: str) -> float:
    body = get(f"http://127.0.0.1:{port}/metrics")[1].decode()
    for line in body.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_daemon_reconnects_reports_health_reloads_and_drains(tmp_path: Path, models: dict[str, Path]) -> None:  # noqa: F811
    clip = make_clip(tmp_path / "gate.mp4", frames=50)
    camera = ("  - {id: gate, source: %s, read_timeout_s: 2, open_timeout_s: 3, "
              "reconnect_min_s: 0.3, reconnect_max_s: 1}\n")
    with RtspServer(clip) as server, Mosquitto(tmp_path / "broker") as broker, \
            Collector(broker.port) as collector:
        # Credentials in the stream URL (the test server ignores them) must never show up anywhere.
        url = server.url.replace("rtsp://", "rtsp://cam:pa55word@")
        config = write_config(tmp_path, models, camera % url)
        # Port 0: the daemon takes any free port and logs it. A port picked here beforehand can be taken by
        # the broker, the RTSP server or an outgoing connection before the daemon binds it (seen in CI).
        extra = ("http: {port: 0}\nevents: {dedup_window_s: 0}\ndevice_id: box-9\n"
                 f"mqtt: {{enabled: true, port: {broker.port}, outbox_path: {tmp_path / 'outbox.db'}}}\n")
        config.write_text(config.read_text() + extra)
        notify = NotifySocket(tmp_path)
        stderr_file = tempfile.TemporaryFile()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "anpr_edge", "run", "--config", str(config)], cwd=REPO,
            stdout=subprocess.PIPE, stderr=stderr_file, text=True,
            env={**os.environ, "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "2000000",
                 "WATCHDOG_PID": ""},
        )
        try:
            try:
                wait_until(lambda: "READY=1" in notify.lines(), 60, "READY=1 on the notify socket")
            except AssertionError as error:
                stderr_file.seek(0)
                raise AssertionError(f"{error}; the daemon's stderr:\n{stderr_file.read().decode()[-3000:]}") from None
            http_port = logged_http_port(stderr_file)
            state = wait_until(lambda: health(http_port)["cameras"]["gate"]["state"] == "streaming" and
                               health(http_port), 30, "the camera streaming")
            assert get(f"http://127.0.0.1:{http_port}/healthz")[0] == 200 and state["status"] == "ok"
            wait_until(lambda: len(collector.plates()) >= 1, 30, "the first event (settled vote)")
            assert metric(http_port, 'anpr_frames_processed_total{camera="gate"}') > 0

            # The camera vanishes: passages end, the camera reconnects with backoff, health says so.
            server.kill()
            wait_until(lambda: health(http_port)["cameras"]["gate"]["state"] == "reconnecting", 15,
                       "the camera reconnecting")
            assert get(f"http://127.0.0.1:{http_port}/healthz")[0] == 503
            before = len(collector.plates())
            restarted = RtspServer(clip, port=server.port).start()
            try:
                wait_until(lambda: health(http_port)["cameras"]["gate"]["state"] == "streaming", 30,
                           "the camera back after the server restarted")
                wait_until(lambda: len(collector.plates()) > before, 30, "an event after the reconnect")
                assert metric(http_port, 'anpr_reconnects_total{camera="gate"}') >= 1

                # A frozen camera (sockets open, nothing sent) is detected within the read timeout.
                restarted.freeze()
                frozen_at = time.monotonic()
                wait_until(lambda: health(http_port)["cameras"]["gate"]["state"] == "reconnecting", 10,
                           "the stall detected")
                assert time.monotonic() - frozen_at < 2 + 3  # read_timeout_s plus a margin
                assert "stalled" in (health(http_port)["cameras"]["gate"]["last_error"] or "") or \
                    "read failed" in (health(http_port)["cameras"]["gate"]["last_error"] or "")
                restarted.resume()

                # SIGHUP: a camera added to the file starts; the running one is not restarted.
                reconnects = health(http_port)["cameras"]["gate"]["reconnects"]
                looped = make_clip(tmp_path / "lot.mp4", frames=20)
                config.write_text(config.read_text().replace(
                    "cameras:\n", f"cameras:\n  - {{id: lot, source: {looped}, loop: true, realtime: true}}\n"))
                daemon.send_signal(signal.SIGHUP)
                wait_until(lambda: "lot" in health(http_port)["cameras"], 15, "the added camera")
                wait_until(lambda: metric(http_port, 'anpr_frames_processed_total{camera="lot"}') > 0, 15,
                           "frames from the added camera")
                assert "RELOADING=1" in notify.lines()
                assert health(http_port)["cameras"]["gate"]["reconnects"] <= reconnects + 1  # not restarted

                # SIGTERM drains: exit 0 within a few seconds, STOPPING=1, camera status and offline.
                stopped_at = time.monotonic()
                daemon.send_signal(signal.SIGTERM)
                assert daemon.wait(timeout=15) == 0
                assert time.monotonic() - stopped_at < 10
            finally:
                restarted.stop()
            assert "STOPPING=1" in notify.lines()
            assert any(line.startswith("WATCHDOG=1") for line in notify.lines())
            assert collector.wait_for(
                lambda c: [m.payload for m in c.on("box-9/status")][-1:] == [b"offline"], timeout=10)
            stderr_file.seek(0)
            stderr = stderr_file.read().decode()
            assert "pa55word" not in stderr
            status_payloads = b" ".join(m.payload for m in collector.messages if "/status" in m.topic)
            assert b"pa55word" not in status_payloads
            assert b"reconnecting" in status_payloads  # the camera status topic followed the camera
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            notify.close()
