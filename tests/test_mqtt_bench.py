"""``anpr-edge bench-mqtt`` with small numbers: it runs end to end against a real Mosquitto and reports
latency, drain, writes and delivery. (The targets themselves are for the full run, not for tests.)"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from anpr_edge.bench.broker import Broker, mosquitto_available
from anpr_edge.bench.mqtt_bench import register, render_markdown, run_mqtt_bench, summarize_ms

ok, why = mosquitto_available()
needs_mosquitto = pytest.mark.skipif(not ok, reason=why)
LINUX = sys.platform.startswith("linux")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="anpr-edge")
    register(main.add_subparsers(dest="command", required=True))
    return main


@needs_mosquitto
@pytest.mark.timeout(60)
def test_small_bench_measures_everything_and_loses_nothing(tmp_path: Path) -> None:
    result = run_mqtt_bench(events=20, backlog=200, rate=100.0, burst=5, replay_rate=1000.0, folder=tmp_path)

    delivery = result["delivery"]
    assert delivery["ok"], delivery
    assert delivery["sent"] == delivery["unique"] >= 10 + 20 + 200  # warm-up, live, backlog (+ live in the drain)
    assert (delivery["lost"], delivery["duplicates"], delivery["schema_errors"]) == (0, 0, 0)
    assert delivery["schema_checked"] == delivery["received"]
    assert delivery["replayed_flag_wrong"] == 0 and delivery["seq_gaps"] == 0

    live = result["live"]
    assert live["events"] == live["acked"] == 20 and live["puback_ms"]["n"] == 20
    # Each event is acknowledged after publish() returned, and deleted after its PUBACK was handled.
    assert 0 < live["publish_call_ms"]["median"] <= live["puback_ms"]["median"] <= live["removed_ms"]["median"]
    assert live["puback_ms"]["median"] <= live["puback_ms"]["p95"] <= live["puback_ms"]["max"]
    assert live["subscriber_ms"]["n"] == 20

    backlog = result["backlog"]
    assert backlog["drained"] and backlog["acked"] == 200 and backlog["drain_s"] > 0
    assert backlog["reconnect_after_broker_start_s"] > 0 and backlog["outbox_bytes_when_stored"] > 0
    assert backlog["live_during_drain"]["events"] >= 1 and backlog["live_during_drain"]["acked"] >= 1

    writes = result["writes"]["phases"]
    assert set(writes) == {"live", "backlog_store", "backlog_drain"} and result["writes"]["method"]
    assert [writes[p]["events"] for p in ("live", "backlog_store")] == [20, 200]
    if LINUX:  # /proc accounting; write_bytes is 0 on tmpfs, wchar never is
        assert writes["live"]["wchar_per_event"] > 1024 and writes["backlog_store"]["wchar_per_event"] > 1024  # a WAL page
        assert writes["backlog_drain"]["wchar_per_event"] > 0
        assert all(phase["write_bytes_per_event"] >= 0 for phase in writes.values())

    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    table = render_markdown(result)
    assert table.count("\n| ") >= 10 and "| live: publish() → PUBACK" in table and "FAIL" not in table.split("| delivery")[1]
    assert result["machine"]["cpu"] in table.splitlines()[0]
    assert not list(tmp_path.iterdir())  # the temporary outbox and broker folder are gone


@needs_mosquitto
@pytest.mark.timeout(30)
def test_cli_json_without_backlog(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["bench-mqtt", "--events", "10", "--rate", "200", "--backlog", "0", "--json",
                                "--crop-bytes", "3000", "--dir", str(tmp_path / "new")])
    assert args.handler(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert "backlog" not in result and result["live"]["acked"] == 10
    assert result["settings"]["crop_bytes"] == 3000 and result["settings"]["payload_bytes"] > 4000  # base64 crop
    assert result["delivery"]["ok"]


def test_cli_rejects_bad_numbers() -> None:
    for bad in (["--backlog", "-1"], ["--events", "0"], ["--rate", "0"], ["--replay-rate", "x"]):
        with pytest.raises(SystemExit) as caught:
            parser().parse_args(["bench-mqtt", *bad])
        assert caught.value.code == 2


def test_summary_uses_nearest_rank_percentiles() -> None:
    summary = summarize_ms([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert summary == {"n": 100, "median": 50.5, "p95": 95.0, "max": 100.0}
    assert summarize_ms([]) == {"n": 0, "median": None, "p95": None, "max": None}


@needs_mosquitto
def test_broker_restarts_on_the_same_port(tmp_path: Path) -> None:
    import socket

    with Broker(tmp_path / "b") as broker:
        port = broker.port
        broker.stop()
        assert not broker.running
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        broker.start()
        assert broker.running and broker.port == port
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not broker.running
