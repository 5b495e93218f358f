"""What a camera's ``source`` string means, parsed once at config load (no I/O beyond a file check).

Accepted forms:
- ``demo``: the built-in synthetic demo clip (generated on first use);
- ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http://``, ``https://``, ``udp://``, ``srt://`` URLs: network streams;
- ``/dev/videoN`` or a bare camera index (``0``): local cameras (V4L2), checked when opened;
- anything else: a video file path, relative to the config file's folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from anpr_edge.redact import redact_url

SourceKind = Literal["file", "stream", "device", "demo"]

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "srt")
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


@dataclass(frozen=True, repr=False)
class SourceSpec:
    """A parsed frame source. ``uri`` is an absolute file path, a URL, a device path or a camera index."""

    kind: SourceKind
    uri: str

    @property
    def is_live(self) -> bool:
        """Live sources run on their own clock: stale frames are dropped, never queued."""
        return self.kind in ("stream", "device")

    @property
    def device_index(self) -> int | None:
        return int(self.uri) if self.kind == "device" and self.uri.isdigit() else None

    def __str__(self) -> str:
        # Used in logs, metrics and status messages: never show stream credentials.
        return redact_url(self.uri)

    def __repr__(self) -> str:
        return f"SourceSpec(kind={self.kind!r}, uri={str(self)!r})"


def parse_source(value: object, base_dir: Path | None = None) -> SourceSpec:
    """Parse a config ``source`` value; raise ``ValueError`` with a user-facing message if it is unusable."""
    if isinstance(value, SourceSpec):
        return value
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"must be a file path, a stream URL, a camera index or 'demo', not {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    if text == "demo":
        return SourceSpec("demo", "demo")
    if text.isdigit():
        return SourceSpec("device", str(int(text)))
    scheme_match = _SCHEME.match(text)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme == "file":
            return _file_spec(text[len("file://"):], base_dir)
        if scheme not in STREAM_SCHEMES:
            raise ValueError(
                f"unsupported URL scheme '{scheme}' in {redact_url(text)} (expected one of: {', '.join(STREAM_SCHEMES)})"
            )
        return SourceSpec("stream", text)
    if text.startswith("/dev/"):
        # Not checked here: a USB camera may be plugged in after start, and the service reconnects.
        # Opening it (check-config probes it) names a missing or unreadable device.
        return SourceSpec("device", text)
    return _file_spec(text, base_dir)


def _file_spec(text: str, base_dir: Path | None) -> SourceSpec:
    path = Path(text).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    path = path.resolve()
    if not path.exists():
        raise ValueError(f"video file not found: {path}")
    if not path.is_file():
        raise ValueError(f"not a file: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"video file not readable (permissions): {path}")
    return SourceSpec("file", str(path))
