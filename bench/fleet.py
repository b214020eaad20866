"""Several lines on one Mosquitto at a fixed total part rate: does the broker (or the box) become the limit?

    YOLO_OFFLINE=1 .venv/bin/python bench/fleet.py [--lines 1 2 4] [--total-rate 8] [--seconds 30]
        [--model models/deeppcb-v8n-320-int8.onnx] [--json-out FILE]

For each line count N, from scratch: a Mosquitto on a free loopback port; N `inspector run` processes (the demo's
synthetic line at `total-rate / N` parts/s each, the model, store, dashboard, PLC link, `--verdicts` JSONL kept
locally); one `PlcSimulator` per line at its gate (2 s after the camera); and an independent subscriber to every
line's `verdict`. Once every line says `ready`, after a warm-up, it measures for `--seconds`:

- per line: verdicts a second received over MQTT; p50 / p99 of the verdict's `latency_ms` (capture to decision);
  p99 delivery (the verdict's `ts` to its arrival at the subscriber, same clock); fail-safe parts; the line
  process's CPU (% of one core) and RSS;
- the broker's CPU (% of one core, from /proc) and RSS; the bench driver's RSS (subscriber + PLC simulators);
- then stops the lines (SIGTERM: they drain), and counts **lost verdicts**: part ids in a line's local JSONL that
  never arrived on its `verdict` topic (must be 0), and the PLC simulators' missing answers at the gate.

It prints one JSON object per N and a table; `--json-out` writes the list. The machine's load average is recorded
before and after each N: a loaded machine shows in the latency and fail-safe figures, not in the lost count.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from inspector.demo_fleet import PlantLine, line_config  # noqa: E402
from inspector.plc import EmbeddedBroker, parse_mqtt_url  # noqa: E402
from inspector.sim.plc import PlcSimulator  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class VerdictTap:
    """Subscribes to every line's `verdict` and `heartbeat`: ids, latencies and delivery times per line."""

    def __init__(self, url: str) -> None:
        self.lock = threading.Lock()
        self.ids: dict[str, set[int]] = {}
        self.samples: dict[str, list[tuple[float, float, float]]] = {}  # (arrival mono, latency_ms, delivery_ms)
        self.ready: dict[str, bool] = {}
        addr = parse_mqtt_url(url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"bench-tap-{os.getpid()}", protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, *_: c.subscribe(
            [("inspector/+/+/verdict", 1), ("inspector/+/+/heartbeat", 0)]
        )
        self.client.on_message = self._on_message
        self.client.connect(addr.host, addr.port, 10)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now_wall, now = time.time(), time.monotonic()
        line = msg.topic.split("/")[1]
        body = json.loads(msg.payload)
        with self.lock:
            if msg.topic.endswith("/heartbeat"):
                self.ready[line] = bool(body.get("ready"))
                return
            self.ids.setdefault(line, set()).add(int(body["part_id"]))
            delivery = (now_wall - float(body["ts"])) * 1000
            self.samples.setdefault(line, []).append((now, float(body["latency_ms"]), delivery))

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def p(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def run_one(n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    broker = EmbeddedBroker(kind="mosquitto", workdir=workdir / "broker")
    url = broker.start()
    assert broker.pid is not None
    lines = [PlantLine(f"line{i + 1}", i + 1, round(args.total_rate / n, 3)) for i in range(n)]
    tap = VerdictTap(url)
    plcs = [PlcSimulator(url, line=line.name, camera="cam0", rate=line.rate, gate_ms=2000.0) for line in lines]
    for plc in plcs:
        plc.start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    load_before = os.getloadavg()
    try:
        for line in lines:
            config = line_config(line, url, workdir / line.name, args.model)
            path = workdir / f"{line.name}.yaml"
            path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_unset=True)))
            verdicts = workdir / line.name / "verdicts.jsonl"
            procs[line.name] = subprocess.Popen(
                [sys.executable, "-m", "inspector", "run", "--config", str(path), "--verdicts", str(verdicts),
                 "--log-level", "WARNING", "--stats-every", "0"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(workdir / f"{line.name}.log", "wb"),  # noqa: SIM115
            )  # fmt: skip
        deadline = time.monotonic() + 300
        while not all(tap.ready.get(line.name) for line in lines):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs.values()):
                raise RuntimeError(f"lines not ready: {tap.ready}; see {workdir}/*.log")
            time.sleep(0.2)
        time.sleep(args.warmup)
        pids = {name: proc.pid for name, proc in procs.items()}
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        broker_cpu0, t0 = cpu_seconds(broker.pid), time.monotonic()
        time.sleep(args.seconds)
        t1 = time.monotonic()
        span = t1 - t0
        cpu = {name: round((cpu_seconds(pid) - cpu0[name]) / span * 100, 1) for name, pid in pids.items()}
        broker_cpu = round((cpu_seconds(broker.pid) - broker_cpu0) / span * 100, 1)
        rss = {name: rss_mb(pid) for name, pid in pids.items()}
        broker_rss, driver_rss = rss_mb(broker.pid), rss_mb(os.getpid())
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            proc.wait(60)
        time.sleep(3.0)  # the last answers through the gates
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        reports = [plc.stop() for plc in plcs]
        tap.stop()
        broker.stop()
    load_after = os.getloadavg()
    per_line = []
    for line, report in zip(lines, reports, strict=True):
        local = [json.loads(x) for x in (workdir / line.name / "verdicts.jsonl").read_text().splitlines() if x.strip()]
        local_ids = {int(v["part_id"]) for v in local}
        window = [s for s in tap.samples.get(line.name, []) if t0 <= s[0] < t1]
        per_line.append(
            {
                "line": line.name,
                "target_rate": line.rate,
                "rate": round(len(window) / span, 2),
                "latency_p50_ms": p([s[1] for s in window], 50),
                "latency_p99_ms": p([s[1] for s in window], 99),
                "delivery_p99_ms": p([s[2] for s in window], 99),
                "parts": len(local_ids),
                "failsafe": sum(1 for v in local if "uninspected" in v.get("reasons", [])),
                "lost_verdicts": len(local_ids - tap.ids.get(line.name, set())),
                "missing_answers": report.missing_answers,
                "cpu_pct": cpu[line.name],
                "rss_mb": rss[line.name],
            }
        )
    return {
        "lines": n,
        "total_rate": args.total_rate,
        "seconds": round(span, 1),
        "per_line": per_line,
        "rate": round(sum(x["rate"] for x in per_line), 2),
        "lost_verdicts": sum(x["lost_verdicts"] for x in per_line),
        "broker_cpu_pct": broker_cpu,
        "broker_rss_mb": broker_rss,
        "driver_rss_mb": driver_rss,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }


