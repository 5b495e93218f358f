"""`anpr-edge run --mqtt-url ... --print-events`: passages published through a real Mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest
from mosquitto import Collector, Mosquitto, mosquitto_available
from test_cli import cli, json_lines, make_clip, models, write_config  # noqa: F401  (models is a fixture)

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(not mosquitto_available()[0], reason=mosquitto_available()[1])]


def test_run_publishes_events_and_prints_them(tmp_path: Path, models: dict[str, Path]) -> None:  # noqa: F811
    clip = make_clip(tmp_path / "gate.mp4")
    config = write_config(tmp_path, models, f"  - {{id: gate, source: {clip}, fps_limit: 5}}\n")
    config.write_text(config.read_text() + f"device_id: box-1\nmqtt: {{outbox_path: {tmp_path / 'outbox.db'}}}\n")
    with Mosquitto(tmp_path / "broker") as broker, Collector(broker.port) as collector:
        # Credentials in the URL must never reach a log line (the broker allows anonymous clients).
        url = f"mqtt://edge:s3cret-pw@127.0.0.1:{broker.port}"
        result = cli("run", "--config", str(config), "--mqtt-url", url, "--print-events")
        assert result.returncode == 0, result.stderr
        assert "s3cret-pw" not in result.stderr
        (printed,) = json_lines(result.stdout)
        assert collector.wait_for(lambda c: len(c.plates()) == 1, timeout=10)
        (published,) = collector.plates()  # schema-validated by the collector
        assert published == printed
        assert published["device"] == "box-1" and published["camera"] == "gate" and published["text"] == "A"
        assert published["seq"] == 1
        assert [m.topic for m in collector.messages if m.topic.endswith("/plate")] == ["anpr/box-1/gate/plate"]
        assert collector.wait_for(lambda c: [m.payload for m in c.on("box-1/status")][-1:] == [b"offline"], timeout=10)
        assert b"online" in [m.payload for m in collector.on("box-1/status")]


def test_run_without_print_events_keeps_stdout_for_nothing_but_events(tmp_path: Path, models: dict[str, Path]) -> None:  # noqa: F811
    """With a broker and no --print-events, events go to MQTT only; stdout stays empty."""
    clip = make_clip(tmp_path / "gate.mp4", frames=10)
    config = write_config(tmp_path, models, f"  - {{id: gate, source: {clip}}}\n")
    config.write_text(config.read_text() + f"mqtt: {{outbox_path: {tmp_path / 'outbox.db'}}}\n")
    with Mosquitto(tmp_path / "broker") as broker, Collector(broker.port) as collector:
        result = cli("run", "--config", str(config), "--mqtt-url", broker.url)
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""
        assert collector.wait_for(lambda c: len(c.plates()) == 1, timeout=10)
