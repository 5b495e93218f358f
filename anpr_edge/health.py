"""The daemon's HTTP server: ``GET /healthz`` (JSON), ``GET /metrics`` (Prometheus) and, when given a
``WebOptions``, the installer's web page and its JSON API.

A standard-library ``ThreadingHTTPServer`` in a daemon thread: no web framework on the box for a few
read-only pages, and a slow or stuck client only holds its own handler thread (each connection times out
after ``REQUEST_TIMEOUT_S``). It listens on loopback by default (``http.host``): health and metrics are
never authenticated, so exposing them to the network is an explicit choice.

The web page (``/``, its files under ``/static/``, shipped in ``anpr_edge/web/static``) and the API:

- ``GET /api/cameras``: each camera's state, fps, reconnects, last error, redacted source, ROI, counting
  line and latest frame (size, age, tracks with their voted text);
- ``GET /api/cameras/<id>/frame.jpg``: the latest frame with the overlays (``live_view.LiveView``);
- ``GET /api/events?plate=&since=&until=&camera=&limit=``: recent events from the ``EventStore``, newest
  first; ``GET /api/events/<id>`` one of them and ``GET /api/events/<id>/crop.jpg`` its crop.

They are authenticated when ``http.token`` (``Authorization: Bearer <token>`` or ``?token=<token>``, the
page passes it on to its requests) and/or ``http.username``/``password`` (HTTP basic auth) are set; a
wrong or missing credential gets 401. The static files carry no data and are served to anyone. On a
non-loopback address without either, the page and API answer 403 (plates, crops and live video are
personal data) while health and metrics work as before. No page loads anything from another host.

``/healthz`` answers 200 when the service's ``health_fn()`` says ``"status": "ok"`` and 503 otherwise
(starting, degraded, stopping, or ``health_fn`` failed), so a load balancer, ``curl -f`` or a container
health check needs no JSON parsing. Every string in the JSON, keys included, is passed through
``redact_url``: error messages may quote a stream URL with its password.

Requests are logged at DEBUG through ``logging`` (stderr), never printed: stdout carries the events.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hmac
import json
import logging
import math
import re
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote

from anpr_edge import __version__
from anpr_edge.config import HttpConfig
from anpr_edge.errors import ConfigError
from anpr_edge.metrics import CONTENT_TYPE, ServiceMetrics
from anpr_edge.redact import redact_url

if TYPE_CHECKING:
    from anpr_edge.config import AppConfig
    from anpr_edge.event_store import EventStore
    from anpr_edge.live_view import LiveView

log = logging.getLogger("anpr_edge.http")

HealthFn = Callable[[], Mapping[str, Any]]
CamerasFn = Callable[[], list[dict[str, Any]]]
REQUEST_TIMEOUT_S = 5.0  # a client that connects and sends nothing is dropped after this
_POLL_S = 0.1  # how often the serving loop checks for stop(): stop() returns within about this

STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
# The page's own files only: no inline script, nothing from another origin, not framed, no referrer (the
# token may be in the URL).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_CAMERA_FRAME = re.compile(r"^/api/cameras/([A-Za-z0-9][A-Za-z0-9_-]{0,63})/frame\.jpg$")
_EVENT = re.compile(r"^/api/events/([A-Za-z0-9][A-Za-z0-9_.-]{0,127})(/crop\.jpg)?$")
_STATIC = re.compile(r"^/static/([a-z0-9_-]+\.(?:html|js|css|svg))$")
_TOKEN_IN_URL = re.compile(r"([?&]token=)[^&\s]*", re.I)
_LOGIN_PAGE = b"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>anpr-edge: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"></head>
<body><h1>anpr-edge</h1>
<p>This page needs the access token (<code>http.token</code> in the daemon's config).</p>
<form method="get" action="/"><label>Token <input type="password" name="token" autofocus></label>
<button type="submit">Open</button></form></body></html>
"""


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