def run_broker_only(n: int, total_rate: float, seconds: float, workdir: Path) -> dict[str, Any]:
    """The broker's share alone: N `PlcLink`s in this process publish what N lines would (a reject and a verdict
    per part, QoS 1, heartbeats) at `total_rate` parts/s together, no model; a PLC simulator per line takes the
    rejects, the tap every verdict. Returns the rate reached, broker CPU, delivery p99 and lost verdicts."""
    from inspector.plc import PlcLink
    from tests.mqtt_helpers import make_verdict, mqtt_config

    broker = EmbeddedBroker(kind="mosquitto", workdir=workdir / "broker")
    url = broker.start()
    assert broker.pid is not None
    names = [f"line{i + 1}" for i in range(n)]
    tap = VerdictTap(url)
    plcs = [PlcSimulator(url, line=name, camera="cam0", rate=total_rate / n, gate_ms=2000.0) for name in names]
    links = [PlcLink(mqtt_config(url, line=name), "cam0") for name in names]
    for thing in (*plcs, *links):
        thing.start()
    sent: dict[str, int] = dict.fromkeys(names, 0)
    stop = threading.Event()

    def produce(name: str, link: Any) -> None:
        period, k = n / total_rate, 0
        start = time.monotonic()
        while not stop.is_set():
            link.handle(make_verdict(k, gate_s=2.0, truth=False))
            sent[name] = k = k + 1
            if (delay := start + k * period - time.monotonic()) > 0:
                time.sleep(delay)

    try:
        for link in links:
            assert link.wait_connected(20)
        threads = [
            threading.Thread(target=produce, args=(nm, lk), daemon=True) for nm, lk in zip(names, links, strict=True)
        ]
        for thread in threads:
            thread.start()
        time.sleep(2.0)
        cpu0, sent0, t0 = cpu_seconds(broker.pid), sum(sent.values()), time.monotonic()
        time.sleep(seconds)
        t1 = time.monotonic()
        broker_cpu = round((cpu_seconds(broker.pid) - cpu0) / (t1 - t0) * 100, 1)
        rate = round((sum(sent.values()) - sent0) / (t1 - t0), 1)
        broker_rss = rss_mb(broker.pid)
        stop.set()
        for thread in threads:
            thread.join()
        for link in links:
            link.flush(30)
        time.sleep(3.0)
    finally:
        stop.set()
        for link in links:
            link.stop()
        reports = [plc.stop() for plc in plcs]
        tap.stop()
        broker.stop()
    window = [s for per in tap.samples.values() for s in per if t0 <= s[0] < t1]
    return {
        "mode": "broker-only",
        "lines": n,
        "target_rate": total_rate,
        "rate": rate,
        "messages_per_s": round(rate * 2 + n, 1),  # reject + verdict per part, a heartbeat per line a second
        "broker_cpu_pct": broker_cpu,
        "broker_rss_mb": broker_rss,
        "delivery_p99_ms": p([s[2] for s in window], 99),
        "lost_verdicts": sum(sent[nm] - len(tap.ids.get(nm, set())) for nm in names),
        "missing_answers": sum(r.missing_answers for r in reports),
        "load": [round(x, 2) for x in os.getloadavg()],
    }


