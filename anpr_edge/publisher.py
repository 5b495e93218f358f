"""MQTT publisher with store-and-forward: no event is lost when the broker or the network is down.

``publish(event)`` writes the event to the SQLite outbox (durable) and returns at once; a sender thread
publishes stored events while connected and deletes each one when the broker acknowledges it (PUBACK,
``on_publish``). The outbox is the only queue:

- events are handed to paho only while connected, at most ``max_inflight`` unacknowledged at a time;
- every connection gets a fresh paho client, so paho never resends on reconnect what the outbox resends
  (a dropped connection releases its in-flight events back to the outbox, and they go again);
- on each connect, events stored before it are the backlog: live events go first and the backlog drains
  behind them at ``replay_rate`` per second, each flagged ``"replayed": true`` (times unchanged).

Delivery is at least once; the event id lets subscribers drop duplicates.

Connection handling is ours, not paho's: exponential backoff with jitter (so a fleet of boxes does not
reconnect in lockstep after a broker restart), a clear logged reason for each failure (refused, wrong
password, TLS), and a bound on the wait for CONNACK. The password is read from the config's source at
each connect and never logged.

Topics: ``{prefix}/{device}/{camera}/plate`` (events, QoS ``mqtt.qos``), ``{prefix}/{device}/status``
(retained ``online``/``offline``, ``offline`` is also the last will) and ``{prefix}/{device}/{camera}/status``
(retained camera state, credentials redacted). With ``mqtt.home_assistant.enabled``, each (re)connect also
publishes retained Home Assistant discovery configs: one sensor per camera (those given to
``set_camera_status``) whose state is the last plate read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from anpr_edge import __version__
from anpr_edge.config import MqttConfig
from anpr_edge.errors import ConfigError
from anpr_edge.events import event_to_payload, format_time
from anpr_edge.outbox import Outbox, OutboxError, default_outbox_path
from anpr_edge.redact import redact_url
from anpr_edge.values import PlateEvent

log = logging.getLogger("anpr_edge.mqtt")

ONLINE = "online"
OFFLINE = "offline"
# paho's own in-flight window is a little larger than ours so that status messages never make paho
# queue an event internally.
_STATUS_SLOTS = 16
_HOUSEKEEPING_S = 1.0
_STABLE_CONNECTION_S = 30.0  # a connection that lasted this long resets the backoff
_REFUSED_PUBLISH_PAUSE_S = 5.0


# ---------------------------------------------------------------------------------------------- topics
def plate_topic(prefix: str, device: str, camera: str) -> str:
    return f"{prefix}/{device}/{camera}/plate"


def device_status_topic(prefix: str, device: str) -> str:
    return f"{prefix}/{device}/status"


def camera_status_topic(prefix: str, device: str, camera: str) -> str:
    return f"{prefix}/{device}/{camera}/status"


def decision_topic(prefix: str, camera: str) -> str:
    return f"{prefix}/{camera}/decision"


# ------------------------------------------------------------------------------ Home Assistant discovery
def _ha_id(text: str) -> str:
    """Home Assistant's discovery topic levels allow only ``[A-Za-z0-9_-]``."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def home_assistant_discovery(
    discovery_prefix: str, prefix: str, device: str, camera: str
) -> tuple[str, dict[str, Any]]:
    """(topic, config) of the Home Assistant MQTT discovery message for one camera's last-plate sensor.

    The sensor's state is the ``text`` of the last event on the camera's plate topic, its attributes the
    whole event; it is available while the box's status topic says ``online``. ``unique_id`` depends only
    on the device and camera ids, so Home Assistant keeps the entity (and its history) across restarts.
    """
    topic = f"{discovery_prefix}/sensor/{_ha_id(device)}/{_ha_id(camera)}_plate/config"
    plates = plate_topic(prefix, device, camera)
    config = {
        "name": f"{camera} plate",
        "unique_id": f"anpr_edge.{device}.{camera}.plate",  # camera ids have no dots: never ambiguous
        "state_topic": plates,
        "value_template": "{{ value_json.text }}",
        "json_attributes_topic": plates,
        "availability_topic": device_status_topic(prefix, device),
        "payload_available": ONLINE,
        "payload_not_available": OFFLINE,
        "icon": "mdi:car",
        "device": {
            "identifiers": [device],
            "name": device,
            "model": "anpr-edge",
            "manufacturer": "anpr-edge",
            "sw_version": __version__,
        },
    }
    return topic, config


