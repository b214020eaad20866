"""A Sparkplug B 3.0 edge node (docs/plant.md): the line as an edge node, each camera as a device, a pipeline
sink and a command source beside the plain MQTT link (`inspector.plc`), switched on by `sparkplug.enabled`.

    metrics      the metrics model: names, datatypes, aliases; values from the pipeline's stats and each verdict
    payloads     the wire format: topics, protobuf payloads, the primary host's STATE (no paho)
    commands     NCMD (rebirth) and DCMD (recipe, pause, resume), run on the pipeline
    sender       the outgoing messages in seq order: births as one unit, DDATA, NDEATH
    node         `SparkplugNode`: session, bdSeq and will, STATE, births, report by exception, the sink

Encoding uses Eclipse Tahu's `sparkplug_b.proto` (EPL-2.0, vendored as `sparkplug_b.proto`) compiled with
`protoc --python_out=. sparkplug_b.proto` (protoc 3.21.12: the generated `sparkplug_b_pb2.py` is byte-identical to
the one pysparkplug 0.6.1 ships) and run by Google's `protobuf` package. `SparkplugNode` loads paho on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inspector.sparkplug.node import Device, SparkplugNode

__all__ = ["Device", "SparkplugNode"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        value = getattr(importlib.import_module("inspector.sparkplug.node"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
