"""`inspector demo --lines N`: a plant on one machine. N synthetic lines (their own seeds and part rates), one
broker (embedded, or `--mqtt`), a PLC simulator at each line's gate, each line's dashboard, and the fleet view
over them all (`inspector fleet`).

With `--parts P` every line makes P parts, and the demo ends with one JSON line per line and a last one with the
total: `{"line": "line1", "parts": ..., "rejected": ..., "failsafe": ..., "escapes": ..., "false_rejects": ...,
"answered": ..., "missing_answers": ..., "late_answers": ..., ...}`; `answered` counts the parts whose answer
reached the PLC before the part reached its gate. The exit code is 0 when every line drained and every part on
every line was answered at its gate.

Each line is a process of its own, as on a real plant (`python -m inspector.demo_fleet CONFIG PARTS`, speaking
one JSON line per step on stdout): N pipelines in one interpreter would share one GIL. The lines load their
models together and start making parts together, on a `go` from the demo, so that no line inspects while the
others are still loading. `line_config` is also the line of the fleet tests and of `bench/fleet.py`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import yaml

from inspector.config import LineConfig
from inspector.demo import TruthTally, demo_config

if TYPE_CHECKING:
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
class _Child:
    """One line's process, its PLC simulator, and what it said (`loaded`, then `done`)."""

    line: PlantLine
    proc: subprocess.Popen[str]
    plc: PlcSimulator
    gate_ms: float
    said: dict[str, dict[str, Any]] = field(default_factory=dict)

    def read(self, until: str, timeout_s: float) -> dict[str, Any]:
        """Read the child's JSON lines until `{"event": until}`; raises when it ends or `timeout_s` passes."""
        assert self.proc.stdout is not None
        got: list[dict[str, Any]] = []

        def reader() -> None:
            assert self.proc.stdout is not None
            for text in self.proc.stdout:
                try:
                    message = json.loads(text)
                except ValueError:
                    continue
                self.said[message.get("event", "")] = message
                if message.get("event") == until:
                    got.append(message)
                    return

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        thread.join(timeout_s)
        if not got:
            raise RuntimeError(f"{self.line.name}: no {until!r} from its process (exit code {self.proc.poll()})")
        return got[0]


