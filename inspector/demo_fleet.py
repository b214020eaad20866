"""`inspector demo --lines N`: a plant on one machine. N synthetic lines (their own seeds and part rates), one
broker (embedded, or `--mqtt`), a PLC simulator at each line's gate, each line's dashboard, and the fleet view
over them all (`inspector fleet`).

With `--parts P` every line makes P parts, and the demo ends with one JSON line per line and a last one with the
total: `{"line": "line1", "parts": ..., "rejected": ..., "failsafe": ..., "escapes": ..., "false_rejects": ...,
"answered": ..., "missing_answers": ..., "late_answers": ..., ...}`; `answered` counts the parts whose answer
reached the PLC before the part reached its gate. The exit code is 0 when every line drained and every part on
every line was answered at its gate.

`line_config` is also the line of the fleet tests and of `bench/fleet.py`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.config import LineConfig
from inspector.demo import TruthTally, demo_config

if TYPE_CHECKING:
    from inspector.service import EdgeService
    from inspector.sim.plc import PlcSimulator

__all__ = ["PlantLine", "line_config", "plant_lines", "run_plant"]

log = logging.getLogger("inspector.demo")

_RATE_STEPS = (1.0, 0.8, 0.6, 0.9, 0.7, 0.5)  # each line its own pace: a plant is never in lockstep


@dataclass(frozen=True, slots=True)
class PlantLine:
    """One simulated line of the plant: its MQTT line name, synthetic seed and part rate."""

    name: str
    seed: int
    rate: float


def plant_lines(n: int, total_rate: float, seed: int = 0) -> list[PlantLine]:
    """`n` lines `line1..lineN`, seeds `seed+1..`, sharing `total_rate` parts/s unevenly (the plant's total is
    what loads the machine: `--rate 10` with 4 lines costs what one line at 10 parts/s does)."""
    weights = [_RATE_STEPS[i % len(_RATE_STEPS)] for i in range(n)]
    return [
        PlantLine(f"line{i + 1}", seed + i + 1, round(total_rate * w / sum(weights), 3)) for i, w in enumerate(weights)
    ]


def line_config(
    line: PlantLine,
    mqtt_url: str,
    workdir: Path,
    model: Path,
    *,
    defect_rate: float = 0.3,
    port: int = 0,
    heartbeat_s: float = 1.0,
    keepalive_s: int = 5,
    threads: int = 0,
) -> LineConfig:
    """The demo's line (synthetic camera, model, thresholds, store, dashboard) named `line.name` on `mqtt_url`,
    with its files under `workdir`. threads: the model's intra-op threads (0: onnxruntime's choice, all cores)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = demo_config(line.rate, port, mqtt_url, workdir, line.seed, defect_rate, model)
    mqtt = config.mqtt.model_copy(update={"line": line.name, "heartbeat_s": heartbeat_s, "keepalive_s": keepalive_s})
    model_config = config.model.model_copy(update={"threads": threads})
    return config.model_copy(update={"mqtt": mqtt, "model": model_config})


@dataclass
class _Running:
    line: PlantLine
    service: EdgeService
    tally: TruthTally
    plc: PlcSimulator


def _start_line(
    line: PlantLine, url: str, workdir: Path, args: argparse.Namespace, together: threading.Barrier
) -> _Running:
    """Start one line; its first part waits at `together` until every line has loaded its model (a line that
    inspects while the others load would fail parts safe for want of CPU)."""
    from inspector.service import EdgeService
    from inspector.sim import SyntheticSource
    from inspector.sim.plc import PlcSimulator
    from inspector.sources import Paced

    # Several lines on a few cores: one inference thread each, rather than every line's session on every core.
    threads = 1 if args.lines >= (os.cpu_count() or 1) else 0
    config = line_config(line, url, workdir / line.name, args.model, defect_rate=args.defect_rate, threads=threads)
    source = Paced(SyntheticSource(config.camera.synthetic, limit=args.parts), line.rate, read_first=True)
    tally = TruthTally()
    service = EdgeService(config, extra_sinks=[tally], source=source)
    gate_ms = config.pipeline.gate_ms or 2000.0
    plcs: list[PlcSimulator] = []

    def start_plc(_svc: EdgeService) -> None:
        plc = PlcSimulator(
            url, line=line.name, camera=config.camera.id, prefix=config.mqtt.prefix, rate=line.rate, gate_ms=gate_ms,
            parts=args.parts,
        )  # fmt: skip
        plc.start()
        plcs.append(plc)
        together.wait(timeout=600)

    try:
        service.start(before_line=start_plc)
    except BaseException:
        for plc in plcs:
            plc.stop()
        raise
    return _Running(line, service, tally, plcs[0])