# ------------------------------------------------------------------------------------------------ URLs
_PLAIN_SCHEMES = {"mqtt", "tcp"}
_TLS_SCHEMES = {"mqtts", "ssl", "tls"}


def parse_mqtt_url(url: str) -> dict[str, Any]:
    """``mqtt://user:pass@host:port`` / ``mqtts://...`` -> config overrides for ``mqtt``.

    Returns ``host``, ``port``, ``username``, ``password`` (None when absent) and ``tls`` (True for
    mqtts). User and password may be percent-encoded. Errors are ``ConfigError`` with the password masked.
    """
    shown = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise ConfigError(f"--mqtt-url {shown}: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in _PLAIN_SCHEMES | _TLS_SCHEMES:
        raise ConfigError(f"--mqtt-url {shown}: scheme must be mqtt:// or mqtts://, not {parts.scheme or 'none'!r}")
    if not parts.hostname:
        raise ConfigError(f"--mqtt-url {shown}: no host name")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"--mqtt-url {shown}: only scheme://[user[:password]@]host[:port] is understood")
    tls = scheme in _TLS_SCHEMES
    return {
        "host": parts.hostname,
        "port": port or (8883 if tls else 1883),
        "username": urllib.parse.unquote(parts.username) if parts.username is not None else None,
        "password": urllib.parse.unquote(parts.password) if parts.password is not None else None,
        "tls": tls,
    }


def mqtt_config_from_url(url: str, base: MqttConfig | None = None) -> MqttConfig:
    """``base`` (or the defaults) with the URL's broker, credentials and TLS choice; enabled.

    ``mqtts://`` keeps ``base.tls`` (CA, client certificate) when there is one; ``mqtt://`` turns TLS off.
    A password in the URL replaces ``password``/``password_file``; ``$ANPR_EDGE_MQTT_PASSWORD`` still wins.
    """
    base = base or MqttConfig()
    parsed = parse_mqtt_url(url)
    data = base.model_dump()
    data.update(enabled=True, host=parsed["host"], port=parsed["port"])
    if base.tls is not None:
        data["tls"] = base.tls.model_dump()
    if parsed["username"] is not None:
        data["username"] = parsed["username"]
    if parsed["password"] is not None:
        data.update(password=parsed["password"], password_file=None)
    if not parsed["tls"]:
        data["tls"] = None
    elif data.get("tls") is None:
        data["tls"] = {}
    try:
        return MqttConfig.model_validate(data)
    except ValueError as error:
        raise ConfigError(f"--mqtt-url {redact_url(url)}: {error}") from None


# ------------------------------------------------------------------------------------------ clients
def configure_client(client: mqtt.Client, config: MqttConfig, environ: Mapping[str, str] | None = None) -> None:
    """Credentials and TLS from the config on a paho client (shared by the publisher and the CLI tools)."""
    if config.username is not None:
        client.username_pw_set(config.username, config.effective_password(environ))
    if config.tls is not None:
        tls = config.tls
        try:
            client.tls_set(
                ca_certs=str(tls.ca_file) if tls.ca_file else None,
                certfile=str(tls.cert_file) if tls.cert_file else None,
                keyfile=str(tls.key_file) if tls.key_file else None,
                cert_reqs=ssl.CERT_NONE if tls.insecure else ssl.CERT_REQUIRED,
            )
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(f"mqtt.tls: cannot load the certificate files: {error}") from None
        if tls.insecure:
            client.tls_insecure_set(True)


# ---------------------------------------------------------------------------------------------- backoff
class Backoff:
    """Exponential backoff with "equal jitter": each delay is uniform in [d/2, d], d doubling per failure."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        self.min_s, self.max_s = min_s, max_s
        self.failures = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.max_s, self.min_s * 2.0 ** min(self.failures, 32))
        self.failures += 1
        return ceiling / 2 + self._rng.random() * ceiling / 2

    def reset(self) -> None:
        self.failures = 0


# ------------------------------------------------------------------------------------------- publisher
@dataclass(frozen=True)
class PublisherStats:
    """A snapshot for metrics and status. ``dropped``: by the outbox bounds, this run; ``dropped_total``:
    over the outbox's life, per camera."""

    connected: bool
    pending: int
    inflight: int
    sent: int
    acked: int
    replayed: int
    dropped: int
    dropped_total: dict[str, int]
    connects: int
    last_error: str | None


