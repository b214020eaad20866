"""The edge node's outgoing messages in `seq` order: births as one unit, DDATA, NDEATH.

One lock orders `seq` with the wire: NBIRTH takes seq 0, every later message the next one (mod 256). Births and
data go out with QoS 0, not retained (spec 3.0); NDEATH with QoS 1. The last part of each device is kept here, under
that lock, so that a part is either in a DBIRTH (as the last part) or in a DDATA, never both and never neither.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

from inspector.sparkplug import metrics as m
from inspector.sparkplug.payloads import encode, encode_death, topic

__all__ = ["Sender"]


class Sender:
    """Publishes for one edge node on whatever paho client `client` is (None: nothing goes out).

    on_lost: called (outside paho) when paho refuses a message: the node births again once connected.
    """

    def __init__(self, group: str, edge_node_id: str, devices: list[str], on_lost: Callable[[], None]) -> None:
        self.group = group
        self.edge_node_id = edge_node_id
        self.node_specs = {s.name: s for s in m.node_metrics()}
        self.specs = {d: {s.name: s for s in m.device_metrics(i)} for i, d in enumerate(devices)}
        self.lock = threading.Lock()
        self.client: mqtt.Client | None = None
        self.born = False
        self._seq = 0
        self._last_part: dict[str, dict[str, m.MetricValue]] = {d: {} for d in devices}
        self._on_lost = on_lost

    def topic(self, kind: str, device: str | None = None) -> str:
        return topic(self.group, kind, self.edge_node_id, device)

    def death_payload(self, bd_seq: int) -> bytes:
        return encode_death(self.node_specs[m.BD_SEQ], bd_seq)

    def birth(self, node_values: Mapping[str, m.MetricValue], statuses: Mapping[str, dict[str, m.MetricValue]]) -> bool:
        """NBIRTH (seq 0) and a DBIRTH per device: its status values and its last part; False when not sent."""
        with self.lock:
            self._seq = 0
            client = self.client
            if client is None:
                return False
            nodes = self.node_specs
            body = encode(((nodes[k], v) for k, v in node_values.items()), seq=self._next_seq(), birth=True)
            if not self._publish(client, self.topic("NBIRTH"), body):
                return False
            for device, specs in self.specs.items():
                values = {**statuses[device], **{n: self._last_part[device].get(n) for n in m.PART_NAMES}}
                body = encode(((specs[k], values[k]) for k in specs), seq=self._next_seq(), birth=True)
                if not self._publish(client, self.topic("DBIRTH", device), body):
                    return False
            self.born = True
            return True

    def part(self, device: str, values: dict[str, m.MetricValue], stamp_ms: int) -> bool:
        """One part's DDATA, stamped with its decision time; False (kept for the next DBIRTH) when not born."""
        with self.lock:
            self._last_part[device] = values
            return self.born and self._data(device, values, stamp_ms)

    def status(self, device: str, changes: Mapping[str, m.MetricValue]) -> bool:
        """A DDATA of changed status metrics; False when not born."""
        with self.lock:
            return self.born and self._data(device, changes, None)

    def death(self, client: mqtt.Client, bd_seq: int) -> None:
        """NDEATH published by the node itself (clean stop, primary host offline); waits up to 2 s for the ack."""
        with self.lock:
            self.born = False
            info = client.publish(self.topic("NDEATH"), self.death_payload(bd_seq), qos=1, retain=False)
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(timeout=2.0)

    # -- with `lock` held ----------------------------------------------------------------------------------------

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) % 256
        return seq

    def _data(self, device: str, values: Mapping[str, m.MetricValue], stamp_ms: int | None) -> bool:
        client = self.client
        if client is None:
            return False
        specs = self.specs[device]
        metrics = [(specs[k], v) for k, v in values.items()]
        body = encode(metrics, seq=self._next_seq(), birth=False, timestamp_ms=stamp_ms, metric_timestamp_ms=stamp_ms)
        return self._publish(client, self.topic("DDATA", device), body)

    def _publish(self, client: mqtt.Client, name: str, body: bytes) -> bool:
        info = client.publish(name, body, qos=0, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self.born = False  # the socket is gone (or paho refused): birth again once connected
            self._on_lost()
            return False
        return True
