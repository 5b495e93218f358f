"""Logging to stderr (stdout is for machine-readable output only), with credentials masked.

Two formats (``logging.format``): ``text``, one readable line per record, and ``json``, one JSON object
per line for journald, Loki and other collectors that index fields::

    {"ts": "2025-01-31T12:00:00.123Z", "level": "WARNING", "logger": "anpr_edge.sources",
     "msg": "gate: stream stalled, reconnecting", "camera": "gate"}

``camera`` is there when the record carries one (``log.info(..., extra={"camera": cam_id})``), ``exc``
when it has a traceback. Both formats mask URL credentials (``redact_url``) in the whole output, message
and traceback alike, and for every logger, third-party libraries included: an exception from OpenCV or
paho may quote a stream or broker URL with its password.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, Literal

from anpr_edge.redact import redact_url

LogFormat = Literal["text", "json"]


class _RedactingFormatter(logging.Formatter):
    """Masks URL credentials in every record, including ones from third-party libraries."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_url(super().format(record))


class _JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; URL credentials masked in every field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_url(record.getMessage()),
        }
        camera = getattr(record, "camera", None)
        if camera is not None:
            entry["camera"] = redact_url(str(camera))
        if record.exc_info:
            # Not cached on the record (exc_text) as logging.Formatter does: that text is unredacted.
            entry["exc"] = redact_url(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact_url(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact_url(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def make_formatter(fmt: LogFormat = "text") -> logging.Formatter:
    """The formatter ``setup_logging`` installs, for callers that add a handler of their own."""
    if fmt == "text":
        return _RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    if fmt == "json":
        return _JsonFormatter()
    raise ValueError(f"unknown log format {fmt!r} (expected text or json)")


def setup_logging(level: str = "INFO", fmt: LogFormat = "text") -> None:
    """Send all logging to stderr at ``level`` in format ``fmt``, replacing the root logger's handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
