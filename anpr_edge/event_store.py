"""The recent events behind the web page: a small SQLite store with a retention limit.

Every event the daemon emits (the MQTT payload, through an ``EventRouter`` sink) is kept here with its
best crop as a JPEG, so an installer can look through the last passages and search them by plate text.
It is a convenience for people, not a delivery queue (that is ``outbox.py``): ``synchronous=NORMAL`` in
WAL mode (a power cut may lose the last events, never the file), and bounded twice, by count
(``max_events``) and by age (``max_age_s``), both enforced on every ``add``.

Images: the payload's base64 ``crop_jpeg`` (``events.crop: base64``) or the file at ``crop_path``
(``events.crop: file``) is stored as a BLOB beside the payload; the payload is stored without its inline
images (``crop_jpeg``, ``snapshot_jpeg`` set to null), so listing events stays cheap. In privacy mode
(``events.hash_text``) payloads carry no text: those events are listed but cannot be found by text.

Search: ``plate`` is normalised like plate text (upper case, letters and digits only) and matched as a
substring of the event's text, so ``ab-123`` finds ``AB123CD``. ``since`` is epoch seconds (the event's
end time). Thread-safe: one connection, one lock; the HTTP handler threads read while the inference loop
writes.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from anpr_edge.errors import AnprError
from anpr_edge.events import PayloadError, parse_time

log = logging.getLogger("anpr_edge.event_store")

MAX_CROP_BYTES = 2 << 20  # a plate crop is a few KB; anything this large is not one
_NOT_PLATE = re.compile(r"[^0-9A-Z]")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    n INTEGER PRIMARY KEY,            -- insertion order
    id TEXT NOT NULL UNIQUE,          -- the event id (UUID)
    camera TEXT NOT NULL,
    stored REAL NOT NULL,             -- epoch seconds when stored (the age bound)
    end_time REAL NOT NULL,           -- the event's end, epoch seconds (search: since)
    text TEXT,                        -- normalised plate text, NULL when not read or hashed
    payload TEXT NOT NULL,            -- the MQTT payload, JSON, without inline images
    crop BLOB                         -- the best crop, JPEG
);
CREATE INDEX IF NOT EXISTS events_end ON events(end_time);
CREATE INDEX IF NOT EXISTS events_stored ON events(stored);
"""


class EventStoreError(AnprError):
    """The recent-events file cannot be used."""


def normalise_plate(text: str) -> str:
    """Plate text as the OCR writes it: upper case, letters and digits only (``ab-12 3`` -> ``AB123``)."""
    return _NOT_PLATE.sub("", text.upper())


def default_events_path(environ: Mapping[str, str] | None = None) -> Path:
    """``events.sqlite`` beside the outbox: ``$ANPR_EDGE_STATE_DIR``, ``$STATE_DIRECTORY`` or the XDG state dir."""
    from anpr_edge.outbox import default_outbox_path

    return default_outbox_path(environ).parent / "events.sqlite"


