"""`inspector run --config FILE`: run one line (camera, model, pipeline, and the store, PLC link and dashboard its
config enables) until Ctrl-C / SIGTERM, or until a finite source ends; then drain the parts in flight and exit 0.

Exit status: 0 after a clean drain, 1 when parts were still in flight at the drain timeout (they got fail-safe
verdicts), 2 when the line cannot start (bad config, model that does not load, port taken, a folder source with no
readable image, ...).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

from inspector.config_cli import start_with_config
from inspector.line import JsonlSink
from inspector.pipeline import Sink
from inspector.redact import redact_text

__all__ = ["main"]

log = logging.getLogger("inspector.run")


def summary(stats: dict[str, Any]) -> str:
    """One log line from `Pipeline.stats()`."""
    ledger, lat = stats["ledger"], stats["latency_ms"]
    return (
        f"parts seen {ledger['seen']} decided {ledger['decided']} in flight {ledger['in_flight']} "
        f"rejected {ledger['rejected']} fail-safe {ledger['failsafe']} dropped frames {ledger['frames_dropped']}; "
        f"{stats['rates']['parts_per_s']:.1f} parts/s; latency p50 {lat['p50']:.1f} ms p99 {lat['p99']:.1f} ms; "
        f"camera {'up' if stats['camera']['connected'] else 'DOWN'}"
        + (f"; alarms: {', '.join(a['name'] for a in stats['alarms'])}" if stats["alarms"] else "")
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="inspector run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", "-c", type=Path, help="the line's YAML config (default: built-in defaults)")
    parser.add_argument("--verdicts", metavar="PATH", help="also write each verdict as a JSON line here ('-': stdout)")
    parser.add_argument("--stats-every", type=float, default=10.0, metavar="S", help="log a summary every S seconds")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    config = start_with_config(args.config, log_level=args.log_level, log_format=log_format)
    if config is None:
        return 2
    from inspector.preflight import check_source

    for issue in check_source(config.camera):  # a line that can never make a part is a failed start, not a wait
        print(f"inspector run: cannot start the line: {redact_text(str(issue))}", file=sys.stderr)
        return 2
    sinks: list[Sink] = []
    if args.verdicts == "-":
        sinks.append(JsonlSink(sys.stdout))
    elif args.verdicts:
        sinks.append(JsonlSink(open(args.verdicts, "a", encoding="utf-8"), close_stream=True))  # noqa: SIM115

    from inspector.service import EdgeService  # the store, PLC link and dashboard load only when a line runs

    service = EdgeService(config, extra_sinks=sinks)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping after the parts in flight", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            service.start()  # takes down what it started when a part fails
        except Exception as exc:  # an operator gets one line saying why, not a traceback
            print(f"inspector run: cannot start the line: {redact_text(str(exc))}", file=sys.stderr)
            return 2
        assert service.pipeline is not None
        pipeline = service.pipeline
        if service.dashboard_url:
            log.info("dashboard %s", service.dashboard_url)
        if service.first_password:
            print(
                f"inspector run: log in to the dashboard as 'admin' with password {service.first_password}",
                file=sys.stderr,
            )
        next_summary = time.monotonic() + args.stats_every
        while not stop.wait(0.2):
            if service.done:
                log.info("the source ended")
                break
            if args.stats_every > 0 and time.monotonic() >= next_summary:
                next_summary += args.stats_every
                log.info("%s", summary(pipeline.stats()))
        drained = service.stop(drain=True)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("stopped: %s", summary(pipeline.stats()))
    if not drained:
        log.error("the line did not drain within %.1f s", config.pipeline.drain_timeout_s)
        return 1
    return 0