@dataclass
class WebOptions:
    """What the web page and API serve, and who may see them.

    ``cameras_fn`` lists the cameras (see ``service_cameras``); ``live_view`` gives their annotated frames,
    ``events`` the recent events. ``token`` and/or ``username``/``password`` turn authentication on;
    ``allowed`` False answers 403 on the page and API (a non-loopback address without authentication).
    """

    cameras_fn: CamerasFn
    live_view: LiveView | None = None
    events: EventStore | None = None
    device_id: str = ""
    token: str | None = None
    username: str | None = None
    password: str | None = None
    allowed: bool = True

    @property
    def authenticated(self) -> bool:
        return bool(self.token) or (self.username is not None and self.password is not None)

    @classmethod
    def from_config(cls, config: HttpConfig, cameras_fn: CamerasFn, **parts: Any) -> WebOptions:
        return cls(cameras_fn, token=config.effective_token(), username=config.username,
                   password=config.effective_password(), allowed=config.web_allowed, **parts)


@lru_cache(maxsize=16)
def static_file(name: str) -> bytes | None:
    """A file of the page, shipped in ``anpr_edge/web/static`` (None when there is no such file)."""
    try:
        return resources.files("anpr_edge.web").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, ModuleNotFoundError):
        return None


def service_cameras(service: Any, live_view: LiveView | None = None,
                    events: EventStore | None = None) -> list[dict[str, Any]]:
    """The cameras of a running ``Service`` for ``/api/cameras``: health, redacted source, ROI, counting
    line, latest frame. Reads only what the service publishes for ``/healthz`` and its camera configs."""
    health = service.health()
    states = health.get("cameras", {})
    configs = dict(service.cameras)
    counts = events.counts_by_camera() if events is not None else {}
    cameras = []
    for camera_id in sorted(set(states) | set(configs)):
        state = dict(states.get(camera_id) or {"state": "stopped"})
        camera = configs.get(camera_id)
        line = getattr(camera, "counting_line", None)
        roi = getattr(camera, "roi", None)
        source = getattr(camera, "source", None)
        cameras.append({
            "id": camera_id,
            "source": None if source is None else redact_url(str(source)),
            "kind": getattr(source, "kind", None),
            **state,
            "connected": state.get("state") == "streaming",
            "roi": [list(point) for point in roi] if roi else None,
            "counting_line": None if line is None else {
                "start": list(line.start), "end": list(line.end), "in_side": line.in_side},
            "frame": live_view.info(camera_id) if live_view is not None else None,
            "frame_url": f"/api/cameras/{quote(camera_id)}/frame.jpg",
            "recent_events": counts.get(camera_id, 0),
        })
    return cameras