def _time_of(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_time(value)
        except PayloadError:
            return None
    return None


class EventStore:
    """Recent event payloads and crops, newest kept, searchable by plate text and time."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_events: int = 1000,
        max_age_s: float = 168 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_events = max(0, int(max_events))
        self.max_age_s = float(max_age_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        try:
            if str(self.path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=5.0)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as error:
            raise EventStoreError(f"recent events {self.path}: cannot use it: {error}") from None
        self.prune()

    # -------------------------------------------------------------------------------------------- writes
    def add(self, payload: Mapping[str, Any]) -> bool:
        """Store one event payload (an ``EventRouter`` sink). Never raises: a broken store must not stop
        events; failures are logged. Returns whether it was stored."""
        try:
            return self._add(payload)
        except Exception as error:  # noqa: BLE001 - see above
            log.warning("recent events: event %s not stored: %s", payload.get("id"), error)
            return False

    def _add(self, payload: Mapping[str, Any]) -> bool:
        if self.max_events == 0 or self._closed:
            return False
        event_id = str(payload["id"])
        crop = self._crop_of(payload)
        stored = dict(payload)
        stored["crop_jpeg"] = None
        stored["snapshot_jpeg"] = None
        text = payload.get("text")
        text = normalise_plate(text) if isinstance(text, str) and text else None
        end_time = _time_of(payload.get("end")) or _time_of(payload.get("start")) or self._clock()
        with self._lock:
            if self._closed:
                return False
            now = self._clock()
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO events(id, camera, stored, end_time, text, payload, crop) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (event_id, str(payload.get("camera", "")), now, end_time, text,
                     json.dumps(stored, ensure_ascii=False, separators=(",", ":")), crop),
                )
                self._prune_locked(now)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return True

    @staticmethod
    def _crop_of(payload: Mapping[str, Any]) -> bytes | None:
        inline = payload.get("crop_jpeg")
        if isinstance(inline, str) and inline:
            try:
                data = base64.b64decode(inline, validate=True)
            except (binascii.Error, ValueError):
                return None
            return data if len(data) <= MAX_CROP_BYTES else None
        path = payload.get("crop_path")
        if isinstance(path, str) and path:
            try:
                with open(path, "rb") as handle:
                    data = handle.read(MAX_CROP_BYTES + 1)
            except OSError:
                return None
            return data if len(data) <= MAX_CROP_BYTES else None
        return None

    def prune(self) -> int:
        """Apply both bounds now (``add`` does it too). Returns how many events were deleted."""
        with self._lock:
            if self._closed:
                return 0
            return self._prune_locked(self._clock())

    def _prune_locked(self, now: float) -> int:
        removed = self._db.execute("DELETE FROM events WHERE stored < ?", (now - self.max_age_s,)).rowcount
        removed += self._db.execute(
            "DELETE FROM events WHERE n <= (SELECT n FROM events ORDER BY n DESC LIMIT 1 OFFSET ?)",
            (self.max_events,),
        ).rowcount
        return max(0, removed)

    # --------------------------------------------------------------------------------------------- reads
    def search(
        self,
        plate: str | None = None,
        *,
        since: float | None = None,
        until: float | None = None,
        camera: str | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Newest first: events whose text contains ``plate`` (normalised), ended at or after ``since``
        (epoch seconds), before ``until``, on ``camera``. Each is the stored payload plus ``has_crop``."""
        where, params = ["1"], []
        if plate is not None and plate.strip():
            wanted = normalise_plate(plate)
            if not wanted:
                return []  # only separators: nothing can match
            where.append("instr(text, ?) > 0")
            params.append(wanted)
        if since is not None:
            where.append("end_time >= ?")
            params.append(float(since))
        if until is not None:
            where.append("end_time < ?")
            params.append(float(until))
        if camera:
            where.append("camera = ?")
            params.append(camera)
        limit = max(1, min(int(limit), 1000))
        with self._lock:
            if self._closed:
                return []
            rows = self._db.execute(
                f"SELECT payload, crop IS NOT NULL FROM events WHERE {' AND '.join(where)} "  # noqa: S608
                "ORDER BY end_time DESC, n DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [{**json.loads(payload), "has_crop": bool(has_crop)} for payload, has_crop in rows]

    def get(self, event_id: str) -> dict[str, Any] | None:
        with self._lock:
            if self._closed:
                return None
            row = self._db.execute("SELECT payload, crop IS NOT NULL FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else {**json.loads(row[0]), "has_crop": bool(row[1])}

    def crop(self, event_id: str) -> bytes | None:
        """The event's crop JPEG, None when there is none (or the event is gone)."""
        with self._lock:
            if self._closed:
                return None
            row = self._db.execute("SELECT crop FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def counts_by_camera(self) -> dict[str, int]:
        with self._lock:
            if self._closed:
                return {}
            rows = self._db.execute("SELECT camera, COUNT(*) FROM events GROUP BY camera").fetchall()
        return {camera: int(n) for camera, n in rows}

    def __len__(self) -> int:
        with self._lock:
            if self._closed:
                return 0
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    # --------------------------------------------------------------------------------------------- close
    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass
            self._db.close()

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_event_store(http: Any) -> EventStore | None:
    """The store an ``HttpConfig`` asks for, or None (``events_keep: 0``, or it cannot be opened: logged)."""
    if http.events_keep <= 0:
        return None
    path = http.events_path or default_events_path()
    try:
        return EventStore(path, max_events=http.events_keep, max_age_s=http.events_max_age_h * 3600.0)
    except EventStoreError as error:
        log.error("%s; the web page runs without recent events", error)
        return None
