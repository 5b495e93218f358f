"""MQTT commands: ``schema``, ``subscribe`` and ``parking-validate``, the reference consumers.

They show backend developers how to consume the event stream: subscribe at QoS 1, validate against the
schema, drop duplicates by event id (delivery is at least once), and answer on a topic of one's own.

    anpr-edge schema
    anpr-edge subscribe --mqtt-url mqtt://host [--topic '$share/backend/anpr/+/+/plate'] [--count N]
    anpr-edge parking-validate --mqtt-url mqtt://host --permits permits.csv

``register(commands)`` adds them to the main parser; ``python -m anpr_edge.mqtt_cli`` runs them alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import queue
import signal
import sqlite3
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from datetime import time as dtime
from pathlib import Path
from typing import Any, TextIO

from anpr_edge.argtypes import positive_int
from anpr_edge.errors import AnprError, ConfigError
from anpr_edge.events import (
    PayloadError,
    decode_payload,
    format_time,
    parse_time,
    schema_text,
    validate_payload,
)
from anpr_edge.publisher import configure_client, decision_topic, mqtt_config_from_url

log = logging.getLogger("anpr_edge.mqtt_cli")

DEFAULT_PREFIX = "anpr"
_SEEN_IDS = 10_000  # duplicates arrive close together (a redelivery after a reconnect), so a window suffices


# ------------------------------------------------------------------------------------------- permits
@dataclass(frozen=True)
class Permit:
    """One row of the permits file. ``plate`` is normalised; times are aware datetimes or None (open)."""

    plate: str
    valid_from: datetime | None
    valid_to: datetime | None
    row: dict[str, str]  # the row as written, echoed in decisions

    def valid_at(self, when: datetime) -> bool:
        return (self.valid_from is None or self.valid_from <= when) and (self.valid_to is None or when <= self.valid_to)


def normalise_plate(text: str) -> str:
    """The events' form: upper case, letters and digits only (``ab-123 cd`` -> ``AB123CD``)."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


