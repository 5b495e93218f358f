"""A tiny systemd notify client (``sd_notify(3)``), without libsystemd or any other dependency.

Why: the unit (``deploy/anpr-edge.service``) is ``Type=notify`` with a watchdog. systemd then knows the
daemon is up only when it says ``READY=1`` (after the models are loaded and the cameras opened, not when
the process starts), restarts it when the main loop stops pinging ``WATCHDOG=1`` (a hung RTSP read or a
wedged GPU is a live process doing nothing), and shows the ``STATUS=`` line in ``systemctl status``.

The protocol is one datagram of newline-separated ``KEY=VALUE`` lines sent to the AF_UNIX socket named by
``$NOTIFY_SOCKET``: a filesystem path, or ``@name`` for the abstract namespace. Without ``$NOTIFY_SOCKET``
(run by hand, in a container, under tests) every call is a no-op, so callers never need to check.

Sending never raises: a service must not die because its supervisor is away. The first failure is logged
as a warning, later ones at debug level.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

log = logging.getLogger("anpr_edge.sdnotify")

# A send that would block (systemd's queue full, which it practically never is) gives up after this long:
# the main loop calls watchdog() and must not stall on its supervisor.
SEND_TIMEOUT_S = 0.5

# watchdog() sends at most this many pings per watchdog interval. systemd's own advice is to ping at half
# the interval; a quarter leaves room for one late or lost ping without a restart.
PINGS_PER_INTERVAL = 4


def _socket_address(value: str) -> str | None:
    """The AF_UNIX address for a ``$NOTIFY_SOCKET`` value, or None when it is not one this client speaks.

    ``@name`` is Linux's abstract namespace (a leading NUL byte in the address); ``/path`` a socket file.
    systemd >= 254 may also hand out ``vsock:`` addresses (VMs); they are not supported here.
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


class SystemdNotifier:
    """Notifications to systemd for this process, configured from the environment.

    ``environ`` defaults to ``os.environ`` (``NOTIFY_SOCKET``, ``WATCHDOG_USEC``, ``WATCHDOG_PID``);
    ``pid`` and ``clock`` are for tests. Safe to share between threads.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        pid: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        env = os.environ if environ is None else environ
        self._clock = clock
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._failed = False
        self._last_ping: float | None = None

        raw = env.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(raw) if raw and hasattr(socket, "AF_UNIX") else None
        if raw and self._address is None:
            log.warning("NOTIFY_SOCKET=%r is not a socket path or @abstract name; systemd notifications are off", raw)

        self._watchdog_s = self._parse_watchdog(env, os.getpid() if pid is None else pid) if self._address else None

    @staticmethod
    def _parse_watchdog(env: Mapping[str, str], pid: int) -> float | None:
        """The watchdog interval in seconds, or None when systemd expects no pings from this process.

        ``WATCHDOG_PID`` names the process systemd watches; a child that inherited the environment (any
        other pid) must not ping on its parent's behalf, or a hung parent would be kept alive by it.
        """
        usec = env.get("WATCHDOG_USEC")
        if not usec:
            return None
        watched = env.get("WATCHDOG_PID")
        try:
            if watched and int(watched) != pid:
                return None
            value = int(usec)
        except ValueError:
            log.warning("WATCHDOG_USEC=%r / WATCHDOG_PID=%r are not integers; the watchdog is off", usec, watched)
            return None
        return value / 1e6 if value > 0 else None

    @property
    def enabled(self) -> bool:
        """True when started by systemd with a notify socket (``Type=notify``); False: every call is a no-op."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """systemd's ``WatchdogSec=`` for this process in seconds, or None when the watchdog is off."""
        return self._watchdog_s

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram. True if sent; False when disabled or the send failed."""
        if self._address is None:
            return False
        message = "\n".join(assignments).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # not inherited (PEP 446)
                    self._sock.settimeout(SEND_TIMEOUT_S)
                self._sock.sendto(message, self._address)
                return True
            except OSError as error:
                # Never raise: the service keeps working without its supervisor. Warn once, then quietly.
                level = logging.DEBUG if self._failed else logging.WARNING
                self._failed = True
                log.log(level, "systemd notification %r failed: %s", message.split(b"\n", 1)[0].decode(), error)
                return False

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: start-up finished (models loaded, sources opened); systemctl start returns now.

        Also the way back from reloading(): send ready() again once the new config is in effect.
        """
        return self.notify("READY=1", *([] if status is None else [_status_line(status)]))

    def status(self, text: str) -> bool:
        """``STATUS=``: one free-form line that ``systemctl status`` shows (e.g. cameras up, events sent)."""
        return self.notify(_status_line(text))

    def watchdog(self, force: bool = False) -> bool:
        """``WATCHDOG=1``: the main loop is alive. Call it from the loop as often as you like.

        Pings are rate-limited to one per ``watchdog_interval_s / 4`` (``force`` skips that), so calling it
        every frame costs a clock read. Call it from the loop that does the work, never from a timer
        thread: a timer thread would keep pinging while the loop is stuck, which defeats the watchdog.
        True if a ping was sent.
        """
        if self._watchdog_s is None:
            return False
        now = self._clock()
        if not force and self._last_ping is not None and now - self._last_ping < self._watchdog_s / PINGS_PER_INTERVAL:
            return False
        self._last_ping = now
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """``EXTEND_TIMEOUT_USEC``: the current start (or stop) needs ``seconds`` more from now.

        For the first start on a box, when TensorRT builds its engines (minutes on a Jetson) before
        ``READY=1``. systemd then waits past ``TimeoutStartSec=`` as long as a new extension arrives before
        the previous one runs out; a build that hangs still times out. See ``extending()``.
        """
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1e6))}")

    @contextmanager
    def extending(self, seconds: float = 60.0) -> Iterator[None]:
        """Keep extending the start timeout while the ``with`` body runs (one blocking engine build).

        A helper thread sends ``extend_timeout(seconds)`` now and every ``seconds / 2`` until the body
        ends. That is fine here, unlike for the watchdog: the start timeout guards against a start that
        never ends, and the body does end (or raises), which stops the thread.
        """
        if not self.enabled:
            yield
            return
        done = threading.Event()

        def keep_extending() -> None:
            while True:
                self.extend_timeout(seconds)
                if done.wait(seconds / 2):
                    return

        thread = threading.Thread(target=keep_extending, name="sd-extend-timeout", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=SEND_TIMEOUT_S * 2)

    def stopping(self) -> bool:
        """``STOPPING=1``: shutdown began (SIGTERM received); systemd shows the unit as deactivating."""
        return self.notify("STOPPING=1")

    def reloading(self) -> bool:
        """``RELOADING=1`` with ``MONOTONIC_USEC``: a config reload (SIGHUP) began; send ready() when done.

        systemd >= 253 requires ``MONOTONIC_USEC`` (CLOCK_MONOTONIC, microseconds) with ``RELOADING=1``
        for ``Type=notify-reload``, to tell this reload from an older one; plain ``Type=notify`` (older
        systemd, e.g. 249 on JetPack 6's Ubuntu 22.04) accepts and ignores it.
        """
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def close(self) -> None:
        """Close the socket (a later call opens a new one)."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


def _status_line(text: str) -> str:
    """``STATUS=text`` on one line: a newline would start a new assignment in the protocol."""
    return "STATUS=" + " ".join(str(text).splitlines())
