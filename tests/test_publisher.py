"""The MQTT publisher against a real Mosquitto: delivery, outages, kill -9, wrong password, TLS.

Every plate payload a test reads goes through ``Collector.plates()``, which validates it against the
shipped JSON Schema: a payload that breaks the schema fails the test.
"""

from __future__ import annotations

import json
import logging
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
from mosquitto import Collector, Mosquitto, TestPki, make_test_pki, mosquitto_available

import anpr_edge
from anpr_edge.config import MqttConfig, MqttTlsConfig
from anpr_edge.errors import ConfigError
from anpr_edge.events import event_to_payload
from anpr_edge.outbox import Outbox
from anpr_edge.publisher import (
    Backoff,
    MqttPublisher,
    home_assistant_discovery,
    mqtt_config_from_url,
    parse_mqtt_url,
)
from anpr_edge.values import PlateEvent

ok, why = mosquitto_available()
pytestmark = [pytest.mark.timeout(60), pytest.mark.skipif(not ok, reason=why)]

CHILD = Path(__file__).with_name("mqtt_child.py")


def config(port: int, tmp_path: Path, **changes: object) -> MqttConfig:
    base = {"enabled": True, "port": port, "outbox_path": tmp_path / "outbox.sqlite", "reconnect_min_s": 0.1,
            "reconnect_max_s": 0.5, "keepalive_s": 5}
    return MqttConfig(**{**base, **changes})


def event(camera: str = "cam1", text: str | None = "AB123CD", **changes: object) -> PlateEvent:
    now = time.time()
    fields = {"camera_id": camera, "start_time": now - 2.0, "end_time": now, "text": text, "confidence": 0.93,
              "reads": 6, "box": (100.0, 200.0, 220.0, 240.0), "versions": {"anpr_edge": "test"}}
    if text is None:
        fields["reason"] = "no legible read"
    return PlateEvent(**{**fields, **changes})


