"""The store-and-forward outbox: every event is on disk before it is sent, until the broker has it.

One SQLite file in WAL mode with ``synchronous=FULL``: ``put`` returns only once the event would survive
a crash or a power cut, and a row is deleted only when the broker acknowledged it (``ack``). So after a
``kill -9`` or a reboot whatever is still here is what the broker never confirmed, and it is sent again
(at least once; subscribers drop duplicates by event id).

The outbox is the only queue. What is in flight (sent, not yet acknowledged) is process memory, not
disk: after a crash nothing is in flight and everything left is sent again, which is exactly right.

Rows are published in rowid order. ``start_session`` (called on every connect) draws a line: rows stored
before it are the backlog (sent with ``replayed: true``, rate-limited, after live events), rows stored
after it are live. Per-camera sequence numbers are allocated here, in the same transaction as the row,
so they survive restarts and never repeat.

Bounds: ``max_events`` and ``max_age_s``. Beyond them the oldest events are dropped; that is the last
resort, so every drop is counted per camera (persistently) and logged, and the publisher reports it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anpr_edge.errors import AnprError
from anpr_edge.events import encode_payload

log = logging.getLogger("anpr_edge.outbox")

# 1 KiB pages: a row without images is well under a page, and each commit writes whole pages to the WAL,
# so small pages cut the bytes written per event (flash wear) about fourfold against the 4 KiB default.
PAGE_SIZE = 1024
PRUNE_EVERY_S = 60.0
DROP_LOG_EVERY_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,          -- publish order
    camera TEXT NOT NULL,
    created REAL NOT NULL,           -- epoch seconds when stored (the age bound)
    payload BLOB NOT NULL            -- compact JSON, as sent
);
CREATE TABLE IF NOT EXISTS counters (
    key TEXT PRIMARY KEY,            -- 'seq/<camera>' (last number given), 'dropped/<camera>'
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""


class OutboxError(AnprError):
    """The outbox file cannot be used (not a database, not writable, in use by another process)."""


def default_outbox_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$ANPR_EDGE_STATE_DIR``, systemd's ``$STATE_DIRECTORY``, else the XDG state dir; + outbox.sqlite."""
    environ = os.environ if environ is None else environ
    if environ.get("ANPR_EDGE_STATE_DIR"):
        folder = Path(environ["ANPR_EDGE_STATE_DIR"])
    elif environ.get("STATE_DIRECTORY"):
        folder = Path(environ["STATE_DIRECTORY"].split(":")[0])
    else:
        folder = Path(environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "anpr-edge"
    return folder.expanduser() / "outbox.sqlite"


@dataclass(frozen=True)
class OutboxItem:
    """One stored event. ``replayed``: stored before the current session began (the backlog)."""

    rowid: int
    camera: str
    created: float
    payload: bytes
    replayed: bool


class Outbox:
    """A durable FIFO of event payloads. Thread-safe; one process per file (enforced with a lock file)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_events: int = 100_000,
        max_age_s: float = 168 * 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.max_events = max_events
        self.max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.RLock()
        self._inflight: set[int] = set()
        self._boundary = 0
        self._last_prune = float("-inf")
        self._last_drop_log = float("-inf")
        self._unlogged_drops: dict[str, int] = {}
        self._lock_file = self._take_lock()
        try:
            self._db = self._open()
            count, last = self._db.execute("SELECT COUNT(*), MAX(id) FROM outbox").fetchone()
            self._count = int(count)
            # Ids are handed out here, not by SQLite, which reuses the ids of deleted rows at the end of
            # the table: a new event must never look older than the session boundary.
            self._last_id = int(last or 0)
        except sqlite3.DatabaseError as error:
            self._release_lock()
            raise OutboxError(f"outbox {self.path}: cannot use it: {error}") from None
        self.dropped_now = 0  # dropped by this process (the persistent total is dropped_total())
        self.prune()
        if self._count:
            log.info("outbox %s: %d unacknowledged event(s) from before, will be sent", self.path, self._count)

    # ------------------------------------------------------------------------------------------ opening
    def _take_lock(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise OutboxError(f"outbox {self.path}: cannot create it: {error.strerror or error}") from None
        try:
            # Two daemons draining one outbox would each send every event; the kernel drops the lock
            # when the holder dies, even by SIGKILL.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutboxError(f"outbox {self.path} is in use by another anpr-edge process") from None
        return fd

    def _release_lock(self) -> None:
        if self._lock_file >= 0:
            os.close(self._lock_file)
            self._lock_file = -1

    def _open(self) -> sqlite3.Connection:
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        if fresh:
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect before the first table
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")  # a put survives power loss, not only a crash
        db.execute("PRAGMA journal_size_limit = 4194304")  # give the WAL back after a large backlog drains
        db.executescript(_SCHEMA)
        return db

    # -------------------------------------------------------------------------------------------- writes
    @contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT (one fsync); storage errors become one clear ``OutboxError``."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            raise OutboxError(f"outbox {self.path}: cannot {what}: {error}") from None

    def put(self, payload: dict[str, Any]) -> int:
        """Store one event durably and return its rowid.

        A payload whose ``seq`` is 0 or None is numbered here (per camera, persistent) and the number is
        written into ``payload``.
        """
        camera = str(payload["camera"])
        with self._lock:
            now = self._clock()
            if now - self._last_prune >= PRUNE_EVERY_S:
                self.prune()
            if self._count >= self.max_events:
                self._drop_oldest(self._count - self.max_events + 1, "outbox_max_events")
            with self._transaction("store an event"):
                seq = payload.get("seq")
                if not seq:
                    key = f"seq/{camera}"
                    self._db.execute(
                        "INSERT INTO counters(key, value) VALUES (?, 1) "
                        "ON CONFLICT(key) DO UPDATE SET value = value + 1",
                        (key,),
                    )
                    seq = int(self._db.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()[0])
                rowid = self._last_id + 1
                self._db.execute(
                    "INSERT INTO outbox(id, camera, created, payload) VALUES (?, ?, ?, ?)",
                    (rowid, camera, now, encode_payload({**payload, "seq": seq})),
                )
            payload["seq"] = seq  # only once committed: a rolled-back number is given again
            self._last_id = rowid
            self._count += 1
            return rowid

    def ack(self, rowid: int) -> bool:
        """The broker has the event: forget it. False if it was already gone (dropped or acked)."""
        return self.ack_many([rowid]) == 1

    def ack_many(self, rowids: Iterable[int]) -> int:
        """Acknowledge several events in one transaction (one fsync). Returns how many were removed."""
        ids = list(rowids)
        if not ids:
            return 0
        with self._lock:
            removed = 0
            with self._transaction("remove acknowledged events"):
                for start in range(0, len(ids), 500):
                    chunk = ids[start : start + 500]
                    marks = ",".join("?" * len(chunk))
                    removed += self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", chunk).rowcount
            self._inflight.difference_update(ids)
            self._count -= removed
            return removed

    def prune(self) -> int:
        """Drop events older than ``max_age_s`` (counted). Called by ``put`` now and then."""
        with self._lock:
            self._last_prune = self._clock()
            cutoff = self._last_prune - self.max_age_s
            rows = self._db.execute("SELECT id, camera FROM outbox WHERE created < ? ORDER BY id", (cutoff,)).fetchall()
            return self._drop([(rowid, camera) for rowid, camera in rows if rowid not in self._inflight],
                              "outbox_max_age_h")

    def _drop_oldest(self, n: int, why: str) -> int:
        rows = self._db.execute(
            "SELECT id, camera FROM outbox ORDER BY id LIMIT ?", (n + len(self._inflight),)
        ).fetchall()
        return self._drop([(rowid, camera) for rowid, camera in rows if rowid not in self._inflight][:n], why)

    def _drop(self, rows: list[tuple[int, str]], why: str) -> int:
        if not rows:
            return 0
        per_camera: dict[str, int] = {}
        for _, camera in rows:
            per_camera[camera] = per_camera.get(camera, 0) + 1
        with self._transaction("drop events"):
            for start in range(0, len(rows), 500):
                chunk = [rowid for rowid, _ in rows[start : start + 500]]
                self._db.execute(f"DELETE FROM outbox WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            for camera, n in per_camera.items():
                self._db.execute(
                    "INSERT INTO counters(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + ?",
                    (f"dropped/{camera}", n, n),
                )
        self._count -= len(rows)
        self.dropped_now += len(rows)
        for camera, n in per_camera.items():
            self._unlogged_drops[camera] = self._unlogged_drops.get(camera, 0) + n
        # A full outbox drops on every put: one line a minute, not one per event.
        now = self._clock()
        if now - self._last_drop_log >= DROP_LOG_EVERY_S:
            detail = ", ".join(f"{camera}: {n}" for camera, n in sorted(self._unlogged_drops.items()))
            log.error("outbox bound reached (%s): dropped %d unsent event(s), oldest first (%s); total this run: %d",
                      why, sum(self._unlogged_drops.values()), detail, self.dropped_now)
            self._unlogged_drops.clear()
            self._last_drop_log = now
        return len(rows)

    # --------------------------------------------------------------------------------------------- reads
    def start_session(self) -> int:
        """Mark everything stored so far as backlog (called on each connect). Returns the boundary rowid."""
        with self._lock:
            self._boundary = self._last_id
            return self._boundary

    def next_batch(self, limit: int, *, live_first: bool = True, max_backlog: int | None = None) -> list[OutboxItem]:
        """Up to ``limit`` stored events that are not in flight, oldest first.

        ``live_first``: events stored since ``start_session`` come before the backlog, of which at most
        ``max_backlog`` are returned (the caller's replay rate limit).
        """
        if limit <= 0:
            return []
        with self._lock:
            if not live_first:
                items = self._select("id > 0", (), limit)
                if max_backlog is not None:
                    backlog = [item.rowid for item in items if item.replayed][max_backlog:]
                    if backlog:  # stop before the first backlog item over the limit
                        items = [item for item in items if item.rowid < backlog[0]]
                return items
            items = self._select("id > ?", (self._boundary,), limit)
            room = limit - len(items)
            if max_backlog is not None:
                room = min(room, max_backlog)
            if room > 0:
                items += self._select("id <= ?", (self._boundary,), room)
            return items

    def _select(self, where: str, params: tuple[Any, ...], limit: int) -> list[OutboxItem]:
        rows = self._db.execute(
            f"SELECT id, camera, created, payload FROM outbox WHERE {where} ORDER BY id LIMIT ?",
            (*params, limit + len(self._inflight)),
        ).fetchall()
        items = [
            OutboxItem(rowid, camera, created, bytes(payload), rowid <= self._boundary)
            for rowid, camera, created, payload in rows
            if rowid not in self._inflight
        ]
        return items[:limit]

    def mark_inflight(self, rowids: Iterable[int]) -> None:
        """These were handed to the broker connection: leave them out of ``next_batch`` until acked."""
        with self._lock:
            self._inflight.update(rowids)

    def release(self, rowids: Iterable[int] | None = None) -> None:
        """Sending these failed (or the connection dropped): they become sendable again. None: all."""
        with self._lock:
            if rowids is None:
                self._inflight.clear()
            else:
                self._inflight.difference_update(rowids)

    # ------------------------------------------------------------------------------------------ metrics
    def __len__(self) -> int:
        return self._count

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def dropped_total(self) -> dict[str, int]:
        """Events dropped per camera over the outbox's whole life (kept across restarts)."""
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM counters WHERE key LIKE 'dropped/%'").fetchall()
        return {key.split("/", 1)[1]: int(value) for key, value in rows}

    def pending_by_camera(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT camera, COUNT(*) FROM outbox GROUP BY camera").fetchall()
        return {camera: int(n) for camera, n in rows}

    def oldest_age_s(self) -> float | None:
        with self._lock:
            row = self._db.execute("SELECT MIN(created) FROM outbox").fetchone()
        return None if row[0] is None else max(0.0, self._clock() - float(row[0]))

    # -------------------------------------------------------------------------------------------- close
    def close(self) -> None:
        with self._lock:
            if self._lock_file < 0:
                return
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error:
                pass  # a checkpoint is housekeeping; the WAL is replayed on the next open anyway
            self._db.close()
            self._release_lock()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