def _start_together(lines: list[PlantLine], url: str, workdir: Path, args: argparse.Namespace) -> list[_Running]:
    """Start every line in a thread of its own (models load in parallel); all or none: when one fails, the
    others are stopped and its error is raised."""
    together = threading.Barrier(len(lines))
    started: list[_Running | None] = [None] * len(lines)
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            started[i] = _start_line(lines[i], url, workdir, args, together)
        except BaseException as exc:
            errors.append(exc)
            together.abort()  # the others stop waiting (and fail) instead of hanging

    threads = [threading.Thread(target=start, args=(i,), name=f"start-{line.name}") for i, line in enumerate(lines)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    running = [run for run in started if run is not None]
    if errors:
        for run in running:
            run.service.stop(drain=False)
            run.plc.stop()
        first = next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
        raise first
    return running


def _result(run: _Running, drained: bool, report: Any) -> dict[str, Any]:
    assert run.service.line is not None
    ledger = run.service.line.pipeline.stats()["ledger"]
    plc = {k: v for k, v in report.to_dict().items() if not k.endswith("_ids")}
    return {
        "line": run.line.name,
        "seed": run.line.seed,
        "rate": run.line.rate,
        "parts": ledger["decided"],
        "rejected": ledger["rejected"],
        "failsafe": ledger["failsafe"],
        "escapes": report.escapes,
        "false_rejects": report.false_rejects,
        "defective": report.defective,
        "answered": report.parts - report.missing_answers,
        "missing_answers": report.missing_answers,
        "late_answers": report.late_answers,
        "plc": plc,
        "inspector": run.tally.snapshot(),
        "drained": drained,
    }


def _total(results: list[dict[str, Any]], interrupted: bool) -> dict[str, Any]:
    keys = ("parts", "rejected", "failsafe", "escapes", "false_rejects", "defective", "answered", "missing_answers")
    total: dict[str, Any] = {"line": "total", "lines": len(results)}
    total.update({k: sum(r[k] for r in results) for k in (*keys, "late_answers")})
    total["every_part_answered"] = all(r["missing_answers"] == 0 and r["answered"] == r["parts"] for r in results)
    total["drained"] = all(r["drained"] for r in results)
    total["interrupted"] = interrupted
    return total


def run_plant(args: argparse.Namespace, workdir: Path, stop: threading.Event) -> int:
    """The plant demo proper (`inspector demo --lines N`; signal handlers and `workdir` are the caller's)."""
    from inspector.fleet.server import FleetServer
    from inspector.plc.broker import EmbeddedBroker

    broker = None
    url = args.mqtt
    if url is None:
        broker = EmbeddedBroker()
        url = broker.start()
    lines = plant_lines(args.lines, args.rate, args.seed)
    running: list[_Running] = []
    fleet: FleetServer | None = None
    try:
        try:
            fleet = FleetServer(url, port=args.port)
            fleet_url = fleet.start()
            running += _start_together(lines, url, workdir, args)
        except Exception as exc:
            print(f"inspector demo: cannot start the plant: {exc}", file=sys.stderr)
            return 2
        kind = f"embedded {broker.kind} " if broker is not None else ""
        print(f"inspector demo: {len(lines)} lines on the {kind}broker {url}", file=sys.stderr)
        print(f"inspector demo: fleet view {fleet_url}", file=sys.stderr)
        for run in running:
            login = f" (admin password {run.service.first_password})" if run.service.first_password else ""
            print(
                f"inspector demo: {run.line.name} ({run.line.rate:g} parts/s, seed {run.line.seed}) dashboard "
                f"{run.service.dashboard_url}{login}",
                file=sys.stderr,
            )
        print("inspector demo: Ctrl-C stops", file=sys.stderr, flush=True)
        next_print = time.monotonic()
        while not stop.wait(0.25):
            if all(r.service.done for r in running):
                break
            if time.monotonic() >= next_print:
                next_print += 2.0
                parts = "  ".join(f"{r.line.name} {r.tally.snapshot()['parts']:>5}" for r in running)
                print(f"parts: {parts}", file=sys.stderr, flush=True)
        results = []
        for run in running:
            if run.service.done and args.parts is not None:
                run.plc.wait(timeout_s=(run.service.config.pipeline.gate_ms or 2000.0) / 1000 + 5)
            drained = run.service.stop(drain=True)
            results.append(_result(run, drained, run.plc.stop()))
    finally:
        for run in running:
            run.service.stop(drain=False)
            run.plc.stop()
        if fleet is not None:
            fleet.stop()
        if broker is not None:
            broker.stop()
    total = _total(results, stop.is_set())
    if args.parts is not None:
        for result in results:
            print(json.dumps(result), flush=True)
        print(json.dumps(total), flush=True)
    for result in results:
        print(
            f"{result['line']}: parts {result['parts']} rejected {result['rejected']} fail-safe {result['failsafe']} "
            f"escapes {result['escapes']} answered {result['answered']} missing {result['missing_answers']}",
            file=sys.stderr,
        )
    ok = total["drained"] and (args.parts is None or total["every_part_answered"])
    return 0 if ok else 1
