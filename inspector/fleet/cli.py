"""`inspector fleet --mqtt URL [--port P]`: the plant view over one broker, until Ctrl-C / SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from inspector.fleet.server import FleetServer
from inspector.fleet.shifts import DEFAULT_SHIFTS, Shifts

__all__ = ["main"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="inspector fleet",
        description="One page for every line on a broker: state, rate, yield, latency, alarms, plant totals "
        "per recipe and per shift, from the lines' status, heartbeat and events (docs/mqtt.md).",
    )
    parser.add_argument(
        "--mqtt", metavar="URL", required=True, help="the lines' broker: mqtt://[user:pass@]host[:port]"
    )
    parser.add_argument("--port", type=int, default=8090, help="page port (8090; 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="page address (127.0.0.1; 0.0.0.0 for the plant network)")
    parser.add_argument("--prefix", default="inspector", help="the lines' mqtt.prefix (inspector)")
    parser.add_argument(
        "--shifts", default=DEFAULT_SHIFTS, help=f"shift start times, local, HH:MM comma-separated ({DEFAULT_SHIFTS})"
    )
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    try:
        shifts = Shifts.parse(args.shifts)
    except ValueError as exc:
        parser.error(f"--shifts: {exc}")
    if not 0 <= args.port <= 65535:
        parser.error("--port must be in 0..65535")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = FleetServer(args.mqtt, host=args.host, port=args.port, prefix=args.prefix, shifts=shifts)
    except ValueError as exc:
        parser.error(f"--mqtt: {exc}")

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            url = server.start()
        except OSError as exc:
            print(f"inspector fleet: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
            return 2
        print(
            f"inspector fleet: {url} (broker {server.subscriber.safe_url()}); Ctrl-C stops", file=sys.stderr, flush=True
        )
        if not server.subscriber.wait_connected(10):
            print("inspector fleet: broker not reachable yet; retrying in the background", file=sys.stderr)
        stop.wait()
        return 0
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
