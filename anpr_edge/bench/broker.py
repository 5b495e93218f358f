"""A throw-away Mosquitto broker for benchmarks: the system ``mosquitto`` on a free 127.0.0.1 port.

    with Broker(folder, persistent=True) as broker:   # config, log and persistence file in ``folder``
        broker.port
        broker.stop(); broker.start()                 # an outage: restarted on the same port

``persistent`` keeps client sessions (and the messages queued for them, without a count limit) across
``stop``/``start``: the benchmark's subscriber uses it so that it misses nothing while it reconnects
after the outage. The edge never relies on it; it has its own outbox.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from anpr_edge.errors import AnprError

INSTALL_HINT = "apt-get install mosquitto"


class BrokerError(AnprError):
    """Mosquitto is missing or did not start."""

    exit_code = 2


def mosquitto_path() -> str | None:
    """The ``mosquitto`` binary (PATH, else Debian's /usr/sbin, which is not on a user's PATH), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").is_file() else None


def mosquitto_available() -> tuple[bool, str]:
    """(ok, reason): for ``pytest.skip`` and for a clear error before a benchmark starts."""
    if mosquitto_path() is None:
        return False, f"mosquitto not installed: {INSTALL_HINT}"
    return True, ""


def mosquitto_version() -> str:
    binary = mosquitto_path()
    if binary is None:
        return "not installed"
    try:
        result = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = (result.stdout or result.stderr).strip().splitlines()
    return first[0].replace("mosquitto version ", "") if first else "unknown"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process_group(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM the process group of a child started with ``start_new_session`` (after SIGCONT: a frozen
    process cannot act on SIGTERM), then SIGKILL after ``timeout`` s. Safe on a process that already ended."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
    """One ``mosquitto`` process on a free 127.0.0.1 port; subclasses add listeners and options by
    extending ``config_lines`` and ``ports`` (the test suite's broker adds users and TLS)."""

    # Seconds between persistence saves: a crash loses at most this much (SIGTERM always saves).
    autosave_interval = 60

    def __init__(self, folder: str | os.PathLike[str], *, persistent: bool = False) -> None:
        binary = mosquitto_path()
        if binary is None:
            raise BrokerError(f"mosquitto not installed: {INSTALL_HINT}")
        self.binary = binary
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.folder / "mosquitto.log"
        self.conf_path = self.folder / "mosquitto.conf"

    def config_lines(self) -> list[str]:
        """The broker's configuration, one directive a line."""
        return [
            # Started as root, mosquitto would switch to the 'mosquitto' user, who cannot read or
            # write the (private, temporary) folder holding its config, passwords and persistence.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {self.port} 127.0.0.1",
            *self.auth_lines(),
            f"persistence {'true' if self.persistent else 'false'}",
            f"persistence_location {self.folder}/",
            f"autosave_interval {self.autosave_interval}",
            "max_queued_messages 0",  # queue everything for a disconnected persistent subscriber
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]

    def auth_lines(self) -> list[str]:
        """Who may connect: anyone (mosquitto 2 refuses anonymous clients unless told)."""
        return ["allow_anonymous true"]

    def ports(self) -> list[int]:
        """The ports the broker listens on: it is ready when all of them accept."""
        return [self.port]

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Broker:
        if self.running:
            raise BrokerError("mosquitto is already running")
        self.conf_path.write_text("\n".join(self.config_lines()) + "\n")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        ports = self.ports()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            if all(_accepts(port) for port in ports):
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto not listening on 127.0.0.1 port(s) {ports} after {timeout:.0f} s: "
                          f"{self.log_text()[-2000:]}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (a persistent broker saves its sessions), SIGKILL after ``timeout`` s. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is not None:
            stop_process_group(proc, timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: a hung broker, whose sockets stay open while nothing answers."""
        if self.proc is None:
            raise BrokerError("mosquitto is not running")
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is None:
            raise BrokerError("mosquitto is not running")
        os.killpg(self.proc.pid, signal.SIGCONT)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
