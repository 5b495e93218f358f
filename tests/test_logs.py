"""Logging: text and JSON lines on stderr, levels, and URL credentials masked in messages and tracebacks."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from anpr_edge.logs import make_formatter, setup_logging

URL = "rtsp://user:secret@host/x"
MASKED = "rtsp://user:***@host/x"


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def emit(capsys: pytest.CaptureFixture[str], level: str, fmt: str | None) -> list[str]:
    """Log a few records through setup_logging and return the stderr lines (stdout must stay empty)."""
    if fmt is None:
        setup_logging(level)
    else:
        setup_logging(level, fmt)  # type: ignore[arg-type]
    log = logging.getLogger("anpr_edge.test")
    log.debug("debug detail")
    log.info("opening %s", URL, extra={"camera": "gate"})
    try:
        raise ConnectionError(f"cannot open {URL}")
    except ConnectionError:
        log.exception("camera failed")
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


def test_json_lines_parse_and_carry_the_fields(capsys: pytest.CaptureFixture[str]) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    lines = emit(capsys, "INFO", "json")
    records = [json.loads(line) for line in lines]  # one object per line, nothing else
    assert [r["level"] for r in records] == ["INFO", "ERROR"]
    info, error = records
    assert info["logger"] == "anpr_edge.test" and info["camera"] == "gate"
    assert info["msg"] == f"opening {MASKED}"
    assert "camera" not in error and "exc" not in info
    assert error["msg"] == "camera failed"
    assert "ConnectionError" in error["exc"] and MASKED in error["exc"] and "Traceback" in error["exc"]
    ts = datetime.fromisoformat(info["ts"].replace("Z", "+00:00"))
    assert info["ts"].endswith("Z") and ts.tzinfo is not None and ts >= before
    assert "secret" not in "\n".join(lines)


def test_text_lines_are_unchanged_and_masked(capsys: pytest.CaptureFixture[str]) -> None:
    lines = emit(capsys, "INFO", None)
    assert re.fullmatch(r"\d\d:\d\d:\d\d INFO anpr_edge\.test: opening " + re.escape(MASKED), lines[0])
    assert re.fullmatch(r"\d\d:\d\d:\d\d ERROR anpr_edge\.test: camera failed", lines[1])
    text = "\n".join(lines)
    assert "Traceback" in text and f"ConnectionError: cannot open {MASKED}" in text
    assert "secret" not in text
    assert emit(capsys, "INFO", "text")[0].endswith(f"INFO anpr_edge.test: opening {MASKED}")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_levels_filter(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    debug = emit(capsys, "DEBUG", fmt)
    assert any("debug detail" in line for line in debug) and len([line for line in debug if "opening" in line]) == 1
    warning = emit(capsys, "WARNING", fmt)
    assert not any("debug detail" in line or "opening" in line for line in warning)
    assert any("camera failed" in line for line in warning)
    error = emit(capsys, "ERROR", fmt)  # the same records (times aside)
    assert len(error) == len(warning) and not any("opening" in line for line in error)


def test_third_party_loggers_are_masked_too(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", "json")
    logging.getLogger("paho.mqtt").warning("connect to mqtts://bob:pw@broker:8883 failed")
    record = json.loads(capsys.readouterr().err)
    assert record["msg"] == "connect to mqtts://bob:***@broker:8883 failed"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        make_formatter("yaml")  # type: ignore[arg-type]
