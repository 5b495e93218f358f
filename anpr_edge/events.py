"""The published form of a ``PlateEvent``: a versioned JSON payload and its JSON Schema.

``event_to_payload`` is what the publisher stores in the outbox and sends; ``payload_to_event`` is what a
subscriber (``anpr-edge subscribe``, ``parking-validate``) turns it back into. The schema file
``schemas/plate_event.v1.json`` ships in the package (``anpr-edge schema`` prints it) and is the contract
with backends: every payload the code builds validates against it, and the tests hold it to that.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any

from anpr_edge.errors import AnprError
from anpr_edge.values import ListMatch, PlateEvent

SCHEMA_VERSION = 1
SCHEMA_FILE = "schemas/plate_event.v1.json"


class PayloadError(AnprError):
    """A message is not a valid plate event payload (bad JSON, wrong schema version, invalid field)."""


# ---------------------------------------------------------------------------------------------- times
def format_time(epoch_s: float) -> str:
    """Epoch seconds -> ``2025-11-21T22:30:21.123Z`` (UTC, milliseconds, rounded not truncated)."""
    # Round in integer milliseconds: float seconds such as 1700000000.123 are really ...0.12299, and
    # datetime would truncate them to .122.
    ms = round(epoch_s * 1000)
    stamp = datetime.fromtimestamp(ms // 1000, tz=timezone.utc).replace(microsecond=(ms % 1000) * 1000)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_time(text: str) -> float:
    """The inverse of ``format_time`` (also accepts any ISO-8601 time with an offset)."""
    try:
        stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (AttributeError, ValueError):
        raise PayloadError(f"not an ISO-8601 time: {text!r}") from None
    if stamp.tzinfo is None:
        raise PayloadError(f"time without a time zone: {text!r}")
    return round(stamp.timestamp(), 3)


# --------------------------------------------------------------------------------------------- mapping
def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None, key: str) -> bytes | None:
    if text is None:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadError(f"{key}: not base64") from None


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


def event_to_payload(event: PlateEvent, *, replayed: bool = False) -> dict[str, Any]:
    """The JSON-ready payload of an event (schema 1). Every key is present; absent values are None."""
    matched = event.matched
    return {
        "schema": SCHEMA_VERSION,
        "type": "plate",
        "id": event.id,
        "device": event.device_id,
        "camera": event.camera_id,
        "seq": event.seq,
        "start": format_time(event.start_time),
        "end": format_time(event.end_time),
        "text": event.text,
        "text_hash": event.text_hash,
        "reason": event.reason,
        "confidence": round(float(event.confidence), 4),
        "char_confidences": [round(float(c), 4) for c in event.char_confidences],
        "candidates": [{"text": text, "confidence": round(float(conf), 4)} for text, conf in event.candidates],
        "reads": int(event.reads),
        "box": None if event.box is None else [round(float(v), 1) for v in event.box],
        "direction": event.direction,
        "angle": _round(event.angle, 1),
        "plate_format": event.plate_format,
        "matched": None if matched is None else {
            "list": matched.list, "entry": matched.entry, "distance": int(matched.distance)},
        "crop_jpeg": _b64(event.crop_jpeg),
        "crop_path": event.crop_path,
        "snapshot_jpeg": _b64(event.snapshot_jpeg),
        "versions": {str(k): str(v) for k, v in event.versions.items()},
        "replayed": bool(replayed),
    }


def payload_to_event(payload: Mapping[str, Any]) -> PlateEvent:
    """Rebuild the event from a payload (validate it first with ``validate_payload`` when untrusted).

    ``replayed`` is a property of the delivery, not of the passage, so it is not part of the event.
    """
    if payload.get("schema") != SCHEMA_VERSION:
        raise PayloadError(f"unsupported schema version {payload.get('schema')!r} (this build reads {SCHEMA_VERSION})")
    try:
        matched = payload.get("matched")
        box = payload.get("box")
        return PlateEvent(
            id=payload["id"],
            device_id=payload["device"],
            camera_id=payload["camera"],
            seq=int(payload["seq"]),
            start_time=parse_time(payload["start"]),
            end_time=parse_time(payload["end"]),
            text=payload.get("text"),
            confidence=float(payload["confidence"]),
            reason=payload.get("reason"),
            text_hash=payload.get("text_hash"),
            char_confidences=tuple(float(c) for c in payload.get("char_confidences") or ()),
            candidates=tuple((c["text"], float(c["confidence"])) for c in payload.get("candidates") or ()),
            reads=int(payload.get("reads") or 0),
            box=None if box is None else (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
            direction=payload.get("direction"),
            angle=payload.get("angle"),
            crop_jpeg=_unb64(payload.get("crop_jpeg"), "crop_jpeg"),
            crop_path=payload.get("crop_path"),
            snapshot_jpeg=_unb64(payload.get("snapshot_jpeg"), "snapshot_jpeg"),
            plate_format=payload.get("plate_format"),
            matched=None if matched is None else ListMatch(matched["list"], matched["entry"], int(matched["distance"])),
            versions=dict(payload.get("versions") or {}),
        )
    except KeyError as error:
        raise PayloadError(f"plate event payload lacks {error.args[0]!r}") from None
    except (TypeError, ValueError, IndexError) as error:
        raise PayloadError(f"invalid plate event payload: {error}") from None


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: what is stored in the outbox and sent on the wire."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_payload(data: bytes | str) -> dict[str, Any]:
    """Parse a message body; ``PayloadError`` if it is not a JSON object."""
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PayloadError(f"not JSON: {error}") from None
    if not isinstance(value, dict):
        raise PayloadError(f"not a JSON object but {type(value).__name__}")
    return value


# ---------------------------------------------------------------------------------------------- schema
def schema_text() -> str:
    """The event JSON Schema exactly as shipped (what ``anpr-edge schema`` prints)."""
    return resources.files("anpr_edge").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    return json.loads(schema_text())


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema())


def validate_payload(payload: Mapping[str, Any]) -> None:
    """Raise ``PayloadError`` naming every field that breaks the schema (none: it is valid)."""
    errors = sorted(_validator().iter_errors(payload), key=lambda e: list(e.absolute_path))
    if errors:
        problems = "; ".join(
            f"{'/'.join(str(p) for p in error.absolute_path) or '(top level)'}: {_short(error.message)}"
            for error in errors
        )
        raise PayloadError(f"plate event payload does not match schema {SCHEMA_VERSION}: {problems}")


def _short(message: str, limit: int = 160) -> str:
    # jsonschema quotes the offending value, which for a JPEG is a very long base64 string.
    return message if len(message) <= limit else message[: limit - 3] + "..."