def table(results: list[dict[str, Any]]) -> str:
    head = (
        "| lines | line | rate (target) | p50 ms | p99 ms | delivery p99 ms | fail-safe | lost | missing | CPU % "
        "| RSS MB |"
    )
    rows = [head, "| " + " | ".join(["---"] * 11) + " |"]
    for r in results:
        for x in r["per_line"]:
            rows.append(
                f"| {r['lines']} | {x['line']} | {x['rate']} ({x['target_rate']}) | {x['latency_p50_ms']} | "
                f"{x['latency_p99_ms']} | {x['delivery_p99_ms']} | {x['failsafe']} / {x['parts']} | "
                f"{x['lost_verdicts']} | {x['missing_answers']} | {x['cpu_pct']} | {x['rss_mb']} |"
            )
    rows += ["", "| lines | total rate | broker CPU % | broker RSS MB | driver RSS MB | lost | load before / after |"]
    rows.append("| " + " | ".join(["---"] * 7) + " |")
    for r in results:
        rows.append(
            f"| {r['lines']} | {r['rate']} | {r['broker_cpu_pct']} | {r['broker_rss_mb']} | {r['driver_rss_mb']} | "
            f"{r['lost_verdicts']} | {r['load_before'][0]} / {r['load_after'][0]} |"
        )
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--total-rate", type=float, default=8.0, help="parts/s of all lines together (8)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measurement window per line count (30)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds after every line is ready (5)")
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "deeppcb-v8n-320-int8.onnx")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument(
        "--broker-only",
        type=float,
        nargs="+",
        metavar="RATE",
        help="instead: the broker's share alone at these total part rates (no model; N lines of PlcLinks)",
    )
    args = parser.parse_args()
    if args.broker_only:
        out = []
        for rate in args.broker_only:
            for n in args.lines:
                with tempfile.TemporaryDirectory(prefix=f"bench-broker-{n}-") as tmp:
                    out.append(run_broker_only(n, rate, args.seconds, Path(tmp)))
                print(json.dumps(out[-1]), flush=True)
        if args.json_out:
            args.json_out.write_text(json.dumps(out, indent=1))
        return 0 if all(r["lost_verdicts"] == 0 for r in out) else 1
    results = []
    for n in args.lines:
        with tempfile.TemporaryDirectory(prefix=f"bench-fleet-{n}-") as tmp:
            result = run_one(n, args, Path(tmp))
        print(json.dumps(result), flush=True)
        results.append(result)
    print(table(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))
    lost = sum(r["lost_verdicts"] for r in results)
    print(f"lost verdicts: {lost}; median broker CPU {statistics.median(r['broker_cpu_pct'] for r in results)} %")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
