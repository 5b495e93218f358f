"""``anpr-edge bench-mqtt``: the MQTT targets of issue 6, measured with the real publisher and a real broker.

It starts its own Mosquitto (the system binary, on a free 127.0.0.1 port, in a temporary folder) and drives
the real ``MqttPublisher`` and SQLite outbox, in four parts:

1. **Live latency.** ``--events`` events at a realistic pace (``--rate`` per second, in bursts of ``--burst``
   back to back, as when several cars settle at once), each timed from the ``publish()`` call (the moment
   the vote is settled and the event handed over; it includes the durable store) to the broker's PUBACK.
   Target: median under 50 ms with a local broker.
2. **Backlog drain.** The broker is stopped, ``--backlog`` events are stored, the broker is started again;
   the drain is the time from the reconnect to the PUBACK of the last stored event (target: 10 000 in under
   60 s), while a live event is published every 100 ms, whose latency is reported: they go first.
3. **Outbox writes per event** (flash wear), per phase; see "Writes" below.
4. **Delivery**, at a subscriber on the same broker: every event arrives, duplicates are counted by event
   id (0 when nothing failed), every payload is checked against the JSON Schema, ``replayed`` is set on
   exactly the stored backlog and per-camera ``seq`` has no gap.

PUBACK times are observed without changing the publisher: it is given an instrumented outbox (its public
``outbox`` argument). Its sender thread calls ``Outbox.ack_many`` with the acknowledged rows as soon as it
handles the broker's PUBACKs; the instrument notes the time on entry (the PUBACK is handled) and on exit
(the event has left the outbox, its delete committed). ``start_session`` marks the reconnect.

Writes come from Linux's per-process accounting in /proc (only the outbox writes to storage in this
process; the broker is another process):

- ``write_bytes`` of the process: bytes it caused to be written to the storage layer, i.e. the page-cache
  pages it dirtied (4 KiB each on usual file systems, counted again after every fsync). This is what the
  flash sees, short of the file system's own journal, and includes the -shm index and checkpoints. It is 0
  on tmpfs: put the outbox on the storage to measure with ``--dir``.
- ``wchar`` of the two threads that use the outbox (the one calling ``publish`` and the sender thread):
  bytes handed to write(): SQLite's WAL frames and checkpoint copies (the -shm index is a memory map and
  not in it), plus a one-byte wake-up of paho's network thread per MQTT publish.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from anpr_edge import __version__
from anpr_edge.argtypes import non_negative_int, positive_float, positive_int
from anpr_edge.bench.broker import Broker, BrokerError, mosquitto_available, mosquitto_version
from anpr_edge.config import MqttConfig
from anpr_edge.errors import AnprError, ConfigError
from anpr_edge.events import PayloadError, decode_payload, validate_payload
from anpr_edge.outbox import Outbox
from anpr_edge.publisher import MqttPublisher, plate_topic
from anpr_edge.values import PlateEvent

log = logging.getLogger("anpr_edge.bench")

LATENCY_TARGET_MS = 50.0
DRAIN_TARGET_S = 60.0
DEVICE = "bench"
CAMERAS = ("entrance", "exit")
WARMUP_EVENTS = 10


class BenchError(AnprError):
    """The benchmark could not run (broker did not start, publisher never connected...)."""


# ------------------------------------------------------------------------------------ instruments
class TimedOutbox(Outbox):
    """The real outbox, noting when each event is stored, acknowledged and removed (by event id)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._event_ids: dict[int, str] = {}  # rowid -> event id, until acknowledged
        self.acked: dict[str, tuple[float, float]] = {}  # event id -> (PUBACK handled, row deleted)
        self.sessions: list[float] = []  # perf_counter() of each connect

    def put(self, payload: dict[str, Any]) -> int:
        with self._lock:  # the sender cannot see the row before its id is known here
            rowid = super().put(payload)
            self._event_ids[rowid] = str(payload["id"])
        return rowid

    def ack_many(self, rowids: Iterable[int]) -> int:
        ids = list(rowids)
        handled = time.perf_counter()
        removed = super().ack_many(ids)
        deleted = time.perf_counter()
        for rowid in ids:
            event_id = self._event_ids.pop(rowid, None)
            if event_id is not None:
                self.acked.setdefault(event_id, (handled, deleted))
        return removed

    def start_session(self) -> int:
        self.sessions.append(time.perf_counter())
        return super().start_session()


