"""`inspector demo`: the whole product on one machine, with nothing to configure.

It starts the synthetic PCB line (parts with known defects), the shipped model, an MQTT broker (embedded, or the
one `--mqtt` names), the PLC simulator at the reject gate, and the dashboard; prints the dashboard URL and a live
one-line summary; stops cleanly on Ctrl-C, or after `--parts N` with a final JSON line:
`{"parts": ..., "rejected": ..., "failsafe": ..., "escapes": ..., "false_rejects": ...}`.
Escapes (defective parts passed) and false rejects (good parts rejected) are counted against the synthetic ground
truth, at the PLC's gate. `--product NAME` runs a recipe package (`recipes/NAME/`) on its synthetic line;
`--changeover N` switches products every N parts, the PLC sending `cmd/recipe` (`inspector.sim.changeover`), and
the JSON line adds `changeover`: switch times and verdicts whose recipe is not the product carried.

By default (issue 15) the line is one product (board `--seed`) placed with jitter (shift, small rotation, light
drift): the demo writes the product's golden reference into the work folder and registers each part to it before the
golden-reference model (`models/deeppcb-ref-v8n-480-int8.onnx`, metadata `inspector.input: reference-diff`) sees the
part and its reference together. `--reference-free` runs the reference-free model on boards that all differ (the
model for parts without a fixed appearance); `--model FILE` runs another model, with `--reference` when it is a
reference model. `--lines N` runs the reference-free model on every line.

Its work folder (store, images) and the embedded broker's are temporary and marked with the demo's pid: a demo
killed with `kill -9` leaves them (and, thanks to the parent-death signal, no broker), and the next demo removes
them. A broker URL with a password is shown redacted in the banner.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import yaml

from inspector.config import DEFAULT_MODEL, REFERENCE_MODEL, LineConfig, SyntheticConfig
from inspector.redact import install_log_redaction, redact_text, redact_url
from inspector.resources import find_calibration
from inspector.tempdirs import owned_tempdir, remove_stale
from inspector.truth import GroundTruth, Judgement, judge
from inspector.types import Thresholds, Verdict

if TYPE_CHECKING:
    from inspector.service import EdgeService
    from inspector.sim.changeover import DemoDay
    from inspector.sim.plc import PlcSimulator

__all__ = ["DEMO_PREFIX", "TruthTally", "demo_config", "main", "remove_stale_folders"]

log = logging.getLogger("inspector.demo")

DEMO_PREFIX = "inspector-demo-"  # the demo's work folder (store, images) in the temp folder, marked with its pid


def remove_stale_folders() -> list[Path]:
    """Remove the work folders (and embedded brokers' folders) of demos that were killed before they could."""
    return [p for prefix in (DEMO_PREFIX, "inspector-mosquitto-", "inspector-amqtt-") for p in remove_stale(prefix)]


class TruthTally:
    """A sink that scores the inspector's own verdicts against the synthetic truth (what the PLC should do).

    failsafe_good: good parts rejected because they were not inspected in time (a machine too busy for the part
    rate), counted in `false_rejects` too; `false_rejects - failsafe_good` is what the model got wrong.
    """

    name = "truth"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.parts = self.defective = self.escapes = self.false_rejects = self.failsafe_good = 0

    def handle(self, verdict: Verdict) -> None:
        truth = GroundTruth.of(verdict.truth)
        if truth is None:
            return
        judgement = judge(verdict.rejected, truth)
        with self._lock:
            self.parts += 1
            self.defective += truth.defective
            self.escapes += judgement is Judgement.ESCAPE
            self.false_rejects += judgement is Judgement.FALSE_REJECT
            self.failsafe_good += (not truth.defective) and verdict.failsafe

    def close(self) -> None:
        pass

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {
                "parts": self.parts,
                "defective": self.defective,
                "escapes": self.escapes,
                "false_rejects": self.false_rejects,
                "failsafe_good": self.failsafe_good,
            }


def demo_thresholds(model: Path) -> Thresholds:
    """The thresholds shipped for the model on the demo's line: `calibration/<model stem>-synthetic.yaml` (fitted on
    synthetic parts of another seed, as an integrator calibrates on the line's own parts), else those fitted on the
    model's training data (`calibration/<model stem>.yaml`), else the defaults."""
    for name in (f"{model.stem}-synthetic.yaml", f"{model.stem}.yaml"):
        path = find_calibration(name)
        if path is not None:
            return Thresholds.model_validate(yaml.safe_load(path.read_text()))
    return Thresholds()


def demo_config(
    rate: float,
    port: int,
    mqtt_url: str | None,
    workdir: Path,
    seed: int,
    defect_rate: float,
    model: Path,
    reference: bool = False,
) -> LineConfig:
    """The demo line: synthetic camera at `rate` parts/s, the reference model, broker, store and dashboard.

    reference: one product (board `seed`) with jitter, and its golden reference written to `workdir/reference.png`
    as the recipe's `reference.image` (the model must be a reference model)."""
    synthetic: dict[str, Any] = {"seed": seed, "defect_rate": defect_rate}
    extra: dict[str, Any] = {}
    if reference:
        import cv2

        from inspector.sim import SyntheticLine

        synthetic.update(board_seed=seed, jitter=True)
        image = workdir / "reference.png"
        size = SyntheticConfig().size
        if not cv2.imwrite(str(image), SyntheticLine(board_seed=seed, size=size).reference()):
            raise OSError(f"cannot write {image}")
        extra["reference"] = {"image": str(image), "motion": "rigid"}
    thresholds = demo_thresholds(model)
    rules = [thresholds.default, *thresholds.classes.values()]
    # The detector's score floor must not hide what a calibrated threshold below the default would keep.
    floor = min(0.25, *(r.min_confidence for r in rules))
    return LineConfig.model_validate(
        {
            "camera": {"source": "synthetic", "fps": rate, "synthetic": synthetic},
            "model": {"path": str(model), "conf": floor},
            "thresholds": thresholds.model_dump(),
            "pipeline": {"mode": "latency", "gate_ms": 2000},
            "mqtt": {"url": mqtt_url, "line": "demo"},
            "dashboard": {"port": port},
            "store": {
                "path": str(workdir / "inspector.db"),
                "images_dir": str(workdir / "images"),
                "pass_sample_rate": 0.05,
            },
            **extra,
        }
    )


def _summary_line(stats: dict[str, Any], tally: dict[str, int]) -> str:
    ledger, lat = stats["ledger"], stats["latency_ms"]
    return (
        f"parts {ledger['decided']:>6}  rejected {ledger['rejected']:>5}  fail-safe {ledger['failsafe']:>3}  "
        f"escapes {tally['escapes']:>3}  false rejects {tally['false_rejects']:>3}  "
        f"latency p50 {lat['p50']:5.1f} ms p99 {lat['p99']:5.1f} ms  {stats['rates']['parts_per_s']:4.1f} parts/s"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="inspector demo", description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, help="stop after this many parts and print a JSON summary")
    parser.add_argument("--rate", type=float, default=10.0, help="parts per second on the conveyor (10)")
    parser.add_argument("--mqtt", metavar="URL", help="use this broker (mqtt://host:port) instead of the embedded one")
    parser.add_argument("--port", type=int, default=8080, help="dashboard port on 127.0.0.1 (8080; 0: any free)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic line seed (0)")
    parser.add_argument("--defect-rate", type=float, default=0.3, help="share of defective parts (0.3)")
    parser.add_argument(
        "--model",
        type=Path,
        help=f"ONNX model (default: {REFERENCE_MODEL.name} with the product's golden reference; {DEFAULT_MODEL.name} "
        "with --reference-free, --lines, --product or --changeover)",
    )
    parser.add_argument("--product", help="recipe package to start with (recipes/NAME/; default: the --model line)")
    parser.add_argument("--changeover", type=int, metavar="N", help="switch products every N parts (a mixed day)")
    parser.add_argument("--products", help="comma-separated products for --changeover (default: every package)")
    golden = parser.add_mutually_exclusive_group()
    golden.add_argument(
        "--reference",
        action="store_true",
        help="one product with jitter, registered to its golden reference (the default without --model; with "
        "--model FILE, FILE must be a reference model)",
    )
    golden.add_argument(
        "--reference-free",
        action="store_true",
        help="every part its own board, inspected by the reference-free model (or --model)",
    )
    parser.add_argument(
        "--opcua-port", type=int, metavar="P", help="serve OPC UA on opc.tcp://127.0.0.1:P (docs/plant.md)"
    )
    parser.add_argument("--sparkplug", action="store_true", help="also run the Sparkplug B edge node (docs/plant.md)")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument(
        "--lines",
        type=int,
        default=1,
        help="simulated lines on one broker, sharing --rate, with the fleet view on --port (1)",
    )
    args = parser.parse_args(argv)
    if args.parts is not None and args.parts < 1:
        parser.error("--parts must be at least 1")
    if args.rate <= 0:
        parser.error("--rate must be positive")
    if args.changeover is not None and args.changeover < 1:
        parser.error("--changeover must be at least 1")
    if args.lines < 1:
        parser.error("--lines must be at least 1")
    several = args.lines > 1 or args.product is not None or args.changeover is not None
    if args.reference and several:
        parser.error("--reference runs one line of one product (no --lines, --product or --changeover)")
    # The golden-reference demo unless asked otherwise (recipe packages bring their own models and references).
    args.reference = args.reference or (args.model is None and not args.reference_free and not several)
    if args.model is None:
        args.model = REFERENCE_MODEL if args.reference else DEFAULT_MODEL
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_log_redaction()

    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    # Handlers first: a Ctrl-C while the model loads still ends the demo through the same clean stop.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        remove_stale_folders()
        with owned_tempdir(DEMO_PREFIX) as workdir:
            if args.lines > 1:
                from inspector.demo_fleet import run_plant  # the plant: N lines and the fleet view

                return run_plant(args, workdir, stop)
            return _run(args, workdir, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _demo_day(args: argparse.Namespace) -> DemoDay | None:
    """The products of `--product` / `--changeover` (None: the classic one-model demo)."""
    if args.product is None and args.changeover is None:
        return None
    from inspector.sim.changeover import DemoDay, plan_products

    products = [p.strip() for p in args.products.split(",") if p.strip()] if args.products else None
    return DemoDay(plan_products(args.product or "pcb", args.changeover, products))


def _run(args: argparse.Namespace, workdir: Path, stop: threading.Event) -> int:
    """The demo proper (signal handlers and the work folder are the caller's); `stop` is set by Ctrl-C."""
    from inspector.service import EdgeService
    from inspector.sim import SyntheticSource
    from inspector.sim.plc import PlcSimulator
    from inspector.sources import Paced

    config = demo_config(
        args.rate, args.port, args.mqtt, workdir, args.seed, args.defect_rate, args.model, reference=args.reference
    )
    opcua_password = None
    if args.opcua_port is not None:
        from inspector.opcua.security import demo_settings

        opcua, opcua_password = demo_settings(args.opcua_port, workdir / "opcua")
        config = config.model_copy(update={"opcua": opcua})
    if args.sparkplug:  # the embedded broker carries the Sparkplug namespace too
        config = config.model_copy(update={"sparkplug": config.sparkplug.model_copy(update={"enabled": True})})
    source = Paced(SyntheticSource(config.camera.synthetic, limit=args.parts), args.rate, read_first=True)
    tally = TruthTally()
    try:
        day = _demo_day(args)
    except ValueError as exc:
        print(f"inspector demo: {exc}", file=sys.stderr)
        return 2
    if day is not None:  # recipe packages on their synthetic lines, with changeovers
        config = day.config(config)
        source = day.source(config, args.rate, args.parts)
    service = EdgeService(config, extra_sinks=[tally] if day is None else [tally, day.check], source=source)
    gate_ms = config.pipeline.gate_ms or 2000.0
    plcs: list[PlcSimulator] = []

    def start_plc(svc: EdgeService) -> None:
        # The PLC must listen before the first part is made: in free-run it learns the parts from the answers.
        plc = PlcSimulator(
            args.mqtt or svc.broker.url,
            line=config.mqtt.line,
            camera=config.camera.id,
            prefix=config.mqtt.prefix,
            rate=args.rate,
            gate_ms=gate_ms,
            parts=args.parts,
        )
        plc.start()
        plcs.append(plc)
        if day is not None:
            day.start(args.mqtt or svc.broker.url, config)

    try:
        service.start(before_line=start_plc)
    except Exception as exc:
        for plc in plcs:  # started just before the line, which then failed
            plc.stop()
        if day is not None:
            day.stop()
        print(f"inspector demo: cannot start: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    assert service.pipeline is not None and service.plc is not None
    plc = plcs[0]
    pipeline = service.pipeline
    broker = f" (embedded {service.broker.kind})" if service.broker is not None else ""
    print(f"inspector demo: dashboard {service.dashboard_url}", file=sys.stderr)
    if service.first_password:
        print(f"inspector demo: log in as 'admin' with password {service.first_password}", file=sys.stderr)
    if service.opcua is not None:
        print(
            f"inspector demo: OPC UA {service.opcua.endpoint}, user 'operator' password {opcua_password}",
            file=sys.stderr,
        )
    model = pipeline.model
    print(
        f"inspector demo: {source.description}; model {model['file']} ({model['precision']}, "
        f"{model['provider']}, self-test {model['selftest']['status']}); "
        f"MQTT {service.plc.info().get('protocol') or '?'} on {redact_url(plc.url)}{broker}; Ctrl-C stops",
        file=sys.stderr,
        flush=True,
    )
    if service.sparkplug is not None:
        spb = service.sparkplug.info()
        node = f"spBv1.0/{spb['group_id']}/+/{spb['edge_node_id']}"
        print(f"inspector demo: Sparkplug B edge node {node} (device {config.camera.id})", file=sys.stderr)
    live = sys.stderr.isatty()
    try:
        next_print = time.monotonic()
        while not stop.wait(0.25):
            if time.monotonic() >= next_print:
                next_print += 1.0
                line = _summary_line(pipeline.stats(), tally.snapshot())
                print(f"\r{line}" if live else line, end="" if live else "\n", file=sys.stderr, flush=True)
            if service.done:
                break
        if service.done and args.parts is not None:
            # Every part is decided and answered; the PLC still gates the last ones (the broker is up meanwhile).
            plc.wait(timeout_s=gate_ms / 1000 + 5)
        drained = service.stop(drain=True)
        report = plc.stop()
    finally:
        service.stop(drain=False)  # a no-op after a clean stop; otherwise nothing is left running
        plc.stop()
        if day is not None:
            day.stop()
    final = _summary_line(pipeline.stats(), tally.snapshot())
    print(("\n" if live else "") + final, file=sys.stderr)
    print(report.summary(), file=sys.stderr, flush=True)
    ledger = pipeline.stats()["ledger"]
    result = {
        "parts": ledger["decided"],
        "rejected": ledger["rejected"],
        "failsafe": ledger["failsafe"],
        "escapes": report.escapes,
        "false_rejects": report.false_rejects,
        "defective": report.defective,
        "inspector": tally.snapshot(),
        "plc": {k: v for k, v in report.to_dict().items() if not k.endswith("_ids")},
        "drained": drained,
        "interrupted": stop.is_set(),
    }
    if day is not None:
        result.update(product=day.plan.products[0], changeover=day.summary())
    if args.parts is not None:
        print(json.dumps(result), flush=True)
    return 0 if drained else 1
