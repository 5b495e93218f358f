"""Logging to stderr (stdout is for machine-readable output only), with credentials masked."""

from __future__ import annotations

import logging
import sys

from anpr_edge.redact import redact_url


class _RedactingFormatter(logging.Formatter):
    """Masks URL credentials in every record, including ones from third-party libraries."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_url(super().format(record))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