def _read_io(path: str) -> dict[str, int] | None:
    try:
        with open(path, encoding="ascii") as handle:
            return {key: int(value) for key, value in (line.split(":") for line in handle if ":" in line)}
    except (OSError, ValueError):
        return None


class IoMeter:
    """Process ``write_bytes`` and the summed ``wchar`` of some threads, from /proc (None where unreadable)."""

    def __init__(self, thread_ids: Iterable[int]) -> None:
        self.thread_ids = list(thread_ids)

    def read(self) -> tuple[int | None, int | None]:
        process = _read_io("/proc/self/io")
        threads = [_read_io(f"/proc/self/task/{tid}/io") for tid in self.thread_ids]
        write_bytes = None if process is None else process.get("write_bytes")
        wchar = None if any(t is None for t in threads) else sum(t.get("wchar", 0) for t in threads if t)
        return write_bytes, wchar


def _delta(label: str, before: tuple[int | None, int | None], after: tuple[int | None, int | None],
           events: int) -> dict[str, Any]:
    def per(a: int | None, b: int | None) -> float | None:
        return None if a is None or b is None or events <= 0 else round((b - a) / events, 1)

    return {
        "label": label,
        "events": events,
        "write_bytes_per_event": per(before[0], after[0]),
        "wchar_per_event": per(before[1], after[1]),
        "write_bytes": None if before[0] is None or after[0] is None else after[0] - before[0],
        "wchar": None if before[1] is None or after[1] is None else after[1] - before[1],
    }


class Subscriber:
    """A QoS 1 subscriber with a persistent session (it misses nothing while the broker restarts)."""

    def __init__(self, port: int, topic: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.received: list[tuple[float, bytes]] = []  # (perf_counter, payload), appended by paho's thread
        self._subscribed = threading.Event()
        self._parsed = 0
        self.first_seen: dict[str, float] = {}
        self.payloads: list[dict[str, Any]] = []
        self.undecodable: list[str] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"anpr-edge-bench-{os.getpid()}-{id(self)}",
                             clean_session=False)
        client.reconnect_delay_set(0.05, 0.5)
        client.on_connect = lambda c, _u, _f, reason, _p: None if reason.is_failure else c.subscribe(topic, qos=1)
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = lambda _c, _u, message: self.received.append((time.perf_counter(), bytes(message.payload)))
        self.client = client
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise BenchError("the benchmark's subscriber got no SUBACK within 10 s")

    def update(self) -> None:
        """Decode what arrived since the last call (schema checks come later, off the clock)."""
        end = len(self.received)
        for at, data in self.received[self._parsed:end]:
            try:
                payload = decode_payload(data)
                event_id = str(payload["id"])
            except (PayloadError, KeyError) as error:
                self.undecodable.append(str(error))
                continue
            self.payloads.append(payload)
            self.first_seen.setdefault(event_id, at)
        self._parsed = end

    def wait_for(self, ids: Iterable[str], timeout: float) -> bool:
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            self.update()
            if wanted <= self.first_seen.keys():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------------------------------ events
_LETTERS = "ABCDEFGHJKLMNPQRSTVWXYZ"


def make_event(rng: random.Random, camera: str, crop: bytes | None) -> PlateEvent:
    """A realistic settled event: French-format text, candidates, per-character confidences, a box."""
    text = "".join(rng.choice(_LETTERS) for _ in range(2)) + f"{rng.randrange(1000):03d}" + "".join(
        rng.choice(_LETTERS) for _ in range(2))
    confidence = round(rng.uniform(0.85, 0.99), 4)
    now = time.time()
    x, y = rng.uniform(200, 1400), rng.uniform(300, 800)
    return PlateEvent(
        camera_id=camera,
        start_time=now - rng.uniform(1.0, 4.0),
        end_time=now,
        text=text,
        confidence=confidence,
        char_confidences=tuple(round(rng.uniform(0.9, 1.0), 4) for _ in text),
        candidates=((text, confidence), (text[:-1] + "0", round(rng.uniform(0.001, 0.02), 4))),
        reads=rng.randint(3, 12),
        box=(round(x, 1), round(y, 1), round(x + 120, 1), round(y + 28, 1)),
        direction="in" if camera == CAMERAS[0] else "out",
        angle=round(rng.uniform(0, 360), 1),
        plate_format="FR",
        crop_jpeg=crop,
        versions={"anpr_edge": __version__, "bench": "mqtt"},
    )


