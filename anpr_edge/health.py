"""The health and metrics endpoint: ``GET /healthz`` (JSON) and ``GET /metrics`` (Prometheus).

A standard-library ``ThreadingHTTPServer`` in a daemon thread: no web framework on the box for two
read-only pages, and a slow or stuck client only holds its own handler thread (each connection times out
after ``REQUEST_TIMEOUT_S``). It listens on loopback by default (``http.host``): the pages are not
authenticated, so exposing them to the network is an explicit choice.

``/healthz`` answers 200 when the service's ``health_fn()`` says ``"status": "ok"`` and 503 otherwise
(starting, degraded, stopping, or ``health_fn`` failed), so a load balancer, ``curl -f`` or a container
health check needs no JSON parsing. Every string in the JSON, keys included, is passed through
``redact_url``: error messages may quote a stream URL with its password.

Requests are logged at DEBUG through ``logging`` (stderr), never printed: stdout carries the events.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from anpr_edge import __version__
from anpr_edge.config import HttpConfig
from anpr_edge.errors import ConfigError
from anpr_edge.metrics import CONTENT_TYPE, ServiceMetrics
from anpr_edge.redact import redact_url

log = logging.getLogger("anpr_edge.http")

HealthFn = Callable[[], Mapping[str, Any]]
REQUEST_TIMEOUT_S = 5.0  # a client that connects and sends nothing is dropped after this
_POLL_S = 0.1  # how often the serving loop checks for stop(): stop() returns within about this


def redact_json(value: Any) -> Any:
    """A JSON-ready copy of ``value`` with URL credentials masked in every string (keys too).

    Non-finite floats become null (strict JSON has no NaN); other unknown objects become their ``str``.
    """
    if isinstance(value, str):
        return redact_url(value)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {redact_url(str(key)): redact_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [redact_json(item) for item in value]
    return redact_url(str(value))


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # handler threads never keep the process alive, and stop() never waits on them
    owner: HealthServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN (reverse DNS), which can hang for seconds on a
        # box without a resolver; the name is only used in CGI variables, so skip it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = f"anpr-edge/{__version__}"
    sys_version = ""
    timeout = REQUEST_TIMEOUT_S

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._respond(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._respond(body=False)

    def _respond(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        owner = self.server.owner
        if path == "/metrics":
            try:
                payload = owner.metrics.render()
            except Exception:
                log.exception("rendering /metrics failed")
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b"metrics unavailable\n", "text/plain", body)
                return
            self._send(HTTPStatus.OK, payload, CONTENT_TYPE, body)
        elif path == "/healthz":
            status, health = owner.health()
            payload = (json.dumps(health, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
            self._send(status, payload, "application/json", body)
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found: try /healthz or /metrics\n", "text/plain", body)

    def _send(self, status: HTTPStatus, payload: bytes, content_type: str, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type if ";" in content_type else f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("%s %s", self.address_string(), redact_url(format % args))


class HealthServer:
    """Serves ``/healthz`` from ``health_fn`` and ``/metrics`` from ``metrics`` until ``stop()``.

    ``port=0`` binds any free port; ``port`` then tells which one (after ``start()``).
    """

    def __init__(
        self,
        metrics: ServiceMetrics,
        health_fn: HealthFn,
        *,
        host: str = "127.0.0.1",
        port: int = 9108,
    ) -> None:
        self.metrics = metrics
        self.health_fn = health_fn
        self.host = host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: HttpConfig, metrics: ServiceMetrics, health_fn: HealthFn) -> HealthServer:
        return cls(metrics, health_fn, host=config.host, port=config.port)

    @property
    def port(self) -> int:
        """The bound port once started (the real one when asked for 0), else the requested one."""
        if self._server is not None:
            return int(self._server.server_address[1])
        return self._requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve in a daemon thread. Raises ``ConfigError`` naming ``http.port``/``http.host``."""
        if self._server is not None:
            return
        server_class = _Server6 if ":" in self.host else _Server
        try:
            server = server_class((self.host, self._requested_port), _Handler)
        except socket.gaierror as error:
            raise ConfigError(f"http.host: cannot listen on '{self.host}': {error.strerror}") from None
        except OSError as error:
            raise self._bind_error(error) from None
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": _POLL_S}, name="anpr-http", daemon=True
        )
        self._thread.start()
        log.info("health and metrics at %s/healthz and %s/metrics", self.url, self.url)

    def _bind_error(self, error: OSError) -> ConfigError:
        where = f"{self.host}:{self._requested_port}"
        if error.errno == errno.EADDRINUSE:
            return ConfigError(
                f"http.port: port {self._requested_port} is already in use on {self.host} (another anpr-edge "
                "or exporter?); set http.port to a free port, or 0 for any free one"
            )
        if error.errno == errno.EACCES:
            return ConfigError(
                f"http.port: no permission to listen on {where} (ports below 1024 need privileges)"
            )
        if error.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return ConfigError(f"http.host: '{self.host}' is not an address of this machine")
        return ConfigError(f"http.port: cannot listen on {where}: {error.strerror or error}")

    def stop(self) -> None:
        """Stop serving and close the socket; returns within about 0.1 s (a request in flight finishes in its
        own daemon thread)."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()  # returns once serve_forever's loop has seen the flag (_POLL_S)
        server.server_close()
        if thread is not None:
            thread.join(timeout=1.0)

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def health(self) -> tuple[HTTPStatus, dict[str, Any]]:
        """The ``/healthz`` answer: the redacted ``health_fn()`` and 200 if its status is "ok", else 503."""
        try:
            raw = self.health_fn()
            health = redact_json(dict(raw))
        except Exception as error:
            log.warning("health check failed", exc_info=True)
            return HTTPStatus.SERVICE_UNAVAILABLE, {"status": "error", "error": redact_url(str(error))}
        ok = health.get("status") == "ok"
        return (HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE), health
