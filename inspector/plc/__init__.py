"""The MQTT link to the line's PLC (docs/mqtt.md), one job per module:

    contract    topics, payloads, JSON Schemas, command parsing (no paho: usable without an MQTT client)
    client      broker URLs and the paho client's setup (protocol, credentials, TLS)
    queue       the offline queue: messages kept until acknowledged, reject gate deadlines
    connection  the broker connection: reconnect, MQTT 5 -> 3.1.1 fall-back, birth and will, sending
    commands    the PLC's commands run on the pipeline, errors answered on `cmd/error`
    link        `PlcLink`, the pipeline sink that puts these together, with heartbeats and alarms
    broker      the embedded default broker (mosquitto or amqtt in a child process)

The names below are importable from `inspector.plc`; those that need paho (the client, the link) load it on first
use, so `from inspector.plc import Topics` does not.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from inspector.plc.contract import (
    COMMANDS,
    MAX_COMMAND_BYTES,
    MAX_PART_ID,
    SCHEMA_VERSION,
    CommandError,
    PlcCommands,
    Topics,
    load_schema,
    parse_command,
    reject_payload,
    verdict_payload,
)

if TYPE_CHECKING:
    from inspector.plc.broker import BrokerError, EmbeddedBroker, find_mosquitto, free_port
    from inspector.plc.client import BrokerAddress, new_client, parse_mqtt_url, redact_url
    from inspector.plc.link import PlcLink

__all__ = [
    "COMMANDS",
    "MAX_COMMAND_BYTES",
    "MAX_PART_ID",
    "SCHEMA_VERSION",
    "BrokerAddress",
    "BrokerError",
    "CommandError",
    "EmbeddedBroker",
    "PlcCommands",
    "PlcLink",
    "Topics",
    "find_mosquitto",
    "free_port",
    "load_schema",
    "new_client",
    "parse_command",
    "parse_mqtt_url",
    "redact_url",
    "reject_payload",
    "verdict_payload",
]

_LAZY = {
    "BrokerError": "broker",
    "EmbeddedBroker": "broker",
    "find_mosquitto": "broker",
    "free_port": "broker",
    "BrokerAddress": "client",
    "new_client": "client",
    "parse_mqtt_url": "client",
    "redact_url": "client",
    "PlcLink": "link",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"inspector.plc.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
