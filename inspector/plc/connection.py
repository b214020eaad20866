"""The PLC link's broker connection: connect and reconnect, MQTT 5 -> 3.1.1 fall-back, birth and will, sending.

`submit()` hands a message to paho at once when connected and nothing waits (keeping order), else queues it in
the `Outbox`; `drain()` sends the queue after a reconnect. Paho's network thread runs the callbacks: on connect
the link takes back what paho still holds unacknowledged, subscribes to the commands and publishes `online`.
With `protocol: auto` a broker that refuses MQTT 5 (or closes the MQTT 5 handshake without an answer) gets
3.1.1: the callbacks flag it and the link's worker calls `fall_back()`.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from inspector.config import MqttConfig
from inspector.plc.client import ProtocolName, new_client, parse_mqtt_url, redact_url
from inspector.plc.contract import Topics, dumps, status_payload
from inspector.plc.queue import Item, Outbox
from inspector.redact import redact_obj

__all__ = ["Connection"]

log = logging.getLogger(__name__)

_PROTOCOL_REFUSED = {132, 1}  # MQTT 5 "Unsupported protocol version"; 3.1.1 CONNACK code 1 as paho reports it


class Connection:
    """The paho client of one PLC link and its state; `lock` (the link's) guards that state, `send_lock`
    serialises publish+track against the reconnect hand-back. The lock is never held while calling paho.

    Its address, client id and password come from `config`. on_command: `(topic, payload, retained)` of each
    message under `cmd/` (None: no command subscription). reconnect_s: back-off bounds between attempts.
    """

    def __init__(
        self,
        config: MqttConfig,
        camera_id: str,
        topics: Topics,
        *,
        lock: threading.Condition,
        outbox: Outbox,
        on_command: Callable[[str, bytes, bool], None] | None,
        reconnect_s: tuple[float, float],
    ) -> None:
        self.config = config
        self.camera_id = camera_id
        self.topics = topics
        self.address = parse_mqtt_url(config.url or "")
        self.client_id = config.client_id or f"inspector-{config.line}-{camera_id}"
        self.password = config.password.get_secret_value() if config.password is not None else None
        self.tls = self.address.tls or config.tls is not None
        self.lock = lock
        self.outbox = outbox
        self.send_lock = threading.Lock()
        self._on_command = on_command
        self._reconnect = reconnect_s
        self.client: mqtt.Client | None = None
        self.protocol: ProtocolName = "3.1.1" if config.protocol == "3.1.1" else "5"
        self.connected = False
        self.stopping = False
        self.last_error: str | None = None
        self.reconnects = 0
        self.refused = 0
        self._ever_connected = False
        self._fallback_pending = False
        self._connack_seen = False

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background with the current protocol (MQTT 5 unless configured or fallen back)."""
        with self.lock:
            self.stopping = False
        self._connect(self.protocol)

    def begin_stop(self) -> None:
        """From now on queue instead of sending, and let the worker return."""
        with self.lock:
            self.stopping = True
            self.lock.notify_all()

    def close(self) -> None:
        """Publish `offline` (retained) when connected, disconnect, stop paho's thread."""
        with self.lock:
            client, connected = self.client, self.connected  # after the worker: a fall-back may have swapped it
        if client is not None:
            if connected:
                info = client.publish(self.topics.status, self._status("offline", "stopped"), qos=1, retain=True)
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout=2.0)
            client.disconnect()
            client.loop_stop()
        with self.lock:
            self.connected = False

    def wait_for_work(self, until: float) -> Literal["stop", "fall_back", "work"]:
        """The worker's wait: until `until` (monotonic s) at most, and at least 5x a second (to count
        acknowledgements), unless there is something to send, to fall back to or to stop."""
        with self.lock:
            idle = not self.stopping and not self._fallback_pending and not (self.connected and self.outbox.waiting)
            wait = until - time.monotonic()
            if idle and wait > 0:
                self.lock.wait(min(wait, 0.2))
            if self.stopping:
                return "stop"
            return "fall_back" if self._fallback_pending else "work"

    def fall_back(self) -> None:
        """Drop the MQTT 5 client and connect again with MQTT 3.1.1 (worker thread)."""
        old = self.client
        with self.lock:
            self._fallback_pending = False
        if old is not None:
            old.disconnect()
            old.loop_stop()
        self._connect("3.1.1")

    def safe_url(self) -> str:
        return redact_url(self.config.url or "")

    # -- sending ------------------------------------------------------------------------------------------------

    def submit(self, item: Item) -> None:
        """Hand `item` to paho now when connected and nothing is waiting (keeps order), else queue it."""
        with self.lock:
            direct = self.connected and not self.outbox.waiting and not self.stopping
            if not direct:
                self.outbox.push(item)
                self.lock.notify_all()
                return
        with self.send_lock:
            self._send(item)

    def drain(self, batch: int = 256) -> None:
        """Send queued items while connected, a batch at a time so heartbeats keep their rhythm."""
        for _ in range(batch):
            with self.send_lock:
                with self.lock:
                    if not self.connected or not self.outbox.waiting or self.stopping:
                        return
                    item = self.outbox.waiting.popleft()
                self._send(item)

    def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Publish outside the queue (heartbeats: QoS 0, never kept); nothing when there is no client."""
        client = self.client
        if client is not None:
            with self.send_lock:
                client.publish(topic, payload, qos=qos)

    def _send(self, item: Item) -> None:
        """Publish one item and keep it until acknowledged (call with `send_lock` held)."""
        client = self.client
        assert client is not None
        properties = self.outbox.expiry(item, self.protocol)
        if properties is False:  # its gate has passed
            return
        qos = self.config.qos
        info = client.publish(item.topic, item.payload, qos=qos, retain=item.retain, properties=properties)
        with self.lock:
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                # Socket gone before paho noticed: stop draining until on_connect; QoS 0 is not kept by paho.
                self.connected = False
                if qos == 0:
                    self.outbox.push(item, front=True)
                    return
            elif info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.error("publish on %s failed: %s", item.topic, mqtt.error_string(info.rc))
                self.outbox.push(item, front=True)
                self.connected = False
                return
            self.outbox.track(info, item)
        if item.timings is not None and not item.timings.published_ns:
            item.timings.published_ns = time.monotonic_ns()

    # -- paho client and callbacks ------------------------------------------------------------------------------

    def _status(self, state: str, reason: str, protocol: str | None = None) -> bytes:
        payload = status_payload(
            state,
            reason,
            protocol=protocol or self.protocol,
            client_id=self.client_id,
            line=self.config.line,
            camera=self.camera_id,
            heartbeat_s=self.config.heartbeat_s,
            keepalive_s=self.config.keepalive_s,
        )
        return dumps(redact_obj(payload))  # a reason may quote an error message

    def _connect(self, protocol: ProtocolName) -> None:
        client = new_client(
            protocol=protocol,
            client_id=self.client_id,
            address=self.address,
            username=self.config.username,
            password=self.password,
            tls=self.config.tls,
        )
        client.reconnect_delay_set(*self._reconnect)  # type: ignore[arg-type]
        client.will_set(self.topics.status, self._status("offline", "connection lost", protocol), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        with self.lock:
            self.client = client
            self.protocol = protocol
        if protocol == "5":
            # Clean start every time: commands queued while we were away are stale.
            client.connect_async(self.address.host, self.address.port, self.config.keepalive_s, clean_start=True)
        else:
            client.connect_async(self.address.host, self.address.port, self.config.keepalive_s)
        client.loop_start()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if client is not self.client:
            return
        with self.lock:
            self._connack_seen = True
        if reason.is_failure:
            with self.lock:
                self.last_error = f"broker refused: {reason}"
                fallback = reason.value in _PROTOCOL_REFUSED and self.config.protocol == "auto" and self.protocol == "5"
                if fallback:
                    self._fallback_pending = True
                    self.lock.notify_all()
            if fallback:
                log.info("broker %s refuses MQTT 5 (%s); falling back to MQTT 3.1.1", self.safe_url(), reason)
            else:
                log.warning("broker %s refused the connection: %s", self.safe_url(), reason)
            return
        # Take back what paho holds unacknowledged so it goes out through our gate-deadline check.
        with self.send_lock:
            dropped = client.drop_out_messages()
            if self._on_command is not None:
                if self.protocol == "5":
                    options = SubscribeOptions(qos=1, noLocal=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
                    client.subscribe(self.topics.cmd + "#", options=options)
                else:
                    client.subscribe(self.topics.cmd + "#", qos=1)
            client.publish(self.topics.status, self._status("online", "connected"), qos=1, retain=True)
            with self.lock:
                self.outbox.take_back(dropped)
                if self._ever_connected:
                    self.reconnects += 1
                self._ever_connected = True
                self.connected = True
                self.last_error = None
                backlog = len(self.outbox.waiting)
                self.lock.notify_all()
        log.info("PLC link connected to %s (MQTT %s), %d message(s) to send", self.safe_url(), self.protocol, backlog)

    def _on_connect_fail(self, client: mqtt.Client, _userdata: Any) -> None:
        if client is not self.client:
            return
        with self.lock:
            first = self.last_error is None
            self.last_error = "broker unreachable"
        if first:
            log.warning("PLC link cannot reach the broker at %s; retrying", self.safe_url())

    def _on_disconnect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if client is not self.client:
            return
        with self.lock:
            was = self.connected
            self.connected = False
            self.outbox.alarm_logged = False
            # A broker that closes an MQTT 5 handshake without any CONNACK (amqtt chokes on a v5 will) is
            # treated like one that refused 5, but only before the first MQTT 5 connection ever succeeded, and
            # not over TLS, where a refused client certificate looks the same.
            fallback = (
                not was
                and not self._connack_seen
                and not self._ever_connected
                and not self.stopping
                and self.config.protocol == "auto"
                and self.protocol == "5"
                and not self.tls
            )
            self._connack_seen = False
            if fallback:
                self._fallback_pending = True
            self.lock.notify_all()
        if fallback:
            log.info(
                "broker %s closed the MQTT 5 handshake without an answer; falling back to MQTT 3.1.1", self.safe_url()
            )
        elif was and not self.stopping:
            log.warning("PLC link lost the broker (%s); queueing up to %d messages", reason, self.config.offline_queue)

    def _on_publish(self, client: mqtt.Client, _userdata: Any, _mid: int, reason: ReasonCode, _props: Any) -> None:
        # A broker may acknowledge and still refuse (MQTT 5: not authorized, quota exceeded): say so.
        if client is not self.client or not reason.is_failure:
            return
        with self.lock:
            self.refused += 1
            first = self.refused == 1
        (log.error if first else log.debug)("broker refused a message: %s", reason)

    def _on_message(self, client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if client is not self.client or self._on_command is None or not msg.topic.startswith(self.topics.cmd):
            return
        self._on_command(msg.topic, bytes(msg.payload), bool(msg.retain))