def _permit_time(text: str, *, end: bool, where: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    try:
        if len(text) == 10:  # a date: valid from its first to its last second
            day = date.fromisoformat(text)
            moment = datetime.combine(day, dtime.max if end else dtime.min)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{where}: not an ISO date or time: {text!r} (use 2025-12-31 or 2025-12-31T18:00)") from None
    return moment if moment.tzinfo else moment.astimezone()  # no zone given: this machine's local time


def load_permits(path: str | Path) -> list[Permit]:
    """Permits from a CSV file (a ``plate`` column; optional ``valid_from``/``valid_to``; others kept)
    or an SQLite file (a ``permits`` table with the same columns)."""
    path = Path(path)
    try:
        head = path.read_bytes()[:16]
    except FileNotFoundError:
        raise ConfigError(f"--permits {path}: file not found") from None
    except OSError as error:
        raise ConfigError(f"--permits {path}: cannot read: {error.strerror or error}") from None
    rows = _sqlite_rows(path) if head.startswith(b"SQLite format 3") else _csv_rows(path)
    permits = []
    for where, row in rows:
        plate = normalise_plate(row.get("plate") or "")
        if not plate:
            raise ConfigError(f"{where}: empty plate")
        permits.append(Permit(
            plate,
            _permit_time(row.get("valid_from") or "", end=False, where=f"{where}: valid_from"),
            _permit_time(row.get("valid_to") or "", end=True, where=f"{where}: valid_to"),
            {k: v for k, v in row.items() if v not in (None, "")},
        ))
    return permits


def _csv_rows(path: Path) -> list[tuple[str, dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            fields = [name.strip().lower() for name in reader.fieldnames or []]
            if "plate" not in fields:
                raise ConfigError(f"--permits {path}: no 'plate' column in the header line (found: {', '.join(fields) or 'nothing'})")
            return [
                (f"{path}:{reader.line_num}", {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()})
                for row in reader
            ]
    except UnicodeDecodeError:
        raise ConfigError(f"--permits {path}: not UTF-8 text (a CSV file or an SQLite database is expected)") from None


def _sqlite_rows(path: Path) -> list[tuple[str, dict[str, str]]]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            db.row_factory = sqlite3.Row
            rows = db.execute("SELECT * FROM permits").fetchall()
        finally:
            db.close()
    except sqlite3.Error as error:
        raise ConfigError(f"--permits {path}: needs a 'permits' table with a 'plate' column: {error}") from None
    out = []
    for n, row in enumerate(rows, 1):
        record = {key.lower(): "" if row[key] is None else str(row[key]) for key in row.keys()}  # noqa: SIM118 - sqlite3.Row is not a dict
        if "plate" not in record:
            raise ConfigError(f"--permits {path}: the permits table has no 'plate' column")
        out.append((f"{path}: permits row {n}", record))
    return out


def decide(payload: dict[str, Any], permits: Sequence[Permit], *, max_distance: int = 1,
           min_confidence: float = 0.0) -> dict[str, Any]:
    """The decision message for one plate event: permitted / not_permitted / unknown.

    The closest permit plate (Levenshtein distance, at most ``max_distance``) decides; among equally
    close ones a permit valid at the event's end time wins. An unread, hashed or low-confidence plate is
    ``unknown``: a human (or the barrier's intercom) has to decide.
    """
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    decision: dict[str, Any] = {
        "schema": 1,
        "event_id": payload["id"],
        "device": payload["device"],
        "camera": payload["camera"],
        "seq": payload["seq"],
        "text": payload["text"],
        "replayed": payload.get("replayed", False),
        "decision": "unknown",
        "reason": "",
        "permit": None,
        "distance": None,
        "time": format_time(time.time()),
    }
    text = payload.get("text")
    if text is None:
        decision["reason"] = "plate text hashed (privacy mode)" if payload.get("text_hash") else "plate not read"
        return decision
    if float(payload.get("confidence", 0.0)) < min_confidence:
        decision["reason"] = f"confidence {payload['confidence']} below {min_confidence}"
        return decision
    when = datetime.fromtimestamp(parse_time(payload["end"]), tz=timezone.utc)
    matches = process.extract(normalise_plate(text), [p.plate for p in permits], scorer=Levenshtein.distance,
                              score_cutoff=max_distance, limit=None)
    ranked = sorted(((int(distance), not permits[i].valid_at(when), i) for _, distance, i in matches))
    if not ranked:
        decision.update(decision="not_permitted", reason="no permit for this plate")
        return decision
    distance, expired, index = ranked[0]
    decision.update(permit=permits[index].row, distance=distance)
    if expired:
        decision.update(decision="not_permitted", reason="permit not valid at this time")
    else:
        decision.update(decision="permitted", reason="valid permit" if distance == 0 else "valid permit (near match)")
    return decision


# -------------------------------------------------------------------------------------- subscriber
class _Seen:
    """The last few thousand event ids: at-least-once delivery means some arrive twice."""

    def __init__(self, size: int = _SEEN_IDS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def check_and_add(self, event_id: str) -> bool:
        if event_id in self._ids:
            return True
        self._ids[event_id] = None
        if len(self._ids) > self._size:
            self._ids.popitem(last=False)
        return False


def _listen(
    args: argparse.Namespace,
    topics: Sequence[str],
    handle: Callable[[Any, Any], bool],
) -> int:
    """Connect, subscribe and call ``handle(client, message)`` on this thread for each message until
    ``--count`` handled messages (handle returned True), ``--timeout`` or SIGINT/SIGTERM."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    config = mqtt_config_from_url(args.mqtt_url)
    v5 = args.protocol == "5"
    inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
    # A fixed --client-id asks for a persistent session: the broker queues events while we are away.
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=args.client_id or "",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else args.client_id is None,
    )
    configure_client(client, config)
    client.reconnect_delay_set(1, 30)

    def on_connect(c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            inbox.put(("refused", reason))
            return
        c.subscribe([(topic, 1) for topic in topics])

    client.on_connect = on_connect
    client.on_connect_fail = lambda _c, _u: inbox.put(("unreachable", None))
    client.on_subscribe = lambda _c, _u, _mid, reasons, _p: inbox.put(("subscribed", reasons))
    client.on_message = lambda _c, _u, message: inbox.put(("message", message))
    stop = threading.Event()
    _install_stop(stop)
    connect_kwargs: dict[str, Any] = {"clean_start": args.client_id is None} if v5 else {}
    client.connect_async(config.host, config.port, config.keepalive_s, **connect_kwargs)
    client.loop_start()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    handled = 0
    try:
        while not stop.is_set() and (args.count is None or handled < args.count):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            try:
                kind, value = inbox.get(timeout=0.5 if left is None else min(left, 0.5))
            except queue.Empty:
                continue
            if kind == "refused":
                raise AnprError(f"broker {config.host}:{config.port} refused the connection: {value}"
                                " (check the user and password in --mqtt-url)")
            if kind == "unreachable":
                log.warning("cannot reach the broker at %s:%d; retrying", config.host, config.port)
            elif kind == "subscribed":
                if any(getattr(r, "is_failure", False) for r in value):
                    raise AnprError(f"the broker refused the subscription to {', '.join(topics)}")
                log.info("subscribed to %s", ", ".join(topics))
            elif handle(client, value):
                handled += 1
    finally:
        client.disconnect()
        client.loop_stop()
    if args.count is not None and handled < args.count:
        log.error("got %d of %d message(s) before stopping", handled, args.count)
        return 1
    return 0


def _install_stop(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return  # signals reach the main thread only (handlers called from tests)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())


def _plate_event(message: Any, seen: _Seen | None) -> dict[str, Any] | None:
    """The validated payload of a plate message, or None (invalid: logged; duplicate: skipped)."""
    try:
        payload = decode_payload(message.payload)
        validate_payload(payload)
    except PayloadError as error:
        log.error("%s: %s", message.topic, error)
        return None
    if seen is not None and seen.check_and_add(payload["id"]):
        log.debug("duplicate of event %s skipped (at-least-once delivery)", payload["id"])
        return None
    return payload


def _write(record: dict[str, Any], out: TextIO) -> None:
    out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()


# ------------------------------------------------------------------------------------------ commands
def cmd_schema(args: argparse.Namespace) -> int:
    sys.stdout.write(schema_text())
    return 0


def cmd_subscribe(args: argparse.Namespace) -> int:
    topics = args.topic or [f"{args.prefix}/+/+/plate"]
    seen = None if args.keep_duplicates else _Seen()

    def handle(_client: Any, message: Any) -> bool:
        if message.topic.endswith("/plate"):
            payload = _plate_event(message, seen)
            if payload is None:
                return False
            _write(payload, sys.stdout)
            return True
        try:  # status and decision topics: shown as they are
            body: Any = json.loads(message.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            body = message.payload.decode("utf-8", errors="replace")
        _write({"topic": message.topic, "payload": body, "retained": bool(message.retain)}, sys.stdout)
        return True

    return _listen(args, topics, handle)


def cmd_parking_validate(args: argparse.Namespace) -> int:
    permits = load_permits(args.permits)
    log.info("%d permit(s) loaded from %s", len(permits), args.permits)
    seen = _Seen()

    def handle(client: Any, message: Any) -> bool:
        payload = _plate_event(message, seen)
        if payload is None:
            return False
        decision = decide(payload, permits, max_distance=args.max_distance, min_confidence=args.min_confidence)
        topic = decision_topic(args.prefix, payload["camera"])
        info = client.publish(topic, json.dumps(decision, ensure_ascii=False, separators=(",", ":")), qos=1)
        # Wait for the broker's PUBACK: a barrier waits on this answer, and paho drops a message still
        # queued when the client disconnects (at --count or SIGTERM).
        try:
            info.wait_for_publish(timeout=5.0)
        except (RuntimeError, ValueError):
            pass
        if not info.is_published():
            log.warning("decision for event %s not acknowledged by the broker", payload["id"])
        _write({"topic": topic, **decision}, sys.stdout)
        return True

    return _listen(args, [f"{args.prefix}/+/+/plate"], handle)


# ------------------------------------------------------------------------------------------- parser
def _connection_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt-url", required=True, metavar="URL",
                        help="broker: mqtt://[user[:password]@]host[:port] or mqtts://... (TLS, system CAs)")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="topic prefix (default: anpr)")
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="3.1.1", help="MQTT version (default 3.1.1)")
    parser.add_argument("--client-id", metavar="ID",
                        help="fixed client id: a persistent session, so the broker keeps events while this is down")
    parser.add_argument("--count", type=positive_int, metavar="N", help="exit after N messages")
    parser.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds")


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of the plate event payload",
        description="Print the JSON Schema (draft 2020-12) that every published plate event validates against.",
    )
    schema.set_defaults(handler=cmd_schema)

    subscribe = commands.add_parser(
        "subscribe",
        help="print the plate events on a broker as JSON lines (a reference consumer)",
        description="Subscribe at QoS 1 and print each plate event as one JSON line on stdout, validated "
        "against the schema and with duplicates (at-least-once delivery) dropped by event id. Other topics "
        "given with --topic print as {topic, payload, retained}.",
    )
    _connection_args(subscribe)
    subscribe.add_argument("--topic", action="append", metavar="FILTER",
                           help="topic filter, repeatable (default PREFIX/+/+/plate; MQTT 5 shared "
                           "subscriptions: $share/GROUP/anpr/+/+/plate)")
    subscribe.add_argument("--keep-duplicates", action="store_true", help="print redelivered events again")
    subscribe.set_defaults(handler=cmd_subscribe)

    parking = commands.add_parser(
        "parking-validate",
        help="answer each plate event with a parking decision from a permits file (a reference backend)",
        description="For each plate event, find the closest permit plate (edit distance) and publish "
        "{decision: permitted | not_permitted | unknown, permit, distance, reason} on PREFIX/CAMERA/decision. "
        "Permits: a CSV file with a 'plate' column and optional 'valid_from'/'valid_to' (ISO dates or times; "
        "no zone: local time), or an SQLite file with a 'permits' table of those columns.",
    )
    _connection_args(parking)
    parking.add_argument("--permits", required=True, metavar="FILE", help="permits.csv or an SQLite database")
    parking.add_argument("--max-distance", type=int, default=1, metavar="N",
                         help="most character edits between read and permit plate (default 1)")
    parking.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                         help="below this event confidence the decision is 'unknown' (default 0)")
    parking.set_defaults(handler=cmd_parking_validate)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m anpr_edge.mqtt_cli COMMAND ...``: the same commands without the rest of the CLI."""
    # Imported here, not at the top: the main CLI imports this module to register its commands.
    from anpr_edge.cli import run_command

    parser = argparse.ArgumentParser(prog="anpr-edge", description="MQTT tools of anpr-edge.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    return run_command(parser.parse_args(argv))

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
