"""The plant view (`inspector fleet`): every line on one broker, from what the lines already publish.

shifts      shift boundaries (`06:00,14:00,22:00`) and which shift a moment is in
totals      part counts per recipe and per shift, yield and escape rate
camera      one line's camera from its status, heartbeat and events: online, stale, offline, alarms
state       `Fleet`: every camera under a topic prefix, plant totals, the JSON snapshot
subscriber  the MQTT client that feeds a `Fleet`
metrics     Prometheus metrics with `line` and `camera` labels
app         the FastAPI app: page, `/api/fleet`, `/metrics`
server      `FleetServer`: all of the above in one object (the CLI and `inspector demo --lines N`)
cli         `inspector fleet --mqtt URL [--port P] [--shifts ...]`
"""

from __future__ import annotations

from inspector.fleet.shifts import Shifts
from inspector.fleet.state import Fleet

__all__ = ["Fleet", "FleetServer", "Shifts", "main"]


def main(argv: list[str]) -> int:
    from inspector.fleet.cli import main as cli_main

    return cli_main(argv)


def __getattr__(name: str) -> object:
    if name == "FleetServer":
        from inspector.fleet.server import FleetServer

        return FleetServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
