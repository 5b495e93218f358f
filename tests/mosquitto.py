"""A real Mosquitto broker for tests: the benchmarks' ``anpr_edge.bench.broker.Broker`` (a free 127.0.0.1
port, a generated config) with users, TLS and a test subscriber added.

    with Mosquitto(tmp_path) as broker:          # anonymous, persistence off
        broker.url                               # mqtt://127.0.0.1:PORT
        broker.stop(); broker.start()            # restart on the same port (broker outage)
        broker.freeze(); broker.resume()         # a hung broker: sockets stay open, nothing answers

Options: ``users={"edge": "secret"}`` (password file made with ``mosquitto_passwd -b``, anonymous off;
``set_password`` changes one and reloads the broker with SIGHUP), ``tls=make_test_pki(dir)`` (an extra
TLS listener, ``tls_port``, optionally requiring a client certificate), ``persistent=True`` (sessions and
queued messages survive ``stop``/``start``: for test subscribers that must not miss messages while they
reconnect, never for the edge, which relies on its own outbox).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from anpr_edge.bench.broker import Broker, free_port, mosquitto_available

__all__ = ["Collector", "Mosquitto", "TestPki", "make_test_pki", "mosquitto_available"]

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


@dataclass(frozen=True)
class TestPki:
    """A throw-away CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    __test__ = False  # not a pytest class

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here: verification against it must fail


def make_test_pki(folder: Path) -> TestPki:
    """Make the PKI with the openssl CLI (EC keys: instant, no entropy wait)."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=30)

    def key(name: str) -> None:
        openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name)

    for ca in ("ca", "other-ca"):
        key(f"{ca}.key")
        openssl("req", "-x509", "-new", "-key", f"{ca}.key", "-sha256", "-days", "2", "-subj", f"/CN=anpr-edge test {ca}",
                "-out", f"{ca}.pem")
    (folder / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    (folder / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name in ("server", "client"):
        key(f"{name}.key")
        openssl("req", "-new", "-key", f"{name}.key", "-subj", f"/CN={'localhost' if name == 'server' else 'edge'}",
                "-out", f"{name}.csr")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return TestPki(folder / "ca.pem", folder / "server.pem", folder / "server.key", folder / "client.pem",
                   folder / "client.key", folder / "other-ca.pem")


class Mosquitto(Broker):
    """The benchmark's broker plus what the tests need: users, a TLS listener, a test-friendly save rate."""

    autosave_interval = 1  # persistence tests stop the broker at any moment

    def __init__(
        self,
        folder: Path,
        *,
        users: dict[str, str] | None = None,
        tls: TestPki | None = None,
        require_client_cert: bool = False,
        persistent: bool = False,
    ) -> None:
        super().__init__(folder, persistent=persistent)
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.users = dict(users or {})
        self.require_client_cert = require_client_cert
        self.passwd_path = self.folder / "passwd"
        for user, password in self.users.items():
            _passwd(self.passwd_path, user, password)

    def auth_lines(self) -> list[str]:
        if self.users:
            return ["allow_anonymous false", f"password_file {self.passwd_path}"]
        return super().auth_lines()

    def config_lines(self) -> list[str]:
        lines = super().config_lines()
        if self.tls is not None:
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_client_cert else 'false'}",
            ]
        return lines

    def ports(self) -> list[int]:
        return [self.port] + ([self.tls_port] if self.tls_port else [])

    def set_password(self, user: str, password: str) -> None:
        """Change (or add) a user's password and make the running broker reload the password file."""
        self.users[user] = password
        _passwd(self.passwd_path, user, password)
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGHUP)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self


def _passwd(path: Path, user: str, password: str) -> None:
    # -c would create it; -b alone needs it to exist.
    if not path.exists():
        path.write_text("")
    subprocess.run([MOSQUITTO_PASSWD, "-b", str(path), user, password], check=True, capture_output=True, timeout=30)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool


class Collector:
    """A test subscriber that records every message (paho, QoS 1, resubscribes on reconnect).

    ``session`` (a client id) asks the broker to keep a persistent session: with a ``persistent``
    broker, messages published while the collector reconnects are queued for it instead of lost.
    ``plates()`` decodes the plate events and validates each one against the shipped JSON Schema, so a
    payload that breaks the schema fails the test that reads it.
    """

    def __init__(
        self,
        port: int,
        topics: tuple[str, ...] = ("anpr/#",),
        *,
        session: str | None = None,
        tls: TestPki | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        import threading

        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages: list[Received] = []
        self._validated: dict[int, dict] = {}
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.topics = topics
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=session or f"test-collector-{os.getpid()}-{id(self)}",
            clean_session=session is None,
        )
        if username is not None:
            client.username_pw_set(username, password)
        if tls is not None:
            client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.client_cert), keyfile=str(tls.client_key))
        client.reconnect_delay_set(0.05, 0.2)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *_: self._subscribed.set()
        client.on_message = self._on_message
        client.on_disconnect = lambda *_: self._subscribed.clear()
        self.client = client
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("test collector: no SUBACK within 10 s")

    def _on_connect(self, client, _userdata, _flags, reason, _props) -> None:
        if not reason.is_failure:
            self._subscribed.clear()
            client.subscribe([(topic, 1) for topic in self.topics])

    def _on_message(self, _client, _userdata, message) -> None:
        with self._cond:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))
            self._cond.notify_all()

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        return self._subscribed.wait(timeout)

    def wait_for(self, predicate, timeout: float = 10.0) -> bool:
        """Wait (sleeping, not spinning) until ``predicate(self)`` holds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def on(self, topic_suffix: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    def plates(self) -> list[dict]:
        """Every plate event received, in arrival order, each validated against the schema (once)."""
        from anpr_edge.events import decode_payload, validate_payload

        with self._cond:
            messages = list(enumerate(self.messages))
        payloads = []
        for index, message in messages:
            if not message.topic.endswith("/plate"):
                continue
            if index not in self._validated:
                payload = decode_payload(message.payload)
                validate_payload(payload)
                self._validated[index] = payload
            payloads.append(self._validated[index])
        return payloads

    def plate_ids(self) -> list[str]:
        return [p["id"] for p in self.plates()]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Collector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
