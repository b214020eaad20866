"""The fleet view's MQTT client: subscribes to every line's `status`, `heartbeat` and `events` and feeds a `Fleet`.

Read-only: it publishes nothing and sets no will. Reconnects on its own (paho, 0.5 s doubling to 5 s); on each
connect it subscribes again, and the broker replays every line's retained `status`, so a fleet view started after
the lines (or reconnected after a broker outage) learns which are online or offline at once. MQTT 5 first; a
broker that refuses it gets MQTT 3.1.1.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from inspector.fleet.state import Fleet
from inspector.plc.client import ProtocolName, new_client, parse_mqtt_url, redact_url

__all__ = ["FleetSubscriber"]

log = logging.getLogger(__name__)

_UNSUPPORTED = 132  # MQTT 5 CONNACK "unsupported protocol version" (3.1.1 brokers answer 1)


class FleetSubscriber:
    """`FleetSubscriber(url, fleet).start()`; `stop()`. `url`: `mqtt://[user[:password]@]host[:port]` or
    `mqtts://...`."""

    def __init__(self, url: str, fleet: Fleet, *, client_id: str | None = None, keepalive_s: int = 10) -> None:
        self.url = url
        self.address = parse_mqtt_url(url)  # raises ValueError naming what is wrong
        self.fleet = fleet
        self.client_id = client_id or f"inspector-fleet-{socket.gethostname()}-{os.getpid()}"
        self.keepalive_s = keepalive_s
        self.protocol: ProtocolName = "5"
        self.connected = threading.Event()
        self._client: mqtt.Client | None = None
        self._lock = threading.Lock()

    def start(self) -> FleetSubscriber:
        """Connect in the background (returns at once)."""
        self._open(self.protocol)
        log.info("fleet view subscribed to %s on %s", ", ".join(self.fleet.topics()), self.safe_url())
        return self

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        return self.connected.wait(timeout_s)

    def stop(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
        self.connected.clear()
        self.fleet.connected = False

    def safe_url(self) -> str:
        return redact_url(self.url)

    def _open(self, protocol: ProtocolName) -> None:
        client = new_client(protocol=protocol, client_id=self.client_id, address=self.address)
        client.reconnect_delay_set(0.5, 5)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        with self._lock:
            self._client = client
        client.connect_async(self.address.host, self.address.port, self.keepalive_s)
        client.loop_start()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            log.warning("fleet view: broker %s refused the connection: %s", self.safe_url(), reason)
            if self.protocol == "5" and reason.value in {_UNSUPPORTED, 1}:
                self.protocol = "3.1.1"
                # Not from paho's own thread: stopping its loop there would deadlock.
                threading.Thread(target=self._fall_back, name="fleet-fallback", daemon=True).start()
            return
        client.subscribe([(topic, 1) for topic in self.fleet.topics()])
        self.fleet.connected = True
        self.connected.set()

    def _fall_back(self) -> None:
        log.info("fleet view: the broker refuses MQTT 5, using 3.1.1")
        self.stop()
        self._open("3.1.1")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connected.clear()
        self.fleet.connected = False
        if reason.is_failure:
            log.warning("fleet view: lost the broker %s (%s); reconnecting", self.safe_url(), reason)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.fleet.ingest(msg.topic, msg.payload)