def _describe_connect_error(error: BaseException, host: str, port: int) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed for {host}:{port}: {error.verify_message or error}"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake with {host}:{port} failed: {error.reason or error}"
    if isinstance(error, ConnectionRefusedError):
        return f"connection to {host}:{port} refused (is the broker running and listening there?)"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve broker host {host!r}: {error.strerror or error}"
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"connection to {host}:{port} timed out"
    if isinstance(error, OSError):
        return f"cannot connect to {host}:{port}: {error.strerror or error}"
    return f"cannot connect to {host}:{port}: {error}"


class MqttPublisher:
    """Publishes plate events and status to one broker, through the durable outbox.

    Thread-safe: ``publish`` and ``set_camera_status`` may be called from any thread. ``start`` begins
    connecting in the background; ``close`` flushes what it can within its timeout and says ``offline``.
    """

    def __init__(
        self,
        config: MqttConfig,
        device_id: str,
        *,
        outbox: Outbox | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.client_id = config.client_id or f"anpr-edge-{device_id}"
        self.prefix = config.topic_prefix
        self._environ = environ
        self._own_outbox = outbox is None
        # Not `outbox or ...`: an empty Outbox is falsy (it has a length).
        self.outbox = outbox if outbox is not None else Outbox(
            config.outbox_path or default_outbox_path(environ),
            max_events=config.outbox_max_events,
            max_age_s=config.outbox_max_age_h * 3600.0,
        )
        self._events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._backoff = Backoff(config.reconnect_min_s, config.reconnect_max_s)
        self._thread: threading.Thread | None = None
        self._progress = threading.Condition()
        self._connected_event = threading.Event()
        self._status_lock = threading.Lock()
        self._camera_status: dict[str, dict[str, Any]] = {}
        self._status_dirty: set[str] = set()
        # Owned by the sender thread:
        self._discovered: set[str] = set()  # cameras whose HA discovery config went out on this connection
        self._client: mqtt.Client | None = None
        self._gen = 0
        self._connect_started = 0.0
        self._connected_since: float | None = None
        self._next_attempt = 0.0
        self._inflight: dict[int, tuple[int, bool]] = {}  # mid -> (outbox rowid, replayed)
        self._tokens = 0.0
        self._tokens_at = 0.0
        self._paused_until = 0.0
        self._closing = False
        self._close_deadline = 0.0
        self._last_prune = time.monotonic()
        self._dropped_seen = self.outbox.dropped_now
        # Counters (read from other threads; ints are updated atomically enough for statistics).
        self._sent = self._acked = self._replayed = self._connects = 0
        self.last_error: str | None = None
        self._closed_stats: PublisherStats | None = None

    # ------------------------------------------------------------------------------------- public API
    def start(self) -> MqttPublisher:
        if self._thread is None:
            if self.config.tls is not None and self.config.tls.insecure:
                log.warning("MQTT TLS certificate verification is OFF (mqtt.tls.insecure): testing only")
            self._thread = threading.Thread(target=self._run, name="anpr-mqtt-sender", daemon=True)
            self._thread.start()
        return self

    def publish(self, event: PlateEvent) -> PlateEvent:
        """Store the event durably and queue it for sending; returns it with device id and ``seq`` set.

        Returns once the event is on disk, whatever the state of the connection; raises ``OutboxError``
        only when it cannot be stored at all (disk full, file unusable).
        """
        if self._closed_stats is not None:
            raise RuntimeError("MqttPublisher.publish() after close()")
        if not event.device_id:
            event = replace(event, device_id=self.device_id)
        payload = event_to_payload(event)
        self.outbox.put(payload)
        self._events.put(("wake",))
        return replace(event, seq=payload["seq"]) if payload["seq"] != event.seq else event

    def set_camera_status(
        self,
        camera_id: str,
        *,
        connected: bool | None,
        fps: float | None = None,
        last_error: str | None = None,
        **extra: Any,
    ) -> None:
        """Record a camera's state; it is published retained now (or on the next connect).

        Strings are passed through ``redact_url``: source URLs and error texts may hold credentials.
        """
        status: dict[str, Any] = {
            "camera": camera_id,
            "connected": connected,
            "fps": None if fps is None else round(float(fps), 2),
            "last_error": None if last_error is None else redact_url(str(last_error)),
        }
        for key, value in extra.items():
            status[key] = redact_url(value) if isinstance(value, str) else value
        with self._status_lock:
            self._camera_status[camera_id] = status
            self._status_dirty.add(camera_id)
        self._events.put(("wake",))

    @property
    def connected(self) -> bool:
        return self._connected_event.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected_event.wait(timeout)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every stored event is acknowledged (the outbox is empty). False on timeout."""
        deadline = time.monotonic() + timeout
        with self._progress:
            while len(self.outbox) > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._progress.wait(min(left, 0.5))
        return True

    def stats(self) -> PublisherStats:
        if self._closed_stats is not None:
            return self._closed_stats
        return PublisherStats(
            connected=self.connected,
            pending=len(self.outbox),
            inflight=self.outbox.inflight,
            sent=self._sent,
            acked=self._acked,
            replayed=self._replayed,
            dropped=self.outbox.dropped_now,
            dropped_total=self.outbox.dropped_total(),
            connects=self._connects,
            last_error=self.last_error,
        )

    def close(self, timeout: float = 5.0) -> None:
        """Send what can be sent within ``timeout`` s, publish ``offline`` and disconnect.

        Unsent events stay in the outbox for the next start.
        """
        thread = self._thread
        if thread is not None:
            self._events.put(("close", time.monotonic() + max(0.0, timeout)))
            thread.join(timeout + 10.0)
            if thread.is_alive():
                log.error("MQTT sender did not stop within %.0f s", timeout + 10.0)
            self._thread = None
        if self._closed_stats is not None:
            return
        self._closed_stats = self.stats()  # what stats() keeps answering once the outbox is closed
        if self._closed_stats.pending:
            log.info("%d event(s) left in the outbox for the next start", self._closed_stats.pending)
        if self._own_outbox:
            self.outbox.close()

    def __enter__(self) -> MqttPublisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- sender thread
    def _run(self) -> None:
        try:
            while True:
                try:
                    self._step()
                except OutboxError as error:  # storage trouble (disk full...): keep trying, not spinning
                    log.error("%s", error)
                    time.sleep(_HOUSEKEEPING_S)
                if self._closing and (self._client is None or not self.connected or len(self.outbox) == 0
                                      or time.monotonic() >= self._close_deadline):
                    break
        except Exception:  # a bug here must not silently stop publishing: say so loudly
            log.exception("MQTT sender stopped by an unexpected error; events stay in the outbox")
        finally:
            self._teardown(graceful=True)
            with self._progress:
                self._progress.notify_all()

    def _step(self) -> None:
        self._handle_events(self._next_timeout())
        now = time.monotonic()
        if self._client is None and not self._closing and now >= self._next_attempt:
            self._connect()
        elif self._client is not None and not self.connected:
            self._check_connack_timeout(now)
        if self.connected:
            self._publish_statuses()
            self._fill_window(now)
        self._housekeeping(now)

    def _next_timeout(self) -> float:
        now = time.monotonic()
        timeout = _HOUSEKEEPING_S
        if self._client is None and not self._closing:
            timeout = min(timeout, max(0.0, self._next_attempt - now))
        if self.connected and self._tokens < 1 and len(self.outbox) > self.outbox.inflight:
            timeout = min(timeout, (1 - self._tokens) / self.config.replay_rate)
        if self._closing:
            timeout = min(timeout, max(0.0, self._close_deadline - now))
        return max(timeout, 0.001)

    def _handle_events(self, timeout: float) -> None:
        try:
            batch = [self._events.get(timeout=timeout)]
        except queue.Empty:
            return
        while True:
            try:
                batch.append(self._events.get_nowait())
            except queue.Empty:
                break
        acked: list[int] = []
        for event in batch:
            kind = event[0]
            if kind == "ack":
                _, gen, mid, reason = event
                if gen != self._gen or mid not in self._inflight:
                    continue  # a status message, or a message of a connection already torn down
                rowid, replayed = self._inflight.pop(mid)
                if getattr(reason, "is_failure", False):
                    # MQTT 5 broker refused the message (quota, not authorized): keep it, retry later.
                    self.outbox.release([rowid])
                    self._paused_until = time.monotonic() + _REFUSED_PUBLISH_PAUSE_S
                    self.last_error = f"broker refused an event: {reason}"
                    log.warning("%s; retrying in %.0f s", self.last_error, _REFUSED_PUBLISH_PAUSE_S)
                    continue
                acked.append(rowid)
                self._replayed += replayed
            elif kind == "connack":
                self._on_connack(event[1], event[2])
            elif kind == "down":
                self._on_down(event[1], event[2])
            elif kind == "close" and not self._closing:
                self._closing, self._close_deadline = True, event[1]
        if acked:
            try:
                self.outbox.ack_many(acked)
            except OutboxError as error:
                # The broker has them but the rows stay: they go again later (a duplicate, never a loss).
                self.outbox.release(acked)
                log.error("%s", error)
                return
            self._acked += len(acked)
            with self._progress:
                self._progress.notify_all()

    # ----------------------------------------------------------------------------------- connection
    def _new_client(self, gen: int) -> mqtt.Client:
        cfg = self.config
        v5 = cfg.protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            # The outbox holds the session's state; the broker need not.
            clean_session=None if v5 else True,
            reconnect_on_failure=False,  # reconnecting is ours (backoff with jitter, fresh client)
        )
        client.max_inflight_messages_set(cfg.max_inflight + _STATUS_SLOTS)
        configure_client(client, cfg, self._environ)
        client.will_set(device_status_topic(self.prefix, self.device_id), OFFLINE, qos=1, retain=True)
        # Callbacks run on paho's thread and only hand over to the sender: paho calls on_publish with
        # its message lock held, so touching our state (or paho) from there could deadlock.
        client.on_connect = lambda _c, _u, _flags, reason, _props: self._events.put(("connack", gen, reason))
        client.on_disconnect = lambda _c, _u, _flags, reason, _props: self._events.put(("down", gen, reason))
        client.on_publish = lambda _c, _u, mid, reason, _props: self._events.put(("ack", gen, mid, reason))
        return client

    def _connect(self) -> None:
        cfg = self.config
        self._gen += 1
        try:
            client = self._new_client(self._gen)
            if cfg.protocol == "5":
                client.connect(cfg.host, cfg.port, cfg.keepalive_s, clean_start=True)
            else:
                client.connect(cfg.host, cfg.port, cfg.keepalive_s)
        except ConfigError as error:  # unreadable certificate files: maybe fixed later, keep trying
            self._failed(str(error))
            return
        except (OSError, ssl.SSLError, ValueError) as error:
            self._failed(_describe_connect_error(error, cfg.host, cfg.port))
            return
        self._client = client
        self._connect_started = time.monotonic()
        client.loop_start()

    def _check_connack_timeout(self, now: float) -> None:
        limit = max(10.0, float(self.config.keepalive_s))
        if now - self._connect_started > limit:
            self._teardown(graceful=False)
            self._failed(f"no answer (CONNACK) from {self.config.host}:{self.config.port} within {limit:.0f} s")

    def _on_connack(self, gen: int, reason: Any) -> None:
        if gen != self._gen or self._client is None:
            return
        if getattr(reason, "is_failure", False):
            self._teardown(graceful=False)
            hint = ""
            if str(reason) in ("Bad user name or password", "Not authorized"):
                hint = " (check mqtt.username and the password: $ANPR_EDGE_MQTT_PASSWORD, mqtt.password_file or mqtt.password)"
            self._failed(f"broker {self.config.host}:{self.config.port} refused the connection: {reason}{hint}")
            return
        self._connects += 1
        self._connected_since = time.monotonic()
        backlog = len(self.outbox)
        self.outbox.start_session()
        self._tokens = max(1.0, min(self.config.replay_rate, float(self.config.max_inflight)))
        self._tokens_at = time.monotonic()
        self.last_error = None
        self._connected_event.set()
        log.info("MQTT connected to %s:%d as %s%s", self.config.host, self.config.port, self.client_id,
                 f"; {backlog} stored event(s) to send" if backlog else "")
        assert self._client is not None
        self._client.publish(device_status_topic(self.prefix, self.device_id), ONLINE, qos=1, retain=True)
        with self._status_lock:
            self._status_dirty.update(self._camera_status)
        self._discovered.clear()  # and the discovery configs again (a restarted broker may have lost them)

    def _on_down(self, gen: int, reason: Any) -> None:
        if gen != self._gen or self._client is None:
            return
        was_connected = self.connected
        lasted = time.monotonic() - (self._connected_since or time.monotonic())
        self._teardown(graceful=False)
        if was_connected and lasted >= _STABLE_CONNECTION_S:
            self._backoff.reset()
        # paho reports a dropped socket as "Unspecified error", which says nothing: name only real reasons.
        detail = "" if str(reason) in ("Unspecified error", "Success", "Normal disconnection") else f": {reason}"
        self._failed(f"connection to {self.config.host}:{self.config.port} lost{detail}")

    def _failed(self, message: str) -> None:
        delay = self._backoff.next_delay()
        self._next_attempt = time.monotonic() + delay
        self.last_error = message
        pending = len(self.outbox)
        log.warning("MQTT: %s; retrying in %.1f s%s", message, delay,
                    f" ({pending} event(s) kept in the outbox)" if pending else "")

    def _teardown(self, *, graceful: bool) -> None:
        """Forget the current client; its in-flight events go back to the outbox to be sent again."""
        client, self._client = self._client, None
        was_connected = self.connected
        self._connected_event.clear()
        self._connected_since = None
        if self._inflight:
            self.outbox.release(rowid for rowid, _ in self._inflight.values())
            self._inflight.clear()
        if client is None:
            return
        if graceful and was_connected:
            # A clean disconnect suppresses the last will, so say offline ourselves.
            info = client.publish(device_status_topic(self.prefix, self.device_id), OFFLINE, qos=1, retain=True)
            # Not acknowledged in time (or the link died meanwhile): the broker sends the will instead.
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        with contextlib.suppress(Exception):  # the connection is being abandoned either way
            client.disconnect()
        _stop_loop(client)

    # -------------------------------------------------------------------------------------- sending
    def _fill_window(self, now: float) -> None:
        if now < self._paused_until or self._client is None:
            return
        room = self.config.max_inflight - len(self._inflight)
        if room <= 0:
            return
        self._tokens = min(max(1.0, self.config.replay_rate), self._tokens + (now - self._tokens_at) * self.config.replay_rate)
        self._tokens_at = now
        items = self.outbox.next_batch(room, live_first=True, max_backlog=int(self._tokens))
        for item in items:
            data = item.payload
            if item.replayed:
                payload = json.loads(data)
                payload["replayed"] = True
                data = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            info = self._client.publish(
                plate_topic(self.prefix, self.device_id, item.camera), data, qos=self.config.qos
            )
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # not connected any more; the disconnect event follows
            self._inflight[info.mid] = (item.rowid, item.replayed)
            self.outbox.mark_inflight([item.rowid])
            self._sent += 1
            if item.replayed:
                self._tokens -= 1

    def _publish_statuses(self) -> None:
        with self._status_lock:
            dirty = [(camera, dict(self._camera_status[camera])) for camera in sorted(self._status_dirty)]
            self._status_dirty.clear()
        if not dirty or self._client is None:
            return
        dropped = self.outbox.dropped_total()
        for camera, status in dirty:
            if self.config.home_assistant.enabled and camera not in self._discovered:
                self._publish_discovery(camera)
            message = {"schema": 1, "device": self.device_id, **status, "dropped": dropped.get(camera, 0),
                       "time": format_time(time.time())}
            self._client.publish(
                camera_status_topic(self.prefix, self.device_id, camera),
                json.dumps(message, ensure_ascii=False, separators=(",", ":")),
                qos=1,
                retain=True,
            )

    def _publish_discovery(self, camera: str) -> None:
        assert self._client is not None
        topic, config = home_assistant_discovery(
            self.config.home_assistant.discovery_prefix, self.prefix, self.device_id, camera)
        self._client.publish(topic, json.dumps(config, ensure_ascii=False, separators=(",", ":")), qos=1, retain=True)
        self._discovered.add(camera)

    def _housekeeping(self, now: float) -> None:
        if now - self._last_prune >= 60.0:
            self._last_prune = now
            self.outbox.prune()
        if self.outbox.dropped_now != self._dropped_seen:
            # Drops show in each affected camera's status (cameras without a status get a minimal one).
            self._dropped_seen = self.outbox.dropped_now
            with self._status_lock:
                for camera in self.outbox.dropped_total():
                    self._camera_status.setdefault(
                        camera, {"camera": camera, "connected": None, "fps": None, "last_error": None})
                    self._status_dirty.add(camera)


def _stop_loop(client: mqtt.Client, timeout: float = 2.0) -> None:
    """``loop_stop`` with a bound: paho's join waits for unsent packets, which a dead peer never takes."""
    stopper = threading.Thread(target=client.loop_stop, name="anpr-mqtt-stop", daemon=True)
    stopper.start()
    stopper.join(timeout)
    if stopper.is_alive():
        sock = client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: the loop is ending anyway
                sock.shutdown(socket.SHUT_RDWR)
        stopper.join(timeout)
