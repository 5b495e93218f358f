"""The plate event payload: mapping both ways, the shipped JSON Schema, and the README's example."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from anpr_edge.events import (
    PayloadError,
    decode_payload,
    encode_payload,
    event_to_payload,
    format_time,
    load_schema,
    parse_time,
    payload_to_event,
    schema_text,
    validate_payload,
)
from anpr_edge.values import ListMatch, PlateEvent

pytestmark = pytest.mark.timeout(30)

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) + b"\xff\xd9"  # not a real image; the bytes must round-trip


def full_event(**changes: object) -> PlateEvent:
    event = PlateEvent(
        id="0b8f5a52-6f3c-4a55-9d0e-3f1c2a7b9e10",
        device_id="gate-1",
        camera_id="entrance",
        seq=42,
        start_time=1763764221.123,
        end_time=1763764222.875,
        text="AB123CD",
        confidence=0.9731,
        char_confidences=(0.99, 0.98, 0.97, 0.99, 0.96, 0.95, 0.99),
        candidates=(("AB123CD", 0.9731), ("AB123C0", 0.0152)),
        reads=9,
        box=(412.0, 318.5, 530.2, 347.0),
        direction="in",
        angle=87.5,
        crop_jpeg=JPEG,
        snapshot_jpeg=JPEG[::-1],
        plate_format="FR",
        matched=ListMatch("allow", "AB123CD", 0),
        versions={"anpr_edge": "0.1.0", "detector": "plate_det 2025-11", "ocr": "ocr 2025-11"},
    )
    return replace(event, **changes)


def test_full_event_round_trips_and_validates() -> None:
    event = full_event()
    payload = event_to_payload(event)
    validate_payload(payload)
    assert payload["schema"] == 1 and payload["type"] == "plate" and payload["replayed"] is False
    assert payload["start"] == "2025-11-21T22:30:21.123Z" and payload["end"] == "2025-11-21T22:30:22.875Z"
    assert base64.b64decode(payload["crop_jpeg"]) == JPEG
    assert payload["matched"] == {"list": "allow", "entry": "AB123CD", "distance": 0}
    # Through the wire format and back.
    again = payload_to_event(decode_payload(encode_payload(payload)))
    assert again == event


@pytest.mark.parametrize(
    "changes",
    [
        {"text": None, "reason": "no legible read", "confidence": 0.0, "candidates": (), "char_confidences": ()},
        {"text": None, "text_hash": "sha256:5f1c", "matched": None},
        {"crop_jpeg": None, "crop_path": "/var/lib/anpr-edge/crops/1.jpg", "snapshot_jpeg": None},
        {"box": None, "direction": None, "angle": None, "plate_format": None, "matched": None, "versions": {}},
        {"direction": "out", "matched": ListMatch("deny", "XY999ZZ", 2)},
    ],
)
def test_variants_validate_and_round_trip(changes: dict) -> None:
    event = full_event(**changes)
    payload = event_to_payload(event, replayed=True)
    validate_payload(payload)
    assert payload["replayed"] is True
    assert payload_to_event(payload) == event


def test_every_key_is_always_present_and_described() -> None:
    payload = event_to_payload(full_event(crop_jpeg=None, snapshot_jpeg=None, box=None, matched=None))
    schema = load_schema()
    assert set(payload) == set(schema["required"]) == set(schema["properties"])


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda p: p.update(schema=2), "schema"),
        (lambda p: p.update(id="not-a-uuid"), "id"),
        (lambda p: p.update(start="2025-11-21 22:30:21"), "start"),
        (lambda p: p.update(confidence=1.5), "confidence"),
        (lambda p: p.update(direction="sideways"), "direction"),
        (lambda p: p.update(box=[1, 2, 3]), "box"),
        (lambda p: p.update(seq=0), "seq"),
        (lambda p: p.update(text=None, reason=None), "reason"),
        (lambda p: p.update(crop_path="/tmp/x.jpg"), "crop_path"),
        (lambda p: p.update(crop_jpeg="not base64!"), "crop_jpeg"),
        (lambda p: p.update(surprise=1), "(top level)"),
        (lambda p: p.pop("replayed"), "(top level)"),
    ],
)
def test_schema_rejects_bad_payloads(mutate, where: str) -> None:
    payload = event_to_payload(full_event())
    mutate(payload)
    with pytest.raises(PayloadError, match=re.escape(where)):
        validate_payload(payload)


def test_schema_error_message_does_not_dump_the_image() -> None:
    payload = event_to_payload(full_event(crop_jpeg=b"x" * 100_000))
    payload["crop_path"] = "/also/a/path.jpg"
    with pytest.raises(PayloadError) as caught:
        validate_payload(payload)
    assert len(str(caught.value)) < 1000


def test_times_round_to_milliseconds_in_utc() -> None:
    assert format_time(0) == "1970-01-01T00:00:00.000Z"
    assert format_time(1700000000.123) == "2023-11-14T22:13:20.123Z"  # 0.12299999... must not become .122
    assert format_time(1700000000.9996) == "2023-11-14T22:13:21.000Z"
    assert parse_time("2023-11-14T22:13:20.123Z") == 1700000000.123
    assert parse_time("2023-11-14T23:13:20.123+01:00") == 1700000000.123
    with pytest.raises(PayloadError):
        parse_time("yesterday")
    with pytest.raises(PayloadError, match="time zone"):
        parse_time("2023-11-14T22:13:20")


def test_payload_errors_are_clear() -> None:
    with pytest.raises(PayloadError, match="not JSON"):
        decode_payload(b"{nope")
    with pytest.raises(PayloadError, match="not a JSON object"):
        decode_payload(b"[1, 2]")
    with pytest.raises(PayloadError, match="schema version 2"):
        payload_to_event({**event_to_payload(full_event()), "schema": 2})
    payload = event_to_payload(full_event())
    del payload["camera"]
    with pytest.raises(PayloadError, match="lacks 'camera'"):
        payload_to_event(payload)


def test_event_invariants() -> None:
    with pytest.raises(ValueError, match="needs a reason"):
        full_event(text=None)
    with pytest.raises(ValueError, match="not both"):
        full_event(crop_path="/x.jpg")
    with pytest.raises(ValueError, match="before start_time"):
        full_event(end_time=0.0)
    with pytest.raises(ValueError, match="direction"):
        full_event(direction="up")
    fresh = PlateEvent(camera_id="c", start_time=1.0, end_time=2.0, text="A1", confidence=0.5)
    other = PlateEvent(camera_id="c", start_time=1.0, end_time=2.0, text="A1", confidence=0.5)
    assert fresh.id != other.id and fresh.seq == 0  # fresh UUID each; the outbox numbers seq
    assert "crop_jpeg" not in repr(full_event())


def test_shipped_schema_is_valid_draft_2020_12() -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(schema_text())
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_readme_example_payload_is_valid() -> None:
    section = README.split("\n## MQTT", 1)[1].split("\n## ", 1)[0]
    example = re.search(r"```json\n(\{\n  \"schema\": 1,\n  \"type\": \"plate\".*?)\n```", section, re.DOTALL)
    assert example is not None, "README ## MQTT has no example payload"
    payload = json.loads(example.group(1))
    validate_payload(payload)
    payload_to_event(payload)
