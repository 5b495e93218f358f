"""The SQLite outbox: durable, ordered, live before backlog, bounded with counted drops, crash-safe."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from anpr_edge.events import event_to_payload
from anpr_edge.outbox import Outbox, OutboxError, default_outbox_path
from anpr_edge.values import PlateEvent

pytestmark = pytest.mark.timeout(30)

REPO = Path(__file__).resolve().parent.parent


def payload(camera: str = "cam1", text: str = "AB123CD", **extra: object) -> dict:
    event = PlateEvent(device_id="box", camera_id=camera, start_time=1763764221.5, end_time=1763764223.0,
                       text=text, confidence=0.97, char_confidences=(0.99,) * len(text), reads=5,
                       box=(10.0, 20.0, 110.0, 50.0), versions={"anpr_edge": "0.1.0"})
    return {**event_to_payload(event), **extra}


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def texts(items) -> list[str]:
    return [json.loads(item.payload)["text"] for item in items]


def test_put_numbers_per_camera_and_ack_removes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as box:
        first, second, other = payload(text="A1"), payload(text="A2"), payload("cam2", text="B1")
        ids = [box.put(first), box.put(second), box.put(other)]
        assert (first["seq"], second["seq"], other["seq"]) == (1, 2, 1)
        assert ids == sorted(ids) and len(box) == 3
        items = box.next_batch(10)
        assert texts(items) == ["A1", "A2", "B1"]
        stored = json.loads(items[0].payload)
        assert stored == first  # exactly what was given, with its number
        assert box.ack(ids[0]) and not box.ack(ids[0])  # acking twice is harmless
        assert box.ack_many(ids[1:]) == 2 and len(box) == 0 and box.next_batch(10) == []


def test_given_sequence_numbers_are_kept(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as box:
        event = payload(seq=77)
        box.put(event)
        assert event["seq"] == 77 and json.loads(box.next_batch(1)[0].payload)["seq"] == 77


def test_survives_reopen_and_numbers_continue(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path) as box:
        for text in ("A1", "A2", "A3"):
            box.put(payload(text=text))
        box.ack(box.next_batch(1)[0].rowid)
    with Outbox(path) as box:
        assert len(box) == 2 and texts(box.next_batch(10)) == ["A2", "A3"]
        later = payload(text="A4")
        box.put(later)
        assert later["seq"] == 4  # numbering survives restarts, so a gap always means a drop


def test_sigkill_right_after_put_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from anpr_edge.outbox import Outbox
        box = Outbox({str(path)!r})
        for n in range(20):
            box.put({{"camera": "cam1", "seq": 0, "text": f"T{{n}}"}})
        print("stored", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint: only the WAL has the rows
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == -signal.SIGKILL and "stored" in done.stdout, done.stderr
    with Outbox(path) as box:  # the dead process's lock is gone with it
        items = box.next_batch(100)
        assert [json.loads(item.payload)["text"] for item in items] == [f"T{n}" for n in range(20)]
        assert [json.loads(item.payload)["seq"] for item in items] == list(range(1, 21))


def test_live_first_then_rate_limited_backlog(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as box:
        for text in ("OLD1", "OLD2", "OLD3"):
            box.put(payload(text=text))
        assert box.start_session() > 0
        for text in ("NEW1", "NEW2"):
            box.put(payload(text=text))
        items = box.next_batch(10, max_backlog=2)
        assert texts(items) == ["NEW1", "NEW2", "OLD1", "OLD2"]
        assert [item.replayed for item in items] == [False, False, True, True]
        assert texts(box.next_batch(3)) == ["NEW1", "NEW2", "OLD1"]  # limit first, live first
        assert texts(box.next_batch(10, live_first=False, max_backlog=1)) == ["OLD1"]  # stops at the limit
        assert texts(box.next_batch(10, live_first=False)) == ["OLD1", "OLD2", "OLD3", "NEW1", "NEW2"]
        assert box.next_batch(0) == []


def test_inflight_rows_are_skipped_until_released_or_acked(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as box:
        ids = [box.put(payload(text=f"A{n}")) for n in range(4)]
        box.mark_inflight(ids[:2])
        assert box.inflight == 2 and texts(box.next_batch(10)) == ["A2", "A3"]
        box.release([ids[0]])
        assert texts(box.next_batch(10)) == ["A0", "A2", "A3"]
        box.ack(ids[1])
        assert box.inflight == 0 and len(box) == 3
        box.mark_inflight(ids[2:])
        box.release()
        assert texts(box.next_batch(10)) == ["A0", "A2", "A3"]


def test_ids_are_never_reused_so_new_events_stay_live(tmp_path: Path) -> None:
    # SQLite would give a deleted tail row's id to the next insert, which would then sit on the backlog
    # side of the session boundary and go out as replayed.
    with Outbox(tmp_path / "o.sqlite") as box:
        old = box.put(payload(text="OLD"))
        box.start_session()
        box.ack(old)
        new = box.put(payload(text="NEW"))
        assert new > old
        (item,) = box.next_batch(10)
        assert not item.replayed


def test_count_bound_drops_oldest_counted_per_camera(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path, max_events=5) as box:
        ids = [box.put(payload("cam1" if n % 2 else "cam2", text=f"A{n}")) for n in range(5)]
        box.mark_inflight([ids[0]])  # in flight: the broker may be taking it right now, keep it
        for n in range(5, 8):
            box.put(payload("cam1", text=f"A{n}"))
        assert len(box) == 5 and box.dropped_now == 3
        assert texts(box.next_batch(10, live_first=False)) == ["A4", "A5", "A6", "A7"]
        assert box.dropped_total() == {"cam1": 2, "cam2": 1}
    assert "dropped 1 unsent event(s)" in caplog.text  # logged (then at most once a minute)
    with Outbox(path, max_events=5) as box:
        assert box.dropped_total() == {"cam1": 2, "cam2": 1} and box.dropped_now == 0  # total is kept


def test_age_bound_drops_old_events(tmp_path: Path) -> None:
    clock = Clock()
    with Outbox(tmp_path / "o.sqlite", max_age_s=3600, clock=clock) as box:
        box.put(payload(text="OLD"))
        clock.now += 1800
        box.put(payload(text="MID"))
        clock.now += 1801
        assert box.prune() == 1 and texts(box.next_batch(10)) == ["MID"]
        clock.now += 3600
        box.put(payload(text="NEW"))  # put prunes too (at most once a minute)
        assert texts(box.next_batch(10)) == ["NEW"] and box.dropped_total() == {"cam1": 2}
        assert box.oldest_age_s() == 0.0 and box.pending_by_camera() == {"cam1": 1}


def test_storage_settings(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    Outbox(path).close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA page_size").fetchone()[0] == 1024
    finally:
        db.close()
    with Outbox(path) as box:
        assert box._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_one_process_per_outbox_and_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    with Outbox(path), pytest.raises(OutboxError, match="in use by another"):
        Outbox(path)
    Outbox(path).close()  # free again once closed
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match="junk.sqlite"):
        Outbox(junk)
    Outbox(junk.parent / "new" / "dir" / "o.sqlite").close()  # folders are created


def test_concurrent_puts_get_unique_numbers(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.sqlite") as box:
        def worker() -> None:
            for _ in range(25):
                box.put(payload())

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seqs = sorted(json.loads(item.payload)["seq"] for item in box.next_batch(1000))
        assert seqs == list(range(1, 101))


def test_bytes_written_per_event(tmp_path: Path) -> None:
    """put + ack of a typical event (no images) writes about 3 KiB: 3 WAL frames of 1 KiB pages."""
    io = Path("/proc/self/io")
    if not io.exists():
        pytest.skip("needs Linux /proc/self/io")

    def written() -> int:
        return int(dict(line.split(": ") for line in io.read_text().splitlines())["wchar"])

    with Outbox(tmp_path / "o.sqlite") as box:
        sample = payload()
        box.ack(box.put(dict(sample)))  # warm up: tables and counters exist
        n = 100
        before = written()
        for _ in range(n):
            box.ack(box.put(dict(sample)))
        per_event = (written() - before) / n
    size = len(json.dumps(sample, separators=(",", ":")))
    print(f"\noutbox: {per_event:.0f} bytes written per event (put + ack, payload {size} bytes)")
    assert per_event < 5000


def test_default_path(tmp_path: Path) -> None:
    assert default_outbox_path({"ANPR_EDGE_STATE_DIR": str(tmp_path)}) == tmp_path / "outbox.sqlite"
    assert default_outbox_path({"STATE_DIRECTORY": "/var/lib/anpr-edge:/x"}) == Path("/var/lib/anpr-edge/outbox.sqlite")
    assert default_outbox_path({"XDG_STATE_HOME": "/s"}) == Path("/s/anpr-edge/outbox.sqlite")
