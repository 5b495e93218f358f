"""``anpr-edge schema``, ``subscribe`` and ``parking-validate`` (the reference consumers)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from mosquitto import Collector, Mosquitto, mosquitto_available
from paho.mqtt.enums import CallbackAPIVersion

from anpr_edge.config import MqttConfig
from anpr_edge.errors import ConfigError
from anpr_edge.events import encode_payload, event_to_payload, schema_text
from anpr_edge.mqtt_cli import decide, load_permits, normalise_plate, register
from anpr_edge.publisher import MqttPublisher
from anpr_edge.values import PlateEvent

pytestmark = pytest.mark.timeout(60)
REPO = Path(__file__).resolve().parent.parent
NOW = 1763764221.0  # 2025-11-21T22:30:21Z
needs_broker = pytest.mark.skipif(not mosquitto_available()[0], reason=mosquitto_available()[1])


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="anpr-edge")
    register(main.add_subparsers(dest="command", required=True))
    return main


def plate(text: str | None = "AB123CD", *, end: float = NOW, confidence: float = 0.95, **changes: object) -> dict:
    fields: dict = {"device_id": "box", "camera_id": "gate", "seq": 1, "start_time": end - 2, "end_time": end,
                    "text": text, "confidence": confidence}
    if text is None and "text_hash" not in changes:
        fields["reason"] = "no legible read"
    return event_to_payload(PlateEvent(**{**fields, **changes}))


@pytest.fixture
def permits_csv(tmp_path: Path) -> Path:
    path = tmp_path / "permits.csv"
    path.write_text(
        "Plate,valid_from,valid_to,holder\n"
        "AB-123-CD,,,Alice\n"
        "EF 456 GH,2025-01-01,2025-06-30,Bob (expired)\n"
        "JK789LM,2025-11-21T08:00:00Z,2025-11-21T23:00:00Z,Carol (today only)\n",
        encoding="utf-8",
    )
    return path


# --------------------------------------------------------------------------------------------- schema
def test_schema_command_prints_the_shipped_schema(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["schema"])
    assert args.handler(args) == 0
    out = capsys.readouterr().out
    assert out == schema_text() and json.loads(out)["title"].startswith("anpr-edge plate event")


def test_commands_are_registered_with_help() -> None:
    text = parser().format_help()
    for command in ("schema", "subscribe", "parking-validate"):
        assert command in text
    args = parser().parse_args(["subscribe", "--mqtt-url", "mqtt://h", "--topic", "$share/g/anpr/+/+/plate"])
    assert args.topic == ["$share/g/anpr/+/+/plate"] and args.prefix == "anpr"
    with pytest.raises(SystemExit):
        parser().parse_args(["parking-validate", "--mqtt-url", "mqtt://h"])  # --permits is required


# -------------------------------------------------------------------------------------------- permits
def test_load_permits_csv(permits_csv: Path) -> None:
    permits = load_permits(permits_csv)
    assert [p.plate for p in permits] == ["AB123CD", "EF456GH", "JK789LM"]
    assert permits[0].valid_from is None and permits[0].row == {"plate": "AB-123-CD", "holder": "Alice"}
    assert permits[1].valid_to is not None and permits[1].valid_to.date().isoformat() == "2025-06-30"


def test_load_permits_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "permits.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE permits (plate TEXT, valid_from TEXT, valid_to TEXT, bay INTEGER)")
    db.executemany("INSERT INTO permits VALUES (?, ?, ?, ?)", [("ab123cd", None, None, 7), ("XY1", "2025-01-01", "", 8)])
    db.commit()
    db.close()
    permits = load_permits(path)
    assert [p.plate for p in permits] == ["AB123CD", "XY1"] and permits[0].row == {"plate": "ab123cd", "bay": "7"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("number,valid_to\nAB1,\n", "no 'plate' column"),
        ("plate,valid_to\nAB1,31/12/2025\n", r"permits.csv:2: valid_to: not an ISO date"),
        ("plate\n--\n", "permits.csv:2: empty plate"),
    ],
)
def test_load_permits_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "permits.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_permits(path)


def test_load_permits_missing_or_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_permits(tmp_path / "nope.csv")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE cars (x)").connection.close()
    with pytest.raises(ConfigError, match="permits' table"):
        load_permits(other)


# ------------------------------------------------------------------------------------------ decisions
@pytest.mark.parametrize(
    ("event", "decision", "distance", "holder"),
    [
        (plate("AB123CD"), "permitted", 0, "Alice"),
        (plate("AB123C0"), "permitted", 1, "Alice"),  # one OCR slip away
        (plate("AB12"), "not_permitted", None, None),
        (plate("EF456GH"), "not_permitted", 0, "Bob (expired)"),
        (plate("JK789LM"), "permitted", 0, "Carol (today only)"),
        (plate("JK789LM", end=NOW + 3600), "not_permitted", 0, "Carol (today only)"),  # after 23:00
        (plate(None), "unknown", None, None),
        (plate(None, text_hash="sha256:ab12"), "unknown", None, None),
        (plate("AB123CD", confidence=0.2), "unknown", None, None),
    ],
)
def test_decide(permits_csv: Path, event: dict, decision: str, distance: int | None, holder: str | None) -> None:
    result = decide(event, load_permits(permits_csv), max_distance=1, min_confidence=0.5)
    assert result["decision"] == decision and result["distance"] == distance
    assert (result["permit"] or {}).get("holder") == holder
    assert result["event_id"] == event["id"] and result["camera"] == "gate" and result["reason"]


def test_decide_prefers_a_valid_permit_among_equally_close_ones(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("plate,valid_to,holder\nAB123CE,2020-01-01,old\nAB123CF,,current\n")
    result = decide(plate("AB123CD"), load_permits(path))
    assert result["decision"] == "permitted" and result["permit"]["holder"] == "current"


def test_normalise_plate() -> None:
    assert normalise_plate(" ab-123 cd ") == "AB123CD"


# ------------------------------------------------------------------------------------ against a broker
class Cli:
    """``python -m anpr_edge.mqtt_cli ...`` in a child process; waits until it has subscribed."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "anpr_edge.mqtt_cli", *args], cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.stderr: list[str] = []

    def wait_subscribed(self) -> None:
        assert self.proc.stderr is not None
        while True:
            line = self.proc.stderr.readline()
            assert line, f"exited before subscribing: {''.join(self.stderr)}"
            self.stderr.append(line)
            if "subscribed to" in line:
                return

    def finish(self, timeout: float = 30) -> tuple[int, list[dict], str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, [json.loads(line) for line in out.splitlines()], "".join(self.stderr) + err


@needs_broker
def test_subscribe_prints_events_once_each(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker:
        cli = Cli("subscribe", "--mqtt-url", broker.url, "--count", "3", "--timeout", "30")
        cli.wait_subscribed()
        publisher = MqttPublisher(MqttConfig(port=broker.port, outbox_path=tmp_path / "o.sqlite"), "box").start()
        try:
            assert publisher.wait_connected(10)
            first = publisher.publish(PlateEvent(camera_id="gate", start_time=NOW, end_time=NOW + 1, text="AB1",
                                                 confidence=0.9))
            assert publisher.wait_idle(10)
            raw = mqtt.Client(CallbackAPIVersion.VERSION2)
            raw.connect("127.0.0.1", broker.port)
            raw.loop_start()
            duplicate = plate("AB1", id=first.id, device_id="box", camera_id="gate", seq=first.seq)
            raw.publish("anpr/box/gate/plate", encode_payload(duplicate), qos=1).wait_for_publish(5)
            raw.publish("anpr/box/gate/plate", b'{"schema": 1, "text": "no"}', qos=1).wait_for_publish(5)
            raw.disconnect()
            raw.loop_stop()
            others = [publisher.publish(PlateEvent(camera_id="gate", start_time=NOW, end_time=NOW + 1, text=t,
                                                   confidence=0.9)) for t in ("CD2", "EF3")]
            assert publisher.wait_idle(10)
        finally:
            publisher.close()
        rc, lines, err = cli.finish()
    assert rc == 0, err
    assert [line["id"] for line in lines] == [first.id] + [e.id for e in others]  # duplicate dropped
    assert "does not match schema" in err  # the invalid message is reported, not printed


@needs_broker
def test_parking_validate_answers_each_event(tmp_path: Path, permits_csv: Path) -> None:
    with Mosquitto(tmp_path / "broker") as broker, Collector(broker.port, ("anpr/+/decision",)) as decisions:
        cli = Cli("parking-validate", "--mqtt-url", broker.url, "--permits", str(permits_csv), "--count", "3",
                  "--timeout", "30")
        cli.wait_subscribed()
        publisher = MqttPublisher(MqttConfig(port=broker.port, outbox_path=tmp_path / "o.sqlite"), "box").start()
        try:
            assert publisher.wait_connected(10)  # else the first events are backlog, sent after later ones
            now = time.time()
            for text in ("AB123CD", "ZZ999ZZ", None):
                publisher.publish(PlateEvent(camera_id="gate", start_time=now - 1, end_time=now, text=text,
                                             confidence=0.9, reason=None if text else "occluded"))
            assert publisher.wait_idle(10)
        finally:
            publisher.close()
        rc, lines, err = cli.finish()
        assert decisions.wait_for(lambda c: len(c.messages) >= 3), (rc, lines, err, decisions.messages)
    assert rc == 0, err
    assert [line["decision"] for line in lines] == ["permitted", "not_permitted", "unknown"]
    assert lines[0]["permit"]["holder"] == "Alice" and lines[0]["topic"] == "anpr/gate/decision"
    published = [json.loads(m.payload) for m in decisions.messages]
    assert [d["decision"] for d in published] == ["permitted", "not_permitted", "unknown"]
    assert {m.topic for m in decisions.messages} == {"anpr/gate/decision"}


@needs_broker
def test_subscribe_with_a_wrong_password_fails_clearly(tmp_path: Path) -> None:
    with Mosquitto(tmp_path / "broker", users={"edge": "right"}) as broker:
        done = subprocess.run(
            [sys.executable, "-m", "anpr_edge.mqtt_cli", "subscribe", "--mqtt-url",
             f"mqtt://edge:s3cret-wrong@127.0.0.1:{broker.port}", "--timeout", "20"],
            cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
        )
    assert done.returncode == 1 and "refused the connection" in done.stderr
    assert "s3cret-wrong" not in done.stderr and "Traceback" not in done.stderr


def test_bad_url_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "anpr_edge.mqtt_cli", "subscribe", "--mqtt-url", "http://u:pw@h"],
                          cwd=REPO, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 2 and "scheme must be mqtt://" in done.stderr and ":pw@" not in done.stderr
