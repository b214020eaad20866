"""The SCADA side of the Sparkplug tests: a primary host application on a real broker, with its own Sparkplug B
codec, written from the field numbers of the Sparkplug 3.0 specification (Payload, Metric) over a plain protobuf
wire reader. It shares nothing with the project's encoder (Tahu's .proto run by Google's protobuf), so a payload
that only agrees with itself fails here.

    host = ScadaHost(url, "scada1", "plant").start()   # connected, subscribed, not online yet
    host.online()                                      # STATE online (retained): the edge node may birth now
    host.wait_for(lambda h: h.of("NBIRTH"))
    host.rebirth("line1"); host.dcmd("line1", "cam0", "Device Control/Pause", True)
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from inspector.plc import parse_mqtt_url

WAIT_S = 30.0

# Sparkplug B DataType numbers (spec 3.0, 6.4.16) and the Metric field that holds each one's value.
INT32, INT64, UINT64, DOUBLE, BOOLEAN, STRING = 3, 4, 8, 10, 11, 12
_VALUE_FIELD = {INT32: 10, INT64: 11, UINT64: 11, DOUBLE: 13, BOOLEAN: 14, STRING: 15}


# -- protobuf wire format ----------------------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def wire_fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """`(field number, wire type, value)` of every field: ints for varints, bytes otherwise."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"wire type {wire} of field {number} is not used by Sparkplug B")
        out.append((number, wire, value))
    return out


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _put_varint(number << 3 | wire)


def _len_field(number: int, data: bytes) -> bytes:
    return _key(number, 2) + _put_varint(len(data)) + data


# -- Sparkplug payloads ------------------------------------------------------------------------------------------


@dataclass
class WireMetric:
    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None
    datatype: int | None = None
    is_null: bool = False
    value_field: int | None = None
    raw: Any = None


@dataclass
class WirePayload:
    timestamp: int | None = None
    seq: int | None = None
    metrics: list[WireMetric] = field(default_factory=list)


def decode_payload(buf: bytes) -> WirePayload:
    """A Sparkplug B Payload: timestamp (1), metrics (2), seq (3); Metric: name (1), alias (2), timestamp (3),
    datatype (4), is_null (7), value fields 10..19."""
    payload = WirePayload()
    for number, _wire, value in wire_fields(buf):
        if number == 1:
            payload.timestamp = value
        elif number == 3:
            payload.seq = value
        elif number == 2:
            metric = WireMetric()
            for n, w, v in wire_fields(value):
                if n == 1:
                    metric.name = v.decode("utf-8")
                elif n == 2:
                    metric.alias = v
                elif n == 3:
                    metric.timestamp = v
                elif n == 4:
                    metric.datatype = v
                elif n == 7:
                    metric.is_null = bool(v)
                elif 10 <= n <= 19:
                    assert metric.value_field is None, "a metric with two values"
                    metric.value_field, metric.raw = n, (w, v)
            payload.metrics.append(metric)
    return payload


def metric_value(metric: WireMetric, datatype: int) -> Any:
    """The metric's value as its (birth) datatype says; asserts that the value sits in that datatype's field."""
    if metric.is_null:
        assert metric.value_field is None, "a null metric with a value"
        return None
    assert metric.value_field == _VALUE_FIELD[datatype], (metric, datatype)
    _wire, raw = metric.raw
    if datatype == BOOLEAN:
        return bool(raw)
    if datatype == STRING:
        return raw.decode("utf-8")
    if datatype == DOUBLE:
        return struct.unpack("<d", raw)[0]
    if datatype == INT32:
        return raw - (1 << 32) if raw & (1 << 31) else raw
    if datatype == INT64:
        return raw - (1 << 64) if raw & (1 << 63) else raw
    return raw  # UINT64


def encode_command(metrics: list[tuple[str | int, int, Any]]) -> bytes:
    """An NCMD/DCMD payload: `(name or alias, datatype, value)` per metric."""
    body = _key(1, 0) + _put_varint(int(time.time() * 1000))
    for ref, datatype, value in metrics:
        metric = _len_field(1, str(ref).encode()) if isinstance(ref, str) else _key(2, 0) + _put_varint(ref)
        metric += _key(4, 0) + _put_varint(datatype)
        if datatype == BOOLEAN:
            metric += _key(14, 0) + _put_varint(1 if value else 0)
        elif datatype == STRING:
            metric += _len_field(15, str(value).encode())
        elif datatype == DOUBLE:
            metric += _key(13, 1) + struct.pack("<d", value)
        else:
            metric += _key(11, 0) + _put_varint(value & 0xFFFFFFFFFFFFFFFF)
        body += _len_field(2, metric)
    return body


# -- the host ----------------------------------------------------------------------------------------------------


@dataclass
class SpbMessage:
    """One Sparkplug message as the host understood it: values by metric name (aliases resolved by the births)."""

    kind: str
    node: str
    device: str | None
    seq: int | None
    timestamp: int | None
    values: dict[str, Any]
    datatypes: dict[str, int]
    timestamps: dict[str, int | None]
    named: bool  # every metric carried its name (births, NDEATH)
    at: float


