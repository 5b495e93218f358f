"""The systemd notify client against a fake NOTIFY_SOCKET: a plain AF_UNIX datagram socket, as systemd has."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from anpr_edge.sdnotify import SystemdNotifier

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="AF_UNIX abstract sockets: Linux only")


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, address: str, env_value: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(2.0)
        self.env_value = env_value

    def env(self, **extra: str) -> dict[str, str]:
        return {"NOTIFY_SOCKET": self.env_value, **extra}

    def receive(self) -> dict[str, str]:
        """One datagram as its KEY=VALUE lines."""
        data = self.sock.recv(65536).decode()
        return dict(line.split("=", 1) for line in data.split("\n"))

    def pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(65536, socket.MSG_PEEK)
            return True
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(2.0)


@pytest.fixture(params=["path", "abstract"])
def systemd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeSystemd]:
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        fake = FakeSystemd(path, path)
    else:
        name = f"anpr-edge-test-{os.getpid()}-{uuid.uuid4().hex}"
        fake = FakeSystemd("\0" + name, "@" + name)
    yield fake
    fake.sock.close()


def test_messages_arrive(systemd: FakeSystemd) -> None:
    notifier = SystemdNotifier(systemd.env())
    assert notifier.enabled
    assert notifier.watchdog_interval_s is None

    assert notifier.ready()
    assert systemd.receive() == {"READY": "1"}
    assert notifier.ready("2 cameras up")
    assert systemd.receive() == {"READY": "1", "STATUS": "2 cameras up"}
    assert notifier.status("gate: reconnecting\nsecond line")
    assert systemd.receive() == {"STATUS": "gate: reconnecting second line"}  # one line: no injected keys
    assert notifier.extend_timeout(90)
    assert systemd.receive() == {"EXTEND_TIMEOUT_USEC": "90000000"}
    assert notifier.stopping()
    assert systemd.receive() == {"STOPPING": "1"}
    assert notifier.reloading()
    message = systemd.receive()
    assert message["RELOADING"] == "1"
    assert abs(int(message["MONOTONIC_USEC"]) / 1e6 - time.monotonic()) < 5
    notifier.close()
    assert notifier.ready()  # reopens after close
    assert systemd.receive() == {"READY": "1"}


def test_watchdog_pings_rate_limited(systemd: FakeSystemd) -> None:
    now = [100.0]
    notifier = SystemdNotifier(systemd.env(WATCHDOG_USEC="30000000"), clock=lambda: now[0])
    assert notifier.watchdog_interval_s == 30.0

    assert notifier.watchdog()
    assert systemd.receive() == {"WATCHDOG": "1"}
    for _ in range(1000):  # every frame of the main loop: still one ping per interval / 4
        assert not notifier.watchdog()
    now[0] += 7.0
    assert not notifier.watchdog()
    now[0] += 0.6  # 7.6 s > 30 / 4
    assert notifier.watchdog()
    assert systemd.receive() == {"WATCHDOG": "1"}
    assert notifier.watchdog(force=True)
    assert systemd.receive() == {"WATCHDOG": "1"}
    assert not systemd.pending()


def test_watchdog_pid(systemd: FakeSystemd) -> None:
    mine = SystemdNotifier(systemd.env(WATCHDOG_USEC="5000000", WATCHDOG_PID=str(os.getpid())))
    assert mine.watchdog_interval_s == 5.0
    assert mine.watchdog()
    assert systemd.receive() == {"WATCHDOG": "1"}

    # The environment of another process (a parent we inherited it from): no pings from here.
    other = SystemdNotifier(systemd.env(WATCHDOG_USEC="5000000", WATCHDOG_PID=str(os.getpid() + 1)))
    assert other.watchdog_interval_s is None
    assert not other.watchdog()
    assert other.enabled and other.status("still allowed")
    assert systemd.receive() == {"STATUS": "still allowed"}
    assert not systemd.pending()


@pytest.mark.parametrize("usec", ["0", "soon", ""])
def test_watchdog_off_for_bad_values(systemd: FakeSystemd, usec: str) -> None:
    notifier = SystemdNotifier(systemd.env(WATCHDOG_USEC=usec))
    assert notifier.watchdog_interval_s is None
    assert not notifier.watchdog()
    assert not systemd.pending()


def test_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")  # meaningless without a socket
    for notifier in (SystemdNotifier(), SystemdNotifier({})):
        assert not notifier.enabled
        assert notifier.watchdog_interval_s is None
        assert not any([notifier.ready("x"), notifier.status("x"), notifier.watchdog(), notifier.extend_timeout(5),
                        notifier.stopping(), notifier.reloading()])
        with notifier.extending(10):
            pass
        notifier.close()


def test_unsupported_address_is_disabled(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="anpr_edge.sdnotify"):
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled and not notifier.ready()
    assert "NOTIFY_SOCKET" in caplog.text


def test_send_failure_never_raises_and_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock"), "WATCHDOG_USEC": "1000000"})
    assert notifier.enabled
    with caplog.at_level(logging.DEBUG, logger="anpr_edge.sdnotify"):
        assert not notifier.ready("up")
        assert not notifier.watchdog()
        assert not notifier.stopping()
    levels = [record.levelno for record in caplog.records]
    assert levels.count(logging.WARNING) == 1 and levels.count(logging.DEBUG) == 2


def test_extending_repeats_until_the_body_ends(systemd: FakeSystemd) -> None:
    notifier = SystemdNotifier(systemd.env())
    with notifier.extending(0.2):  # a new extension every 0.1 s
        first = systemd.receive()
        second = systemd.receive()
    assert first == second == {"EXTEND_TIMEOUT_USEC": "200000"}
    while systemd.pending():  # one may have been in flight as the body ended
        systemd.receive()
    systemd.sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        systemd.sock.recv(65536)