def _spawn(line: PlantLine, url: str, workdir: Path, args: argparse.Namespace, threads: int) -> _Child:
    from inspector.plc.broker import spawn_child
    from inspector.sim.plc import PlcSimulator

    config = line_config(line, url, workdir / line.name, args.model, defect_rate=args.defect_rate, threads=threads)
    path = workdir / f"{line.name}.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True)))
    gate_ms = config.pipeline.gate_ms or 2000.0
    # The PLC listens before the line makes its first part: in free-run it learns the parts from the answers.
    plc = PlcSimulator(
        url, line=line.name, camera=config.camera.id, prefix=config.mqtt.prefix, rate=line.rate, gate_ms=gate_ms,
        parts=args.parts,
    )  # fmt: skip
    plc.start()
    command = [sys.executable, "-m", "inspector.demo_fleet", str(path), str(args.parts or 0), args.log_level]
    # A line dies with the demo, even a demo killed with kill -9 (`spawn_child`: PR_SET_PDEATHSIG on Linux).
    proc = cast("subprocess.Popen[str]", spawn_child(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    return _Child(line, proc, plc, gate_ms)


def _result(child: _Child, report: Any) -> dict[str, Any]:
    done = child.said.get("done", {})
    ledger = done.get("ledger", {})
    return {
        "line": child.line.name,
        "seed": child.line.seed,
        "rate": child.line.rate,
        "parts": ledger.get("decided", 0),
        "rejected": ledger.get("rejected", 0),
        "failsafe": ledger.get("failsafe", 0),
        "escapes": report.escapes,
        "false_rejects": report.false_rejects,
        "defective": report.defective,
        "answered": report.parts - report.missing_answers,
        "missing_answers": report.missing_answers,
        "late_answers": report.late_answers,
        "plc": {k: v for k, v in report.to_dict().items() if not k.endswith("_ids")},
        "inspector": done.get("tally", {}),
        "drained": bool(done.get("drained")),
    }


def _total(results: list[dict[str, Any]], parts: int | None, interrupted: bool) -> dict[str, Any]:
    keys = ("parts", "rejected", "failsafe", "escapes", "false_rejects", "defective", "answered", "missing_answers")
    total: dict[str, Any] = {"line": "total", "lines": len(results)}
    total.update({k: sum(r[k] for r in results) for k in (*keys, "late_answers")})
    total["every_part_answered"] = all(
        r["missing_answers"] == 0 and r["answered"] == r["parts"] and (parts is None or r["parts"] == parts)
        for r in results
    )
    total["drained"] = all(r["drained"] for r in results)
    total["interrupted"] = interrupted
    return total


def run_plant(args: argparse.Namespace, workdir: Path, stop: threading.Event) -> int:
    """The plant demo proper (`inspector demo --lines N`; signal handlers and `workdir` are the caller's)."""
    from inspector.fleet.server import FleetServer
    from inspector.plc.broker import EmbeddedBroker

    broker = None
    url = args.mqtt
    lines = plant_lines(args.lines, args.rate, args.seed)
    # Several lines on a few cores: one inference thread each, rather than every line's session on every core.
    threads = 1 if args.lines >= (os.cpu_count() or 1) else 0
    children: list[_Child] = []
    fleet: FleetServer | None = None
    results: list[dict[str, Any]] = []
    try:
        try:
            if url is None:
                broker = EmbeddedBroker()
                url = broker.start()
            fleet = FleetServer(url, port=args.port)
            fleet_url = fleet.start()
            children += [_spawn(line, url, workdir, args, threads) for line in lines]
            loaded = [child.read("loaded", 600) for child in children]
        except Exception as exc:
            print(f"inspector demo: cannot start the plant: {exc}", file=sys.stderr)
            return 2
        for child in children:  # every model is loaded: all lines start making parts now
            assert child.proc.stdin is not None
            child.proc.stdin.write("go\n")
            child.proc.stdin.flush()
        kind = f"embedded {broker.kind} " if broker is not None else ""
        print(f"inspector demo: {len(lines)} lines on the {kind}broker {url}", file=sys.stderr)
        print(f"inspector demo: fleet view {fleet_url}", file=sys.stderr)
        for child, said in zip(children, loaded, strict=True):
            login = f" (admin password {said['password']})" if said.get("password") else ""
            print(
                f"inspector demo: {child.line.name} ({child.line.rate:g} parts/s, seed {child.line.seed}) dashboard "
                f"{said.get('dashboard')}{login}",
                file=sys.stderr,
            )
        print("inspector demo: Ctrl-C stops", file=sys.stderr, flush=True)
        next_print = time.monotonic()
        while not stop.wait(0.25):
            if all(child.proc.poll() is not None for child in children):
                break
            if time.monotonic() >= next_print:
                next_print += 2.0
                rows = {row["line"]: row for row in fleet.fleet.snapshot()["lines"]}
                parts = "  ".join(f"{c.line.name} {rows.get(c.line.name, {}).get('decided', 0):>5}" for c in children)
                print(f"parts: {parts}", file=sys.stderr, flush=True)
        for child in children:
            if stop.is_set() and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)  # drains, then says `done`
        for child in children:
            try:
                child.read("done", 120)
            except RuntimeError as exc:
                print(f"inspector demo: {exc}", file=sys.stderr)
            child.proc.wait(30)
            if args.parts is not None and not stop.is_set():
                child.plc.wait(timeout_s=child.gate_ms / 1000 + 5)  # the PLC gates the last parts
            results.append(_result(child, child.plc.stop()))
    finally:
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait(10)
            child.plc.stop()
        if fleet is not None:
            fleet.stop()
        if broker is not None:
            broker.stop()
    total = _total(results, args.parts, stop.is_set())
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


# -- one line's process ---------------------------------------------------------------------------------------


def _say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _line_main(argv: list[str]) -> int:
    """`python -m inspector.demo_fleet CONFIG PARTS LOG_LEVEL`: one line of the plant demo. Says `loaded` (dashboard,
    password) once its model is loaded, waits for `go` on stdin, runs until PARTS parts (0: until SIGTERM / SIGINT),
    drains, and says `done` (ledger, truth tally, drained)."""
    from inspector.service import EdgeService
    from inspector.sim import SyntheticSource
    from inspector.sources import Paced

    path, parts, level = Path(argv[0]), int(argv[1]) or None, argv[2]
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {path.stem}: %(message)s")
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    config = LineConfig.model_validate(yaml.safe_load(path.read_text()))
    rate = config.camera.fps or 10.0
    source = Paced(SyntheticSource(config.camera.synthetic, limit=parts), rate, read_first=True)
    tally = TruthTally()
    service = EdgeService(config, extra_sinks=[tally], source=source)

    def loaded(svc: EdgeService) -> None:
        _say("loaded", dashboard=svc.dashboard_url, password=svc.first_password)
        sys.stdin.readline()  # `go` (or end of input: the demo is gone, so is the point of waiting)

    try:
        service.start(before_line=loaded)
    except Exception as exc:
        print(f"inspector demo: {path.stem} cannot start: {exc}", file=sys.stderr)
        return 2
    while not stop.wait(0.25) and not service.done:
        pass
    drained = service.stop(drain=True)
    assert service.pipeline is not None
    _say("done", ledger=service.pipeline.stats()["ledger"], tally=tally.snapshot(), drained=drained)
    return 0 if drained else 1


if __name__ == "__main__":
    sys.exit(_line_main(sys.argv[1:]))