# -------------------------------------------------------------------------------------- statistics
def summarize_ms(seconds: Iterable[float]) -> dict[str, Any]:
    values = sorted(s * 1000.0 for s in seconds)
    if not values:
        return {"n": 0, "median": None, "p95": None, "max": None}
    p95 = values[max(0, math.ceil(0.95 * len(values)) - 1)]  # nearest rank
    return {"n": len(values), "median": round(statistics.median(values), 2), "p95": round(p95, 2),
            "max": round(values[-1], 2)}


# ----------------------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _filesystem(path: Path) -> str:
    """``ext4 (/dev/vda on /)``: the mount holding ``path`` (longest mount point that contains it)."""
    target = os.path.realpath(path)
    best = ("", "unknown", "?")
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            mount = parts[1].replace("\\040", " ")
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best[0]):
                best = (mount, parts[2], parts[0])
    return f"{best[1]} ({best[2]} on {best[0] or '?'})"


def machine_info(folder: Path) -> dict[str, Any]:
    import paho.mqtt

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 0
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": platform.python_version(),
        "paho_mqtt": paho.mqtt.__version__,
        "sqlite": sqlite3.sqlite_version,
        "mosquitto": mosquitto_version(),
        "outbox_filesystem": _filesystem(folder),
    }


def _outbox_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists())


