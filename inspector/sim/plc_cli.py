"""`inspector plc-sim`: a PLC stand-in for commissioning, tests and the demo.

The command line of `inspector.sim.plc.PlcSimulator`: it runs until `--parts` went through the gate, `--duration`
ran out, or Ctrl-C / SIGTERM, then prints the report (`--json` for a machine). With `--trigger` it is the line
master and publishes `cmd/trigger` for every part; otherwise it follows the inspector's part ids. Like a real PLC
should, it keeps a persistent MQTT session under a fixed client id (`plcsim-<line>-<camera>`), so the answers
published while it is disconnected reach it when it reconnects; `--clean-session` turns that off.

    inspector plc-sim --mqtt mqtt://127.0.0.1:1883 --line line1 --camera cam0 --rate 10 --gate-ms 1500 \
        --trigger --parts 400 --json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any

from inspector.config import TlsConfig
from inspector.sim.plc import PlcSimulator

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inspector plc-sim", description=__doc__.split("\n\n")[0])
    p.add_argument("--mqtt", required=True, metavar="URL", help="broker, mqtt://host:port or mqtts://host:port")
    p.add_argument("--line", default="line1")
    p.add_argument("--camera", default="cam0")
    p.add_argument("--prefix", default="inspector", help="topic prefix (default: inspector)")
    p.add_argument("--rate", type=float, default=5.0, help="parts a second on the conveyor (default 5)")
    p.add_argument("--gate-ms", type=float, default=2000.0, help="camera to reject gate in ms (default 2000)")
    p.add_argument("--trigger", action="store_true", help="publish cmd/trigger for every part (line master)")
    p.add_argument("--parts", type=int, default=None, help="stop after N parts reached the gate")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds at most")
    p.add_argument("--first-id", type=int, default=0, help="first part id in triggered mode")
    p.add_argument("--protocol", choices=["auto", "5", "3.1.1"], default="auto")
    p.add_argument("--username", default=None)
    p.add_argument(
        "--password-env",
        default="INSPECTOR_PLCSIM_PASSWORD",
        metavar="VAR",
        help="environment variable holding the password (never on the command line)",
    )
    p.add_argument("--ca-file", default=None)
    p.add_argument("--cert-file", default=None)
    p.add_argument("--key-file", default=None)
    p.add_argument(
        "--connect-timeout",
        type=float,
        default=15.0,
        metavar="S",
        help="give up when the broker does not answer within S seconds (default 15)",
    )
    p.add_argument("--client-id", default=None, help="MQTT client id (default: plcsim-<line>-<camera>, fixed)")
    p.add_argument(
        "--clean-session",
        action="store_true",
        help="no persistent session: answers published while disconnected are lost (for comparison only)",
    )
    p.add_argument(
        "--session-expiry",
        type=int,
        default=300,
        metavar="S",
        help="MQTT 5: the broker keeps the session S seconds while disconnected (default 300)",
    )
    p.add_argument("--grace", type=float, default=1.0, metavar="S", help="listen S seconds after the last gate")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the simulator until --parts / --duration / Ctrl-C and print the report. Exit 0, or 1 on no broker."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    tls = None
    if args.ca_file or args.cert_file or args.key_file:
        tls = TlsConfig(ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file)
    sim = PlcSimulator(
        args.mqtt,
        line=args.line,
        camera=args.camera,
        prefix=args.prefix,
        rate=args.rate,
        gate_ms=args.gate_ms,
        trigger=args.trigger,
        parts=args.parts,
        first_id=args.first_id,
        protocol=args.protocol,
        username=args.username,
        password=os.environ.get(args.password_env),
        tls=tls,
        grace_s=args.grace,
        connect_timeout_s=args.connect_timeout,
        client_id=args.client_id,
        persistent=not args.clean_session,
        session_expiry_s=args.session_expiry,
    )
    try:
        sim.start()
    except (ConnectionError, OSError, ValueError) as exc:
        print(f"plc-sim: {exc}", file=sys.stderr)
        return 1
    # SIGTERM (systemd, docker stop) ends the run like Ctrl-C: with a report.
    signal.signal(signal.SIGTERM, _interrupt)
    with contextlib.suppress(KeyboardInterrupt):
        sim.wait(args.duration)
    report = sim.stop()
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print(report.summary())
    return 0
