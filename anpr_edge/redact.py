"""Keep credentials out of logs, metrics and status messages."""

from __future__ import annotations

import re

# scheme://user:password@host  ->  scheme://user:***@host   (also scheme://token@host -> scheme://***@host)
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")


def _mask(match: re.Match[str]) -> str:
    user, sep, _secret = match.group("userinfo").partition(":")
    return f"{match.group('scheme')}{user}:***@" if sep else f"{match.group('scheme')}***@"


def redact_url(text: str) -> str:
    """Mask the password (or bare token) of every URL in ``text``; other text is left as is."""
    return _URL_USERINFO.sub(_mask, text)