# --------------------------------------------------------------------------------------- the bench
def run_mqtt_bench(
    *,
    events: int = 500,
    backlog: int = 10_000,
    rate: float = 10.0,
    burst: int = 5,
    live_interval_s: float = 0.1,
    replay_rate: float = 250.0,
    max_inflight: int | None = None,
    crop_bytes: int = 0,
    folder: str | os.PathLike[str] | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """Run the benchmark; returns the measurements (what ``--json`` prints). See the module docstring."""
    ok, why = mosquitto_available()
    if not ok:
        raise BrokerError(why)
    if events < 1 or backlog < 0 or rate <= 0 or burst < 1 or live_interval_s <= 0 or replay_rate <= 0:
        raise BenchError("events >= 1, backlog >= 0, and rate, burst, live interval and replay rate > 0")
    try:
        if folder is not None:
            Path(folder).mkdir(parents=True, exist_ok=True)
        root = Path(tempfile.mkdtemp(prefix="anpr-bench-mqtt-", dir=folder))
    except OSError as error:
        raise BenchError(f"cannot make a folder for the benchmark in {folder or tempfile.gettempdir()}: {error}") from None
    try:
        return _run(root, events=events, backlog=backlog, rate=rate, burst=burst, live_interval_s=live_interval_s,
                    replay_rate=replay_rate, max_inflight=max_inflight, crop_bytes=crop_bytes, seed=seed)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(root: Path, *, events: int, backlog: int, rate: float, burst: int, live_interval_s: float,
         replay_rate: float, max_inflight: int | None, crop_bytes: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    crop = None
    if crop_bytes > 0:  # a stand-in JPEG: its size is what matters
        crop = b"\xff\xd8" + rng.randbytes(max(0, crop_bytes - 4)) + b"\xff\xd9"
    machine = machine_info(root)
    if machine["outbox_filesystem"].startswith("tmpfs"):
        log.warning("the outbox is on tmpfs, which counts no storage writes: give --dir on real storage")
    broker = Broker(root / "broker", persistent=True)  # picks its port; started below
    defaults = MqttConfig()
    try:
        config = MqttConfig(
            enabled=True, host="127.0.0.1", port=broker.port, outbox_path=root / "outbox.sqlite",
            max_inflight=max_inflight or defaults.max_inflight, replay_rate=replay_rate,
            # Reconnect promptly after the planned outage (its time is reported apart from the drain).
            reconnect_min_s=0.05, reconnect_max_s=0.5, keepalive_s=10,
            outbox_max_events=max(defaults.outbox_max_events, 2 * (events + backlog) + 1000),
        )
    except ValidationError as error:  # --replay-rate or --max-inflight out of the config's range
        problems = "; ".join(f"mqtt.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConfigError(f"invalid benchmark settings: {problems}") from None
    outbox: TimedOutbox | None = None
    subscriber: Subscriber | None = None
    publisher: MqttPublisher | None = None
    sent_at: dict[str, float] = {}  # event id -> perf_counter() before publish()
    stored_in: dict[str, float] = {}  # event id -> duration of the publish() call
    kind: dict[str, str] = {}  # event id -> warmup / live / backlog / drain-live
    seq_by_camera: Counter[str] = Counter()
    result: dict[str, Any] = {"machine": machine}

    def publish(camera: str, what: str) -> str:
        assert publisher is not None
        started = time.perf_counter()
        event = publisher.publish(make_event(rng, camera, crop))
        stored_in[event.id] = time.perf_counter() - started
        sent_at[event.id] = started
        kind[event.id] = what
        seq_by_camera[camera] += 1
        return event.id

    try:
        broker.start()
        outbox = TimedOutbox(config.outbox_path, max_events=config.outbox_max_events)
        subscriber = Subscriber(broker.port, plate_topic(config.topic_prefix, DEVICE, "+"))
        publisher = MqttPublisher(config, DEVICE, outbox=outbox).start()
        if not publisher.wait_connected(15):
            raise BenchError(f"the publisher did not connect to the benchmark broker: {publisher.last_error}")
        sender = getattr(publisher, "_thread", None)
        meter = IoMeter([threading.get_native_id()] + ([sender.native_id] if sender and sender.native_id else []))

        # -- warm-up (not measured): first inserts, page cache, connection
        for n in range(WARMUP_EVENTS):
            publish(CAMERAS[n % 2], "warmup")
        if not publisher.wait_idle(30):
            raise BenchError("warm-up events were not acknowledged within 30 s")

        # -- 1. live latency
        log.info("live: %d events at %g/s in bursts of %d (%.0f s)", events, rate, burst, events / rate)
        io_start = meter.read()
        live_ids: list[str] = []
        tick = time.perf_counter()
        while len(live_ids) < events:
            for _ in range(min(burst, events - len(live_ids))):
                live_ids.append(publish(CAMERAS[len(live_ids) % 2], "live"))
            tick += burst / rate
            time.sleep(max(0.0, tick - time.perf_counter()))
        if not publisher.wait_idle(60):
            raise BenchError(f"live events not all acknowledged within 60 s ({len(outbox)} left)")
        io_live = meter.read()
        subscriber.wait_for(live_ids, timeout=30)
        result["live"] = _latencies(live_ids, sent_at, stored_in, outbox, subscriber) | {
            "rate_per_s": rate, "burst": burst, "target_median_ms": LATENCY_TARGET_MS}
        result["live"]["ok"] = (result["live"]["puback_ms"]["median"] or math.inf) < LATENCY_TARGET_MS
        writes: dict[str, Any] = {"live": _delta("live (put + ack)", io_start, io_live, len(live_ids))}

        # -- 2. backlog: store with the broker down, drain after it is back, live events meanwhile
        if backlog:
            result["backlog"], backlog_writes = _backlog_phase(
                backlog, live_interval_s, replay_rate, broker, publisher, outbox, subscriber, meter, publish,
                sent_at, stored_in)
            writes.update(backlog_writes)
        result["writes"] = {"method": (
            "Linux /proc accounting over each phase. write_bytes: bytes the process caused to be written to "
            "storage (page-cache pages dirtied, again after each fsync; .db, -wal and -shm; 0 on tmpfs). "
            "wchar: bytes the publishing and sender threads passed to write() (SQLite WAL frames and "
            "checkpoints, plus 1 byte per MQTT publish to wake paho)."), "phases": writes}
        # Everything sent must reach the subscriber (the broker queues for it across the restart).
        subscriber.wait_for(sent_at, timeout=60 + backlog / 500)
    finally:
        if publisher is not None:
            publisher.close(timeout=10)
        if outbox is not None:
            outbox.close()
        if subscriber is not None:
            subscriber.close()
        broker.stop()

    assert subscriber is not None
    subscriber.update()
    result["delivery"] = _delivery(subscriber, kind, seq_by_camera)
    payload_sizes = [len(json.dumps(p, separators=(",", ":"))) for p in subscriber.payloads[:100]]
    result["settings"] = {
        "events": events, "backlog": backlog, "rate_per_s": rate, "burst": burst, "live_interval_s": live_interval_s,
        "replay_rate": replay_rate, "default_replay_rate": defaults.replay_rate, "max_inflight": config.max_inflight,
        "qos": config.qos, "protocol": config.protocol, "crop_bytes": crop_bytes,
        "payload_bytes": round(statistics.mean(payload_sizes)) if payload_sizes else None,
        "warmup_events": WARMUP_EVENTS,
    }
    return result


def _latencies(ids: list[str], sent_at: dict[str, float], stored_in: dict[str, float], outbox: TimedOutbox,
               subscriber: Subscriber) -> dict[str, Any]:
    acked = [outbox.acked[i] for i in ids if i in outbox.acked]
    return {
        "events": len(ids),
        "acked": len(acked),
        "publish_call_ms": summarize_ms(stored_in[i] for i in ids),
        "puback_ms": summarize_ms(outbox.acked[i][0] - sent_at[i] for i in ids if i in outbox.acked),
        "removed_ms": summarize_ms(outbox.acked[i][1] - sent_at[i] for i in ids if i in outbox.acked),
        "subscriber_ms": summarize_ms(subscriber.first_seen[i] - sent_at[i] for i in ids if i in subscriber.first_seen),
    }


def _backlog_phase(
    backlog: int, live_interval_s: float, replay_rate: float, broker: Broker, publisher: MqttPublisher,
    outbox: TimedOutbox, subscriber: Subscriber, meter: IoMeter, publish: Callable[[str, str], str],
    sent_at: dict[str, float], stored_in: dict[str, float],
) -> tuple[dict[str, Any], dict[str, Any]]:
    mqtt_log = logging.getLogger("anpr_edge.mqtt")
    level = mqtt_log.level
    mqtt_log.setLevel(logging.ERROR)  # the outage is on purpose: no "retrying" warning per attempt
    try:
        broker.stop()
        deadline = time.monotonic() + 10
        while publisher.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        if publisher.connected:
            raise BenchError("the publisher did not notice the broker stop within 10 s")
        log.info("backlog: storing %d events with the broker stopped", backlog)
        io_start = meter.read()
        started = time.perf_counter()
        backlog_ids = [publish(CAMERAS[n % 2], "backlog") for n in range(backlog)]
        store_s = time.perf_counter() - started
        io_stored = meter.read()
        peak_bytes = _outbox_bytes(outbox.path)
        sessions = len(outbox.sessions)
        broker_started = time.perf_counter()  # before: the publisher may connect before start() returns
        broker.start()
        deadline = time.monotonic() + 30
        while len(outbox.sessions) == sessions:
            if time.monotonic() > deadline:
                raise BenchError("the publisher did not reconnect within 30 s of the broker restart")
            time.sleep(0.002)
    finally:
        mqtt_log.setLevel(level)
    connected = outbox.sessions[-1]
    log.info("backlog: draining %d events at replay_rate %g/s, a live event every %g s", backlog, replay_rate,
             live_interval_s)
    drain_live: list[str] = []
    done = 0  # backlog[:done] are acknowledged (they drain in order)
    limit = connected + max(120.0, 5.0 * backlog / replay_rate)
    tick = time.perf_counter()
    while time.perf_counter() < limit:
        while done < backlog and backlog_ids[done] in outbox.acked:
            done += 1
        if done == backlog:
            break
        drain_live.append(publish(CAMERAS[0], "drain-live"))
        tick += live_interval_s
        time.sleep(max(0.0, tick - time.perf_counter()))
    drained = all(i in outbox.acked for i in backlog_ids)
    publisher.wait_idle(30)
    io_drained = meter.read()
    last_ack = max((outbox.acked[i][0] for i in backlog_ids if i in outbox.acked), default=math.nan)
    drain_s = last_ack - connected
    subscriber.wait_for(drain_live, timeout=30)
    live = _latencies(drain_live, sent_at, stored_in, outbox, subscriber)
    phase = {
        "events": backlog,
        "store_s": round(store_s, 2),
        "stored_per_s": round(backlog / store_s, 1),
        "outbox_bytes_when_stored": peak_bytes,
        "reconnect_after_broker_start_s": round(connected - broker_started, 3),
        "drained": drained,
        "acked": sum(1 for i in backlog_ids if i in outbox.acked),
        "drain_s": round(drain_s, 2) if drained else None,
        "drained_per_s": round(backlog / drain_s, 1) if drained and drain_s > 0 else None,
        "target_s": DRAIN_TARGET_S,
        "ok": drained and drain_s < DRAIN_TARGET_S,
        "live_interval_s": live_interval_s,
        "live_during_drain": live,
        "live_ok": (live["puback_ms"]["median"] or math.inf) < LATENCY_TARGET_MS,
    }
    writes = {
        "backlog_store": _delta("backlog stored (put)", io_start, io_stored, backlog),
        "backlog_drain": _delta("backlog drained (ack; + live put/ack)", io_stored, io_drained,
                                backlog + len(drain_live)),
    }
    return phase, writes


def _delivery(subscriber: Subscriber, kind: dict[str, str], seq_by_camera: Counter[str]) -> dict[str, Any]:
    schema_errors: list[str] = list(subscriber.undecodable)
    counts: Counter[str] = Counter()
    first: dict[str, dict[str, Any]] = {}
    for payload in subscriber.payloads:
        try:
            validate_payload(payload)
        except PayloadError as error:
            schema_errors.append(str(error))
        counts[payload["id"]] += 1
        first.setdefault(payload["id"], payload)
    wrong_replayed = sum(
        1 for event_id, payload in first.items()
        if event_id in kind and payload.get("replayed") != (kind[event_id] == "backlog"))
    seqs: dict[str, set[int]] = {}
    for payload in first.values():
        seqs.setdefault(payload["camera"], set()).add(int(payload["seq"]))
    gaps = sum(len(set(range(1, n + 1)) - seqs.get(camera, set())) for camera, n in seq_by_camera.items())
    lost = len(set(kind) - set(first))
    result = {
        "sent": len(kind),
        "received": sum(counts.values()),
        "unique": len(first),
        "lost": lost,
        "duplicates": sum(counts.values()) - len(counts),
        "unknown": len(set(first) - set(kind)),
        "schema_checked": len(subscriber.payloads),
        "schema_errors": len(schema_errors),
        "first_schema_error": schema_errors[0] if schema_errors else None,
        "replayed_flag_wrong": wrong_replayed,
        "seq_gaps": gaps,
    }
    result["ok"] = not (lost or result["duplicates"] or result["unknown"] or schema_errors or wrong_replayed or gaps)
    return result


# ------------------------------------------------------------------------------------------- report
def _ms(summary: dict[str, Any]) -> str:
    if not summary["n"]:
        return "none"
    return f"median {summary['median']:.1f} ms, p95 {summary['p95']:.1f} ms, max {summary['max']:.1f} ms (n={summary['n']})"


def _bytes(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value / 1024:.1f} KiB" if value >= 1024 else f"{value:.0f} B"


def _verdict(ok: bool) -> str:
    return "**pass**" if ok else "**FAIL**"


def render_markdown(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        f"MQTT benchmark, anpr-edge {__version__}: {m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable, load "
        f"{' / '.join(str(v) for v in m['load_average'] or [])} at start), {m['os']}; Python {m['python']}, "
        f"paho-mqtt {m['paho_mqtt']}, SQLite {m['sqlite']}, Mosquitto {m['mosquitto']} on 127.0.0.1; outbox on "
        f"{m['outbox_filesystem']}. QoS {s['qos']}, MQTT {s['protocol']}, max_inflight {s['max_inflight']}, "
        f"payload ~{s['payload_bytes']} B" + (f" (crop {s['crop_bytes']} B)" if s["crop_bytes"] else " (no image)")
        + ".",
        "",
        "| measure | result | target |",
        "| --- | --- | --- |",
    ]
    live = result["live"]
    pace = f"{live['events']} events, {live['rate_per_s']:g}/s in bursts of {live['burst']}"
    lines += [
        f"| live: publish() → PUBACK ({pace}) | {_ms(live['puback_ms'])} | median < {LATENCY_TARGET_MS:.0f} ms: "
        f"{_verdict(live['ok'])} |",
        f"| live: publish() call (durable store, fsync) | {_ms(live['publish_call_ms'])} | |",
        f"| live: publish() → event deleted from the outbox | {_ms(live['removed_ms'])} | |",
        f"| live: publish() → received by a subscriber | {_ms(live['subscriber_ms'])} | |",
    ]
    backlog = result.get("backlog")
    if backlog:
        drain = (f"{backlog['drain_s']:.1f} s ({backlog['drained_per_s']:.0f}/s)" if backlog["drained"]
                 else f"not finished: {backlog['acked']} of {backlog['events']} acknowledged")
        during = backlog["live_during_drain"]
        lines += [
            f"| backlog: store {backlog['events']:,} events, broker down | {backlog['store_s']:.1f} s "
            f"({backlog['stored_per_s']:.0f}/s); outbox {_bytes(backlog['outbox_bytes_when_stored'])} on disk | |",
            f"| backlog: reconnect after starting the broker again | {backlog['reconnect_after_broker_start_s']:.2f} s "
            f"(broker start-up, backoff) | |",
            f"| backlog: drain after reconnect (replay_rate {s['replay_rate']:g}/s) | {drain} | "
            f"< {DRAIN_TARGET_S:.0f} s: {_verdict(backlog['ok'])} |",
            f"| live during the drain, one per {backlog['live_interval_s']:g} s: publish() → PUBACK | {_ms(during['puback_ms'])}"
            f" | median < {LATENCY_TARGET_MS:.0f} ms: {_verdict(backlog['live_ok'])} |",
        ]
    for w in result["writes"]["phases"].values():
        lines.append(f"| outbox writes per event, {w['label']} | {_bytes(w['write_bytes_per_event'])} to storage "
                     f"(write_bytes), {_bytes(w['wchar_per_event'])} by SQLite (wchar); {w['events']:,} events | |")
    d = result["delivery"]
    lines.append(
        f"| delivery at a subscriber | {d['sent']:,} sent, {d['lost']} lost, {d['duplicates']} duplicates, "
        f"{d['schema_checked']:,} payloads schema-checked ({d['schema_errors']} invalid), replayed flag wrong on "
        f"{d['replayed_flag_wrong']}, {d['seq_gaps']} seq gaps | 0 lost, 0 duplicates: {_verdict(d['ok'])} |")
    lines += ["", f"Writes: {result['writes']['method']}"]
    if backlog and s["replay_rate"] != s["default_replay_rate"]:
        lines.append(
            f"Drained at replay_rate {s['replay_rate']:g}/s; with the shipped default mqtt.replay_rate "
            f"({s['default_replay_rate']:g}/s) {backlog['events']:,} events take at least "
            f"{backlog['events'] / s['default_replay_rate']:.0f} s.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------- CLI
def cmd_bench_mqtt(args: argparse.Namespace) -> int:
    result = run_mqtt_bench(
        events=args.events, backlog=args.backlog, rate=args.rate, burst=args.burst, replay_rate=args.replay_rate,
        max_inflight=args.max_inflight, crop_bytes=args.crop_bytes, folder=args.dir,
    )
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_markdown(result))
    sys.stdout.flush()
    return 0 if result["delivery"]["ok"] else 1


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    bench = commands.add_parser(
        "bench-mqtt",
        help="benchmark MQTT publishing: latency to PUBACK, backlog drain, outbox writes per event",
        description="Start a local Mosquitto (system binary, free port, temporary folder) and measure the real "
        "publisher and outbox: latency from publish() to PUBACK of live events, the drain of a backlog stored "
        "while the broker was stopped (with live events flowing), outbox bytes written per event, and delivery "
        "at a subscriber (lost, duplicates by id, schema). Prints a Markdown table, or JSON. Exit code 1 if an "
        "event was lost, duplicated or invalid.",
    )
    bench.add_argument("--events", type=positive_int, default=500, metavar="N", help="live events (default 500)")
    bench.add_argument("--backlog", type=non_negative_int, default=10_000, metavar="N",
                       help="events stored during the outage, then drained (default 10000; 0 skips it)")
    bench.add_argument("--rate", type=positive_float, default=10.0, metavar="PER_S",
                       help="live events per second (default 10)")
    bench.add_argument("--burst", type=positive_int, default=5, metavar="N",
                       help="live events published back to back per burst (default 5)")
    bench.add_argument("--replay-rate", type=positive_float, default=250.0, metavar="PER_S",
                       help="mqtt.replay_rate for the drain (default 250, the config default)")
    bench.add_argument("--max-inflight", type=positive_int, metavar="N", help="mqtt.max_inflight (default: config's)")
    bench.add_argument("--crop-bytes", type=non_negative_int, default=0, metavar="N",
                       help="include an N-byte crop JPEG in each event (default 0: no image)")
    bench.add_argument("--dir", metavar="DIR",
                       help="where the outbox lives (default: the temp folder); put it on the storage to measure")
    bench.add_argument("--json", action="store_true", help="print the measurements as JSON")
    bench.set_defaults(handler=cmd_bench_mqtt)
