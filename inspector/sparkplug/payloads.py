"""Sparkplug B wire format: topics, protobuf payloads (Eclipse Tahu's `sparkplug_b.proto`, compiled with protoc) and
the primary host's JSON `STATE` message. No paho here.

    spBv1.0/<group>/NBIRTH|NDATA|NDEATH|NCMD/<edge node>
    spBv1.0/<group>/DBIRTH|DDATA|DDEATH|DCMD/<edge node>/<device>
    spBv1.0/STATE/<primary host id>          {"online": true|false, "timestamp": <Unix ms>}, retained
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

from inspector.sparkplug import sparkplug_b_pb2 as pb
from inspector.sparkplug.metrics import DataType, MetricSpec, MetricValue

__all__ = [
    "NAMESPACE",
    "CommandMetric",
    "HostState",
    "PayloadError",
    "decode_command",
    "encode",
    "encode_death",
    "now_ms",
    "parse_state",
    "state_payload",
    "state_topic",
    "topic",
]

NAMESPACE = "spBv1.0"
MAX_COMMAND_BYTES = 65536


class PayloadError(ValueError):
    """A command payload that cannot be used: `kind` is a stable short name, `detail` says why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def now_ms() -> int:
    return int(time.time() * 1000)


def topic(group: str, kind: str, edge_node: str, device: str | None = None) -> str:
    """`spBv1.0/<group>/<kind>/<edge node>[/<device>]`."""
    return f"{NAMESPACE}/{group}/{kind}/{edge_node}" + (f"/{device}" if device is not None else "")


def state_topic(host_id: str) -> str:
    return f"{NAMESPACE}/STATE/{host_id}"


# -- encoding ----------------------------------------------------------------------------------------------------

_INT32_TYPES = {DataType.Int32}  # stored in `int_value` (uint32), negative numbers two's complement (spec 6.4.16)


def _set_value(metric: pb.Payload.Metric, datatype: DataType, value: MetricValue) -> None:
    if value is None:
        metric.is_null = True
    elif datatype == DataType.Boolean:
        metric.boolean_value = bool(value)
    elif datatype == DataType.String:
        metric.string_value = str(value)
    elif datatype == DataType.Double:
        metric.double_value = float(value)
    elif datatype in _INT32_TYPES:
        metric.int_value = int(value) & 0xFFFFFFFF
    else:  # Int64, UInt64
        metric.long_value = int(value) & 0xFFFFFFFFFFFFFFFF


def encode(
    metrics: Iterable[tuple[MetricSpec, MetricValue]],
    *,
    seq: int | None,
    birth: bool,
    timestamp_ms: int | None = None,
    metric_timestamp_ms: int | None = None,
) -> bytes:
    """A Sparkplug B payload. Births carry each metric's name, alias and datatype; data and deaths its alias only
    (spec 3.0: no name and no datatype once an alias is known). seq: None for NDEATH (which has none)."""
    stamp = now_ms() if timestamp_ms is None else timestamp_ms
    payload = pb.Payload(timestamp=stamp)
    if seq is not None:
        payload.seq = seq
    for spec, value in metrics:
        metric = payload.metrics.add()
        if birth:
            metric.name = spec.name
            metric.datatype = int(spec.datatype)
        metric.alias = spec.alias
        metric.timestamp = stamp if metric_timestamp_ms is None else metric_timestamp_ms
        _set_value(metric, spec.datatype, value)
    return payload.SerializeToString()


def encode_death(bd_seq: MetricSpec, value: int) -> bytes:
    """NDEATH: a timestamp and the `bdSeq` of the session it ends, by name (a host may not know the alias)."""
    payload = pb.Payload(timestamp=now_ms())
    metric = payload.metrics.add(name=bd_seq.name, datatype=int(bd_seq.datatype))
    metric.long_value = value
    return payload.SerializeToString()


# -- commands ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandMetric:
    """One metric of an NCMD or DCMD: its name or alias (whichever the host sent) and value."""

    name: str | None
    alias: int | None
    value: MetricValue


def decode_command(data: bytes) -> list[CommandMetric]:
    """The metrics of an NCMD/DCMD payload; raises `PayloadError` (never anything else) when it is not one."""
    if len(data) > MAX_COMMAND_BYTES:
        raise PayloadError("too_large", f"payload of {len(data)} bytes exceeds {MAX_COMMAND_BYTES}")
    payload = pb.Payload()
    try:
        payload.ParseFromString(data)
    except Exception as exc:  # protobuf raises DecodeError, or RuntimeWarning-like errors from upb
        raise PayloadError("bad_payload", f"not a Sparkplug B payload: {str(exc)[:120]}") from exc
    out = []
    for metric in payload.metrics:
        name = metric.name if metric.HasField("name") else None
        alias = metric.alias if metric.HasField("alias") else None
        if name is None and alias is None:
            raise PayloadError("no_name", "a command metric has neither a name nor an alias")
        kind = metric.WhichOneof("value")
        value: MetricValue
        if metric.is_null or kind is None:
            value = None
        elif kind in {"int_value", "long_value", "boolean_value", "string_value"}:
            value = getattr(metric, kind)
        elif kind in {"float_value", "double_value"}:
            value = float(getattr(metric, kind))
            if not math.isfinite(value):
                raise PayloadError("bad_value", f"{name or alias}: not a finite number")
        else:
            raise PayloadError("wrong_type", f"{name or alias}: {kind} values are not accepted")
        out.append(CommandMetric(name, alias, value))
    if not out:
        raise PayloadError("empty", "the command carries no metric")
    return out


# -- the primary host's STATE ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HostState:
    online: bool
    timestamp: int


def state_payload(online: bool, timestamp_ms: int | None = None) -> bytes:
    """What a primary host publishes (retained, QoS 1) on `spBv1.0/STATE/<id>` (spec 3.0: JSON, not protobuf)."""
    stamp = now_ms() if timestamp_ms is None else timestamp_ms
    return json.dumps({"online": online, "timestamp": stamp}, separators=(",", ":")).encode()


def parse_state(data: bytes) -> HostState:
    """A STATE payload; raises `PayloadError` when it is not `{"online": bool, "timestamp": int}`."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PayloadError("bad_state", f"STATE is not JSON: {str(exc)[:80]}") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("online"), bool):
        raise PayloadError("bad_state", 'STATE must be {"online": true|false, "timestamp": <ms>}')
    stamp = obj.get("timestamp", 0)
    if isinstance(stamp, bool) or not isinstance(stamp, int):
        raise PayloadError("bad_state", "STATE timestamp must be an integer (Unix ms)")
    return HostState(obj["online"], stamp)