class ScadaHost:
    """A primary host application: STATE with a last will, subscribed to `spBv1.0/<group>/#`, decoding every
    message; `problems` lists what it could not decode (a test asserts it stays empty)."""

    def __init__(self, url: str, host_id: str, group: str) -> None:
        self.url = url
        self.host_id = host_id
        self.group = group
        self.messages: list[SpbMessage] = []
        self.problems: list[str] = []
        self._aliases: dict[str, dict[int, tuple[str, int]]] = {}  # node -> alias -> (name, datatype)
        self._types: dict[tuple[str, str | None], dict[str, int]] = {}
        self._cond = threading.Condition(threading.RLock())  # predicates of wait_for query under it
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"scada-{host_id}", protocol=mqtt.MQTTv5)
        self.client.will_set(self.state_topic, self._state(False), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message

    @property
    def state_topic(self) -> str:
        return f"spBv1.0/STATE/{self.host_id}"

    def start(self) -> ScadaHost:
        addr = parse_mqtt_url(self.url)
        self.client.connect(addr.host, addr.port, 5, clean_start=True)
        self.client.loop_start()
        assert self._subscribed.wait(WAIT_S), "the host did not subscribe"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _state(self, online: bool) -> bytes:
        return json.dumps({"online": online, "timestamp": int(time.time() * 1000)}).encode()

    def online(self, online: bool = True) -> None:
        self.client.publish(self.state_topic, self._state(online), qos=1, retain=True).wait_for_publish(WAIT_S)

    def rebirth(self, node: str) -> None:
        self.send(f"spBv1.0/{self.group}/NCMD/{node}", [("Node Control/Rebirth", BOOLEAN, True)])

    def dcmd(self, node: str, device: str, name: str, datatype: int, value: Any, *, by_alias: bool = False) -> None:
        ref: str | int = name
        if by_alias:  # as Ignition does once it knows the aliases
            ref = next(a for a, (n, _) in self._aliases[node].items() if n == name)
        self.send(f"spBv1.0/{self.group}/DCMD/{node}/{device}", [(ref, datatype, value)])

    def send(self, topic: str, metrics: list[tuple[str | int, int, Any]] | bytes) -> None:
        body = metrics if isinstance(metrics, bytes) else encode_command(metrics)
        self.client.publish(topic, body, qos=0).wait_for_publish(WAIT_S)

    # -- receiving ----------------------------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(f"spBv1.0/{self.group}/#", qos=1)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            item = self._understand(msg.topic, bytes(msg.payload))
        except Exception as exc:  # recorded, asserted empty by the tests
            with self._cond:
                self.problems.append(f"{msg.topic}: {type(exc).__name__}: {exc}")
                self._cond.notify_all()
            return
        if item is None:
            return
        with self._cond:
            self.messages.append(item)
            self._cond.notify_all()

    def _understand(self, topic: str, body: bytes) -> SpbMessage | None:
        parts = topic.split("/")
        assert parts[0] == "spBv1.0" and parts[1] == self.group, topic
        kind, node = parts[2], parts[3]
        device = parts[4] if len(parts) > 4 else None
        if kind in {"NCMD", "DCMD"}:
            return None  # our own commands
        payload = decode_payload(body)
        values: dict[str, Any] = {}
        types: dict[str, int] = {}
        stamps: dict[str, int | None] = {}
        named = all(m.name is not None for m in payload.metrics)
        if kind in {"NBIRTH", "DBIRTH"}:
            if kind == "NBIRTH":
                self._aliases[node] = {}  # a new birth: aliases start over
            for metric in payload.metrics:
                assert metric.name is not None and metric.datatype is not None, f"{kind} metric without name/type"
                if metric.alias is not None:
                    self._aliases.setdefault(node, {})[metric.alias] = (metric.name, metric.datatype)
                types[metric.name] = metric.datatype
            self._types[(node, device)] = dict(types)
        for metric in payload.metrics:
            if metric.name is not None:
                name = metric.name
                datatype = metric.datatype or self._types.get((node, device), {})[name]
            else:
                assert metric.alias is not None, "a metric with neither name nor alias"
                name, datatype = self._aliases[node][metric.alias]
                assert (node, device) in self._types and name in self._types[(node, device)], f"{name} not born"
            values[name] = metric_value(metric, datatype)
            types[name] = datatype
            stamps[name] = metric.timestamp
        return SpbMessage(kind, node, device, payload.seq, payload.timestamp, values, types, stamps, named, time.time())

    # -- queries ------------------------------------------------------------------------------------------------

    def of(self, kind: str, node: str | None = None) -> list[SpbMessage]:
        with self._cond:
            return [m for m in self.messages if m.kind == kind and (node is None or m.node == node)]

    def values(self, name: str, kind: str = "DDATA") -> list[Any]:
        """Every value `name` took in messages of `kind`, in arrival order."""
        with self._cond:
            return [m.values[name] for m in self.messages if m.kind == kind and name in m.values]

    def latest(self, name: str) -> Any:
        """The value of device metric `name` a SCADA tag would show now (births and data, last one wins)."""
        with self._cond:
            for m in reversed(self.messages):
                if m.kind in {"DBIRTH", "DDATA"} and name in m.values:
                    return m.values[name]
        return None

    def wait_for(self, predicate: Callable[[ScadaHost], Any], timeout_s: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True
