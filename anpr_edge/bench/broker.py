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


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Broker:
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
        lines = [
            # Started as root, mosquitto would switch to the 'mosquitto' user, who cannot write here.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if persistent else 'false'}",
            f"persistence_location {self.folder}/",
            "autosave_interval 60",
            "max_queued_messages 0",  # queue everything for a disconnected persistent subscriber
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]
        self.conf_path.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> Broker:
        if self.running:
            raise BrokerError("mosquitto is already running")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.conf_path)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"mosquitto exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            if _accepts(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto not listening on 127.0.0.1:{self.port} after {timeout:.0f} s")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (a persistent broker saves its sessions), SIGKILL after ``timeout`` s. Idempotent."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the group is this one process
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