def web_for_service(config: AppConfig, service: Any) -> WebOptions:
    """Wire the web page to a ``Service`` before it runs: a ``LiveView`` the inference loop updates (the
    service's own if it has one), and the recent-events store fed by the service's event router."""
    from anpr_edge.event_store import open_event_store
    from anpr_edge.live_view import LiveView

    if not config.http.web_allowed:
        log.warning("http.host %s is not loopback and neither http.token nor http.username/password is set: "
                    "the web page and API are off (403); /healthz and /metrics are served", config.http.host)
        return WebOptions(lambda: [], device_id=config.device_id, allowed=False)
    live_view = getattr(service, "live_view", None)
    if live_view is None:
        live_view = LiveView()
        service.live_view = live_view
    events = open_event_store(config.http)
    if events is not None:
        service.route.sinks.append(events.add)
    web = WebOptions.from_config(
        config.http, lambda: service_cameras(service, live_view, events),
        live_view=live_view, events=events, device_id=config.device_id)
    return web


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
        if owner.web is not None and (path in ("/", "/index.html") or path.startswith(("/api/", "/static/"))):
            try:
                self._web(owner.web, path, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the browser went away (a page reload, a closed tab)
            except Exception:
                log.exception("web request %s failed", self._logged_path())
                self._send(HTTPStatus.INTERNAL_SERVER_ERROR, b'{"error": "internal error"}\n', "application/json",
                           body)
        elif path == "/metrics":
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

    def _send(self, status: HTTPStatus, payload: bytes, content_type: str, body: bool,
              headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        if content_type.startswith("image/"):
            self.send_header("Content-Type", content_type)
        else:
            self.send_header("Content-Type", content_type if ";" in content_type else f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(payload)

    # ------------------------------------------------------------------------------------- web page
    def _query(self) -> dict[str, str]:
        query = self.path.split("?", 1)[1] if "?" in self.path else ""
        return {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}

    def _json(self, status: HTTPStatus, value: Any, body: bool) -> None:
        payload = (json.dumps(redact_json(value), ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        self._send(status, payload, "application/json", body)

    def _authorised(self, web: WebOptions) -> bool:
        if not web.authenticated:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        token = web.token
        if token:
            offered = credentials.strip() if scheme.lower() == "bearer" else self._query().get("token", "")
            if offered and hmac.compare_digest(offered.encode("utf-8"), token.encode("utf-8")):
                return True
        if web.username is not None and web.password is not None and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
            except (binascii.Error, ValueError):
                return False
            same_user = hmac.compare_digest(user.encode("utf-8"), web.username.encode("utf-8"))
            same_password = hmac.compare_digest(password.encode("utf-8"), web.password.encode("utf-8"))
            return same_user and same_password
        return False

    def _web(self, web: WebOptions, path: str, body: bool) -> None:
        if path.startswith("/static/"):  # the page's code and style: no data in them, served to anyone
            static = _STATIC.match(path)
            if static:
                self._static(static.group(1), body)
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", body)
            return
        api = path.startswith("/api/")
        if not web.allowed:
            message = ("the web page is off: this server listens on a non-loopback address without "
                       "http.token or http.username/password")
            if api:
                self._json(HTTPStatus.FORBIDDEN, {"error": message}, body)
            else:
                self._send(HTTPStatus.FORBIDDEN, (message + "\n").encode(), "text/plain", body)
            return
        if not self._authorised(web):
            challenge = ('Basic realm="anpr-edge", charset="UTF-8"' if web.username is not None
                         else 'Bearer realm="anpr-edge"')
            headers = {"WWW-Authenticate": challenge}
            if api:
                payload = b'{"error": "unauthorized: give the token (Authorization: Bearer) or user and password"}\n'
                self._send(HTTPStatus.UNAUTHORIZED, payload, "application/json", body, headers)
            elif web.token:
                self._send(HTTPStatus.UNAUTHORIZED, _LOGIN_PAGE, "text/html", body, {**headers, **PAGE_HEADERS})
            else:
                self._send(HTTPStatus.UNAUTHORIZED, b"unauthorized\n", "text/plain", body, headers)
            return
        if not api:
            self._static("index.html", body)
        elif path == "/api/cameras":
            self._json(HTTPStatus.OK, self._cameras(web), body)
        elif path == "/api/events":
            self._events(web, body)
        elif match := _CAMERA_FRAME.match(path):
            self._frame(web, match.group(1), body)
        elif match := _EVENT.match(unquote(path)):
            self._event(web, match.group(1), bool(match.group(2)), body)
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such API: {path}"}, body)

    def _static(self, name: str, body: bool) -> None:
        data = static_file(name)
        if data is None:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain", body)
            return
        suffix = name[name.rfind("."):]
        self._send(HTTPStatus.OK, data, STATIC_TYPES.get(suffix, "application/octet-stream"), body, PAGE_HEADERS)

    def _cameras(self, web: WebOptions) -> dict[str, Any]:
        status, health = self.server.owner.health()
        return {"device": web.device_id, "version": __version__, "status": health.get("status"),
                "mqtt": health.get("mqtt"), "events": health.get("events"), "cameras": web.cameras_fn(),
                "events_store": web.events is not None}

    def _events(self, web: WebOptions, body: bool) -> None:
        query = self._query()
        try:
            since = _parse_since(query.get("since"), "since")
            until = _parse_since(query.get("until"), "until")
            limit = int(query.get("limit") or 50)
            if not 1 <= limit <= 500:
                raise ValueError("limit: between 1 and 500")
        except ValueError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(error)}, body)
            return
        plate = query.get("plate") or None
        camera = query.get("camera") or None
        found = [] if web.events is None else web.events.search(
            plate, since=since, until=until, camera=camera, limit=limit)
        from anpr_edge.event_store import normalise_plate

        self._json(HTTPStatus.OK, {
            "events": [_event_json(event) for event in found], "count": len(found),
            "plate": None if plate is None else normalise_plate(plate), "since": since, "until": until,
            "camera": camera, "limit": limit, "stored": web.events is not None,
        }, body)

    def _event(self, web: WebOptions, event_id: str, crop: bool, body: bool) -> None:
        if crop:
            data = None if web.events is None else web.events.crop(event_id)
            if data is None:
                self._send(HTTPStatus.NOT_FOUND, b"no crop for this event\n", "text/plain", body)
            else:
                self._send(HTTPStatus.OK, data, "image/jpeg", body, {"X-Content-Type-Options": "nosniff"})
            return
        event = None if web.events is None else web.events.get(event_id)
        if event is None:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no recent event {event_id}"}, body)
        else:
            self._json(HTTPStatus.OK, _event_json(event), body)

    def _frame(self, web: WebOptions, camera_id: str, body: bool) -> None:
        known = {camera["id"] for camera in web.cameras_fn()}
        if camera_id not in known:
            self._send(HTTPStatus.NOT_FOUND, b"no such camera\n", "text/plain", body)
            return
        data = None if web.live_view is None else web.live_view.jpeg(camera_id)
        if data is None:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"no frame yet\n", "text/plain", body, {"Retry-After": "1"})
        else:
            self._send(HTTPStatus.OK, data, "image/jpeg", body, {"X-Content-Type-Options": "nosniff"})

    def _logged_path(self) -> str:
        return _TOKEN_IN_URL.sub(r"\1***", redact_url(self.path))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("%s %s", self.address_string(), _TOKEN_IN_URL.sub(r"\1***", redact_url(format % args)))


def _parse_since(text: str | None, key: str) -> float | None:
    """Epoch seconds, or an ISO-8601 time with a zone (``2025-11-21T22:30:21Z``); None when absent."""
    if text is None or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        from anpr_edge.events import PayloadError, parse_time

        try:
            return parse_time(text.strip())
        except PayloadError:
            raise ValueError(f"{key}: not epoch seconds nor an ISO-8601 time with a zone: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{key}: not a finite number")
    return value


def _event_json(event: Mapping[str, Any]) -> dict[str, Any]:
    """A stored event for the API: the payload (images left out) and where its crop is."""
    answer = {key: value for key, value in event.items() if key not in ("has_crop", "crop_jpeg", "snapshot_jpeg")}
    answer["crop_url"] = f"/api/events/{quote(str(event.get('id')))}/crop.jpg" if event.get("has_crop") else None
    return answer


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
        web: WebOptions | None = None,
    ) -> None:
        self.metrics = metrics
        self.health_fn = health_fn
        self.web = web  # None: only /healthz and /metrics
        self.host = host
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: HttpConfig, metrics: ServiceMetrics, health_fn: HealthFn,
                    *, web: WebOptions | None = None) -> HealthServer:
        return cls(metrics, health_fn, host=config.host, port=config.port, web=web)

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
            self._close_web()
            raise ConfigError(f"http.host: cannot listen on '{self.host}': {error.strerror}") from None
        except OSError as error:
            self._close_web()
            raise self._bind_error(error) from None
        server.owner = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": _POLL_S}, name="anpr-http", daemon=True
        )
        self._thread.start()
        log.info("health and metrics at %s/healthz and %s/metrics", self.url, self.url)
        if self.web is not None and self.web.allowed:
            log.info("web page at %s/%s", self.url, " (token or user/password needed)" if self.web.authenticated else "")

    def _close_web(self) -> None:
        """The server owns the web page's event store: closed when it stops (or cannot start)."""
        if self.web is not None and self.web.events is not None:
            self.web.events.close()

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
        self._close_web()

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