def eventually(condition, timeout: float = 10.0, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


@pytest.fixture
def broker(tmp_path: Path):
    with Mosquitto(tmp_path / "broker") as server:
        yield server


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


# ---------------------------------------------------------------------------------------- delivery
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_publish_and_receive(broker: Mosquitto, tmp_path: Path, protocol: str) -> None:
    with Collector(broker.port) as collector:
        publisher = MqttPublisher(config(broker.port, tmp_path, protocol=protocol), "box-1").start()
        try:
            assert publisher.wait_connected(10), publisher.last_error
            sent = [publisher.publish(event()), publisher.publish(event(text=None)),
                    publisher.publish(event("cam2", crop_jpeg=b"\xff\xd8jpeg\xff\xd9"))]
            assert [e.seq for e in sent] == [1, 2, 1] and all(e.device_id == "box-1" for e in sent)
            assert publisher.wait_idle(10)
            assert collector.wait_for(lambda c: len(c.on("/plate")) >= 3)
        finally:
            publisher.close()
        plates = collector.plates()
        assert [p["id"] for p in plates] == [e.id for e in sent]
        assert {m.topic for m in collector.on("/plate")} == {"anpr/box-1/cam1/plate", "anpr/box-1/cam2/plate"}
        assert all(p["replayed"] is False for p in plates) and plates[1]["reason"] == "no legible read"
        statuses = [m.payload for m in collector.on("anpr/box-1/status")]
        assert statuses[0] == b"online" and statuses[-1] == b"offline"
        stats = publisher.stats()
        assert (stats.sent, stats.acked, stats.pending, stats.connects) == (3, 3, 0, 1)


def test_status_topics_are_retained_and_redacted(broker: Mosquitto, tmp_path: Path) -> None:
    publisher = MqttPublisher(config(broker.port, tmp_path), "box-1").start()
    publisher.set_camera_status("gate", connected=False, fps=0.0, source="rtsp://admin:hunter2@10.0.0.5/stream",
                                last_error="rtsp://admin:hunter2@10.0.0.5/stream: timed out")
    assert publisher.wait_connected(10)
    publisher.set_camera_status("gate", connected=True, fps=12.345)
    time.sleep(0.3)
    # A subscriber arriving later gets the retained state: online, and the camera's latest status.
    with Collector(broker.port) as late:
        assert late.wait_for(lambda c: len(c.on("/gate/status")) >= 1 and len(c.on("box-1/status")) >= 1)
        assert late.on("box-1/status")[0].payload == b"online" and late.on("box-1/status")[0].retain
        status = json.loads(late.on("/gate/status")[-1].payload)
        assert status["connected"] is True and status["fps"] == 12.35 and status["dropped"] == 0
        publisher.set_camera_status("gate", connected=False, last_error="rtsp://admin:hunter2@10.0.0.5/x down")
        assert late.wait_for(lambda c: len(c.on("/gate/status")) >= 2)
        text = b"".join(m.payload for m in late.messages).decode()
        assert "hunter2" not in text and "admin:***@10.0.0.5" in text
        publisher.close()
        assert late.wait_for(lambda c: c.on("box-1/status")[-1].payload == b"offline")


# ------------------------------------------------------------------------------- Home Assistant
def test_home_assistant_discovery_is_retained_and_sent_again_on_reconnect(tmp_path: Path) -> None:
    # Not persistent: a restarted broker has lost every retained message, so only the publisher's
    # re-announcement on reconnect brings the sensors back.
    broker = Mosquitto(tmp_path / "broker").start()
    cfg = config(broker.port, tmp_path, home_assistant={"enabled": True})
    publisher = MqttPublisher(cfg, "gate-box.1")
    publisher.set_camera_status("entrance", connected=True, fps=10.0)  # known before the first connect
    publisher.start()
    try:
        assert publisher.wait_connected(10), publisher.last_error
        publisher.set_camera_status("exit", connected=True)  # a camera that opens later
        with Collector(broker.port, ("anpr/#",)) as plates:
            sent = publisher.publish(event("entrance"))
            assert plates.wait_for(lambda c: len(c.on("/plate")) >= 1)
            plate = plates.plates()[0]
        expected = {f"homeassistant/sensor/gate-box_1/{camera}_plate/config": camera for camera in ("entrance", "exit")}
        for round_ in (1, 2):
            with Collector(broker.port, ("homeassistant/#",)) as late:  # arrives later: retained messages only
                assert late.wait_for(lambda c: len(c.messages) >= 2), late.messages
                time.sleep(0.2)  # nothing more than one config per camera
                assert sorted(m.topic for m in late.messages) == sorted(expected), round_
                assert all(m.retain for m in late.messages)
                configs = {m.topic: json.loads(m.payload) for m in late.messages}
            if round_ == 1:
                broker.stop()
                broker.start()
                assert eventually(lambda: publisher.stats().connects == 2 and publisher.connected, timeout=15)
                with Collector(broker.port, ("homeassistant/#",)) as probe:  # sure they reached the broker
                    assert probe.wait_for(lambda c: len(c.messages) >= 2)
    finally:
        publisher.close()
        broker.stop()
    for topic, camera in expected.items():
        sensor = configs[topic]
        assert sensor["state_topic"] == sensor["json_attributes_topic"] == f"anpr/gate-box.1/{camera}/plate"
        assert sensor["value_template"] == "{{ value_json.text }}"
        assert sensor["availability_topic"] == "anpr/gate-box.1/status"
        assert (sensor["payload_available"], sensor["payload_not_available"]) == ("online", "offline")
        assert sensor["unique_id"] == f"anpr_edge.gate-box.1.{camera}.plate"
        assert sensor["device"]["identifiers"] == ["gate-box.1"] and sensor["device"]["model"] == "anpr-edge"
        assert sensor["device"]["name"] == "gate-box.1" and sensor["device"]["sw_version"] == anpr_edge.__version__
    assert plate["id"] == sent.id
    try:
        import jinja2  # Home Assistant's template engine, when installed: the state is the plate text
    except ImportError:
        pass
    else:
        template = configs[next(iter(expected))]["value_template"]
        assert jinja2.Template(template).render(value_json=plate) == "AB123CD"


def test_home_assistant_discovery_topic_follows_the_prefix() -> None:
    topic, sensor = home_assistant_discovery("ha", "parking", "box", "cam-1")
    assert topic == "ha/sensor/box/cam-1_plate/config"
    assert sensor["state_topic"] == "parking/box/cam-1/plate" and sensor["availability_topic"] == "parking/box/status"


def test_no_home_assistant_discovery_unless_enabled(broker: Mosquitto, tmp_path: Path) -> None:
    with Collector(broker.port, ("#",)) as everything:
        cfg = config(broker.port, tmp_path)
        assert cfg.home_assistant.enabled is False
        publisher = MqttPublisher(cfg, "box-1").start()
        try:
            publisher.set_camera_status("entrance", connected=True)
            publisher.publish(event("entrance"))
            assert publisher.wait_idle(10)
            # The camera status goes out after where discovery would have been published.
            assert everything.wait_for(lambda c: len(c.on("/entrance/status")) >= 1 and len(c.on("/plate")) >= 1)
        finally:
            publisher.close()
        assert everything.wait_for(lambda c: c.on("box-1/status")[-1].payload == b"offline")
        assert not [m.topic for m in everything.messages if m.topic.startswith("homeassistant/")]
        assert {m.topic.split("/")[0] for m in everything.messages} == {"anpr"}


def test_live_events_go_before_a_rate_limited_backlog(broker: Mosquitto, tmp_path: Path) -> None:
    cfg = config(broker.port, tmp_path, replay_rate=8.0, max_inflight=4)
    with Outbox(cfg.outbox_path) as box:  # a backlog left by an earlier run
        old = [event(text=f"OLD{n}") for n in range(12)]
        for e in old:
            box.put(event_to_payload(replace(e, device_id="box-1")))
    with Collector(broker.port) as collector:
        publisher = MqttPublisher(cfg, "box-1").start()
        try:
            assert publisher.wait_connected(10)
            live = [publisher.publish(event(text=f"NEW{n}")) for n in range(3)]
            started = time.monotonic()
            assert publisher.wait_idle(15)
            drained = time.monotonic() - started
        finally:
            publisher.close()
        assert collector.wait_for(lambda c: len(c.on("/plate")) >= 15)
    plates = collector.plates()
    order = [p["text"] for p in plates]
    assert sorted(order) == sorted([f"OLD{n}" for n in range(12)] + [f"NEW{n}" for n in range(3)])
    assert all(p["replayed"] for p in plates if p["text"].startswith("OLD"))
    assert not any(p["replayed"] for p in plates if p["text"].startswith("NEW"))
    assert [t for t in order if t.startswith("OLD")] == [f"OLD{n}" for n in range(12)]  # backlog in order
    assert order.index("NEW2") < order.index("OLD11")  # live did not wait for the whole backlog
    assert [p["seq"] for p in plates if p["text"].startswith("NEW")] == [13, 14, 15]
    # 12 backlog events at 8/s with a first burst of 4: at least ~1 s of pacing.
    assert drained >= 0.7, drained
    assert {p["id"] for p in plates} >= {e.id for e in live}


def test_outbox_bound_drops_oldest_and_reports_it(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", persistent=True).start()
    collector = Collector(broker.port, session="drop-test-collector")  # its session outlives the restart
    broker.stop()
    publisher = MqttPublisher(config(broker.port, tmp_path, outbox_max_events=3), "box-1").start()
    try:
        for n in range(5):
            publisher.publish(event(text=f"T{n}"))
        assert publisher.stats().dropped == 2 and publisher.stats().dropped_total == {"cam1": 2}
        broker.start()
        assert publisher.wait_idle(10)
        assert collector.wait_for(lambda c: len(c.on("/plate")) >= 3 and len(c.on("/cam1/status")) >= 1)
        assert [p["seq"] for p in collector.plates()] == [3, 4, 5]  # the gap shows the drop
        assert json.loads(collector.on("/cam1/status")[-1].payload)["dropped"] == 2
    finally:
        publisher.close()
        collector.close()
        broker.stop()


# ---------------------------------------------------------------------------------------- outages
@pytest.mark.slow
def test_broker_restart_mid_stream_loses_nothing(tmp_path: Path) -> None:
    # The broker keeps the *test subscriber's* session over the restart (persistent=True), so the
    # subscriber misses nothing while it reconnects; the edge relies on its own outbox only.
    broker = Mosquitto(tmp_path / "broker", persistent=True).start()
    collector = Collector(broker.port, session="restart-test-collector")
    publisher = MqttPublisher(config(broker.port, tmp_path, replay_rate=10.0, max_inflight=5), "box-1").start()
    try:
        assert publisher.wait_connected(10)
        sent = []
        for _ in range(20):
            sent.append(publisher.publish(event()))
            time.sleep(0.02)
        assert collector.wait_for(lambda c: len(c.on("/plate")) >= 20)
        broker.stop()
        for _ in range(30):  # 3 s outage; the pipeline keeps running, the outbox grows
            sent.append(publisher.publish(event()))
            time.sleep(0.1)
        assert not publisher.connected and publisher.stats().pending >= 30
        broker.start()
        assert publisher.wait_connected(10)
        for _ in range(10):  # live events while the backlog drains
            sent.append(publisher.publish(event()))
            time.sleep(0.1)
        assert publisher.wait_idle(20)
        ids = [e.id for e in sent]
        assert collector.wait_for(lambda c: set(ids) <= {p["id"] for p in c.plates()}, timeout=15)
    finally:
        publisher.close()
        collector.close()
        broker.stop()
    plates = collector.plates()
    first = {}
    for index, payload in enumerate(plates):
        first.setdefault(payload["id"], (index, payload))
    assert set(first) == set(ids)  # none lost
    duplicates = len(plates) - len(first)
    print(f"\nbroker restart: {len(ids)} events, {duplicates} duplicate(s)")
    assert sorted(p["seq"] for _, p in first.values()) == list(range(1, 61))  # no gaps
    stored_in_outage = {e.id for e in sent[20:50]}
    backlog = [p for _, p in sorted(first.values(), key=lambda v: v[0]) if p["id"] in stored_in_outage]
    assert all(p["replayed"] for p in backlog)
    assert [p["seq"] for p in backlog] == sorted(p["seq"] for p in backlog)  # the backlog in order
    after = [p for _, p in sorted(first.values(), key=lambda v: v[0]) if p["id"] in {e.id for e in sent[50:]}]
    assert [p["seq"] for p in after] == list(range(51, 61)) and not any(p["replayed"] for p in after)
    assert first[sent[50].id][0] < first[sent[49].id][0]  # live overtook the backlog
    assert publisher.stats().connects == 2


class Child:
    """tests/mqtt_child.py: a publisher in its own process (so it can be killed with SIGKILL)."""

    def __init__(self, port: int, outbox: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), "--port", str(port), "--outbox", str(outbox)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )

    def ask(self, command: str) -> list[str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        lines = []
        while True:
            line = self.proc.stdout.readline()
            assert line, f"child exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
            lines.append(line.split())
            if lines[-1][0] in ("ok", "connected", "idle"):
                return lines

    def publish(self, n: int) -> list[str]:
        return [words[1] for words in self.ask(f"publish {n} cam1") if words[0] == "stored"]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.returncode == -signal.SIGKILL

    def close(self) -> None:
        if self.proc.poll() is None:
            self.ask_close()

    def ask_close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("close\n")
        self.proc.stdin.flush()
        self.proc.wait(20)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def outbox_rows(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
    finally:
        db.close()


@pytest.mark.slow
def test_sigkill_with_unacknowledged_events_then_restart(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.sqlite"
    broker = Mosquitto(tmp_path / "broker").start()
    collector = Collector(broker.port)
    try:
        first = Child(broker.port, outbox)
        assert first.ask("connected 15")[-1] == ["connected", "True"]
        acked = first.publish(20)
        assert first.ask("idle 15")[-1] == ["idle", "True"]
        broker.stop()
        unacked = first.publish(30)  # stored, never acknowledged
        first.kill()
        assert outbox_rows(outbox) == 30
        broker.start()
        assert collector.wait_subscribed(10)
        second = Child(broker.port, outbox)
        assert second.ask("idle 20")[-1] == ["idle", "True"]
        everything = acked + unacked
        assert collector.wait_for(lambda c: set(everything) <= set(c.plate_ids()), timeout=10)
        second.ask_close()
    finally:
        collector.close()
        broker.stop()
    counts = Counter(collector.plate_ids())
    assert set(counts) == set(everything)  # none missing (duplicates allowed: at least once)
    print(f"\nkill -9: {len(everything)} events, {sum(counts.values()) - len(counts)} duplicate(s)")
    replayed = {p["id"]: p for p in collector.plates() if p["id"] in set(unacked)}
    assert all(p["replayed"] for p in replayed.values())
    assert sorted(p["seq"] for p in replayed.values()) == list(range(21, 51))  # numbering carried over


@pytest.mark.slow
def test_sigkill_with_events_in_flight_and_last_will(tmp_path: Path) -> None:
    # A hung broker (SIGSTOP) takes PUBLISH packets into its socket but never answers: the events are
    # really in flight when the publisher dies. The broker then sees the dead socket and sends the will.
    outbox = tmp_path / "outbox.sqlite"
    broker = Mosquitto(tmp_path / "broker").start()
    collector = Collector(broker.port)
    try:
        first = Child(broker.port, outbox)
        assert first.ask("connected 15")[-1] == ["connected", "True"]
        broker.freeze()
        in_flight = first.publish(15)
        time.sleep(0.3)  # let the sender hand them to the socket
        first.kill()
        broker.resume()
        assert collector.wait_for(lambda c: any(m.payload == b"offline" for m in c.on("box/status")))
        assert outbox_rows(outbox) == 15
        second = Child(broker.port, outbox)
        assert second.ask("idle 20")[-1] == ["idle", "True"]
        assert collector.wait_for(lambda c: set(in_flight) <= set(c.plate_ids()), timeout=10)
        second.ask_close()
    finally:
        collector.close()
        broker.stop()
    counts = Counter(collector.plate_ids())
    assert set(counts) == set(in_flight)
    print(f"\nkill -9 in flight: {len(in_flight)} events, {sum(counts.values()) - len(counts)} duplicate(s)")


# ---------------------------------------------------------------------------------- authentication
def test_wrong_password_is_reported_retried_and_nothing_is_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    broker = Mosquitto(tmp_path / "broker", users={"edge": "right-pw", "test": "test-pw"}).start()
    collector = Collector(broker.port, username="test", password="test-pw")
    cfg = config(broker.port, tmp_path, username="edge", reconnect_min_s=0.2, reconnect_max_s=0.6)
    publisher = MqttPublisher(cfg, "box-1", environ={"ANPR_EDGE_MQTT_PASSWORD": "wrong-pw"}).start()
    try:
        sent = [publisher.publish(event()) for _ in range(5)]
        assert eventually(lambda: publisher.last_error and "refused the connection" in publisher.last_error)
        assert "Bad user name or password" in publisher.last_error or "Not authorized" in publisher.last_error
        assert "mqtt.username" in publisher.last_error  # says what to check
        assert eventually(lambda: caplog.text.count("refused the connection") >= 2)  # retried
        assert publisher.stats().connects == 0 and publisher.stats().pending == 5
        broker.set_password("edge", "wrong-pw")  # the operator fixes the broker side; SIGHUP reloads
        assert publisher.wait_connected(10), publisher.last_error
        assert publisher.wait_idle(10)
        assert collector.wait_for(lambda c: len(c.on("/plate")) >= 5)
        assert collector.plate_ids() == [e.id for e in sent]
    finally:
        publisher.close()
        collector.close()
        broker.stop()
    assert "wrong-pw" not in caplog.text and "right-pw" not in caplog.text


def test_unreachable_broker_backs_off_and_keeps_events(tmp_path: Path) -> None:
    from servers import free_port

    publisher = MqttPublisher(config(free_port(), tmp_path), "box-1").start()
    try:
        publisher.publish(event())
        assert eventually(lambda: publisher.last_error and "refused" in publisher.last_error, timeout=5)
        assert publisher.stats().pending == 1 and not publisher.connected
    finally:
        publisher.close(timeout=1.0)
    with Outbox(tmp_path / "outbox.sqlite") as box:
        assert len(box) == 1  # kept for the next start


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(0.5, 8.0, random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [0.5, 1, 2, 4, 8, 8, 8, 8]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings))
    assert len({round(d, 6) for d in delays[4:]}) == 4  # jittered, not lockstep
    backoff.reset()
    assert backoff.next_delay() <= 0.5


# ------------------------------------------------------------------------------------------------ TLS
def test_tls_with_test_ca_and_client_certificate(tmp_path: Path, pki: TestPki) -> None:
    with Mosquitto(tmp_path / "broker", tls=pki, require_client_cert=True) as broker, Collector(broker.port) as collector:
        assert broker.tls_port is not None
        tls = MqttTlsConfig(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key)
        publisher = MqttPublisher(config(broker.tls_port, tmp_path, tls=tls), "box-1").start()
        try:
            sent = publisher.publish(event())
            assert publisher.wait_idle(10), publisher.last_error
            assert collector.wait_for(lambda c: len(c.on("/plate")) >= 1)
            assert collector.plate_ids() == [sent.id]
        finally:
            publisher.close()


def test_tls_rejects_a_broker_signed_by_another_ca_unless_insecure(tmp_path: Path, pki: TestPki) -> None:
    with Mosquitto(tmp_path / "broker", tls=pki) as broker, Collector(broker.port) as collector:
        assert broker.tls_port is not None
        wrong = MqttTlsConfig(ca_file=pki.other_ca)
        publisher = MqttPublisher(config(broker.tls_port, tmp_path / "a", tls=wrong), "box-1").start()
        try:
            publisher.publish(event())
            assert eventually(lambda: publisher.last_error and "certificate verification failed" in publisher.last_error)
            assert not publisher.connected and publisher.stats().pending == 1
        finally:
            publisher.close(timeout=1.0)
        insecure = MqttTlsConfig(ca_file=pki.other_ca, insecure=True)
        publisher = MqttPublisher(config(broker.tls_port, tmp_path / "a", tls=insecure), "box-1").start()
        try:
            assert publisher.wait_idle(10), publisher.last_error  # the stored event goes out now
            assert collector.wait_for(lambda c: len(c.on("/plate")) >= 1)
        finally:
            publisher.close()


# ------------------------------------------------------------------------------------------------ URLs
def test_parse_mqtt_url() -> None:
    assert parse_mqtt_url("mqtt://broker") == {"host": "broker", "port": 1883, "username": None, "password": None,
                                               "tls": False}
    assert parse_mqtt_url("mqtts://edge:p%40ss@10.0.0.2:9883/") == {
        "host": "10.0.0.2", "port": 9883, "username": "edge", "password": "p@ss", "tls": True}
    assert parse_mqtt_url("mqtts://h")["port"] == 8883
    for bad, message in [("http://h", "scheme"), ("mqtt://", "no host"), ("mqtt://h:99999", "out of range"),
                         ("mqtt://u:secret@h/topic", "only scheme")]:
        with pytest.raises(ConfigError, match=message) as caught:
            parse_mqtt_url(bad)
        assert "secret" not in str(caught.value)


def test_mqtt_config_from_url(tmp_path: Path, pki: TestPki) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text("from-file\n")
    base = MqttConfig(username="x", password_file=password_file, tls=MqttTlsConfig(ca_file=pki.ca), qos=0)
    config_ = mqtt_config_from_url("mqtts://edge:secret@broker:8884", base)
    assert (config_.enabled, config_.host, config_.port, config_.username, config_.qos) == (True, "broker", 8884, "edge", 0)
    assert config_.effective_password({}) == "secret" and config_.tls is not None and config_.tls.ca_file == pki.ca
    plain = mqtt_config_from_url("mqtt://broker", base)
    assert plain.tls is None and plain.username == "x" and plain.effective_password({}) == "from-file"
    assert mqtt_config_from_url("mqtts://broker").tls is not None
    assert config_.effective_password({"ANPR_EDGE_MQTT_PASSWORD": "env"}) == "env"  # the variable still wins
