"""A soak: `inspector demo` for a long run at a steady part rate, watched from outside as a plant would watch it.

    YOLO_OFFLINE=1 .venv/bin/python bench/soak.py --minutes 60 --rate 20 [--model models/...onnx]
        [--record bench/soak-results.md] [--json-out FILE]

It starts `inspector demo --parts minutes*60*rate --rate R --port 0` as a subprocess (its embedded Mosquitto, its
PLC simulator at the reject gate, its dashboard), reads the admin password and the broker's address from the
banner, and while the line runs:

- polls `GET /api/stats` every `--poll-s` seconds (the dashboard's own poll), keeping the queue depths: parts in
  flight (`ledger.in_flight`), frames waiting for the model (`queue.frames`), pending triggers, the store writer's
  queue and the MQTT link's unsent messages;
- changes a threshold every `--edit-every-s` seconds through the API as an editor would (logged in as admin:
  `GET /api/thresholds`, then `PUT` one class's `min_confidence` nudged by 0.01 up or down, with the version read);
- subscribes to the line's `verdict` topic (QoS 1) and files each verdict's `latency_ms` under its minute;
- samples the RSS of the demo process and of its children (the broker) at every poll; a minute shows their median.

When the demo has made its parts it ends by itself with its JSON summary, whose PLC simulator tally says whether
every part had its answer at the gate in time. The goals (issue 20):

- every part accounted for: the demo decided all `parts`, the PLC simulator gated all of them with 0 missing and 0
  late answers, each one's truth known; the verdict tap saw every id from its first one on, with no gap;
- RSS (demo + broker; each minute's median of its samples) growth under `--rss-growth-max` % (5) from minute
  `--rss-base-minute` (5, or 1 for runs shorter than 7 minutes) to the last; the demo's anonymous RSS (its heaps,
  without mapped files) and a least-squares trend in MB an hour are shown beside it;
- no queue growth: the summed queue depth (each minute's least over its polls, which are jittered) averaged over
  the last third of the minutes is less than 1 above that of the first third (minute 1, the warm-up, left out): one
  part or message held for good would add 1; and no store row or MQTT message dropped. Frames dropped from the
  full frame queue are shown, not failed: each is a part answered fail-safe (rejected), the designed overload
  behaviour, and counted among the parts;
- the threshold edits all installed (an edit that fails is not a goal miss, but is shown).

It prints a per-minute table and a verdict line, and exits 1 when a goal is missed (2 when the demo could not run).
`--record FILE` appends a markdown section (command, date, CPU, load average, the table, the goals) to FILE.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from inspector.plc import parse_mqtt_url  # noqa: E402

BANNER_TIMEOUT_S = 300.0  # model load and self-test on a loaded 2-core box
QUEUES = ("in_flight", "frames", "triggers", "store", "mqtt")
EDIT_CLASS = "open"  # the threshold the soak nudges (a DeepPCB class; the default rule when the model lacks it)


# -- the demo process -------------------------------------------------------------------------------------------


class Demo:
    """`inspector demo` as a subprocess; its stderr banner parsed, its output kept (the last lines only)."""

    def __init__(self, args: argparse.Namespace, parts: int) -> None:
        cmd = [sys.executable, "-m", "inspector", "demo", "--parts", str(parts), "--rate", str(args.rate)]
        cmd += ["--port", "0", "--seed", str(args.seed)]
        if args.model is not None:
            cmd += ["--model", str(args.model)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
        env.update(YOLO_OFFLINE="1", PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err: deque[str] = deque(maxlen=400)  # the live summary comes once a second: keep the tail
        self.banner: list[str] = []
        self.out: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stderr, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stdout, False), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, stream: Any, is_err: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            if not is_err:
                self.out.append(line)
            elif line.startswith("inspector demo:"):
                self.banner.append(line)
            else:
                self.err.append(line)

    def wait_banner(self, pattern: str, timeout_s: float = BANNER_TIMEOUT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.banner):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"no {pattern!r} from the demo:\n" + "\n".join([*self.banner, *list(self.err)[-20:]]))

    def rss_kb(self) -> tuple[int, int, int]:
        """(RSS of the demo, RSS of its children, the demo's anonymous RSS) in kB, from /proc."""
        kids = sum(_rss_kb(pid) for pid in _children(self.proc.pid))
        return _rss_kb(self.proc.pid), kids, _rss_kb(self.proc.pid, "RssAnon")

    def summary(self) -> dict[str, Any] | None:
        for t in self._threads:
            t.join(10)
        for line in reversed(self.out):
            if line.startswith("{"):
                return json.loads(line)
        return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _live_rss(demo: Demo, previous: tuple[int, int, int]) -> tuple[int, int, int]:
    """A new (demo, broker, demo anonymous) RSS sample while both run; the previous one once the demo has begun to
    stop."""
    sample = demo.rss_kb() if demo.proc.poll() is None else (0, 0, 0)
    return sample if sample[0] and sample[1] else previous


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    """`field` of /proc/PID/status in kB: VmRSS (all resident pages), RssAnon (the heaps; RssFile is mapped files:
    libraries' pages, the store's shared memory)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except OSError:  # gone meanwhile
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            found.append(int(stat.parent.name))
    return found


# -- the verdict tap --------------------------------------------------------------------------------------------


class VerdictTap:
    """Subscribes to the line's `verdict` topic: ids seen, and each verdict's latency filed under its minute."""

    def __init__(self, url: str, topic: str, t0: float) -> None:
        self.t0 = t0
        self.lock = threading.Lock()
        self.ids: set[int] = set()
        self.duplicates = 0
        self.failsafe = 0
        self.versions: set[int] = set()
        self.latency: dict[int, list[float]] = {}  # minute index (0-based) -> latency_ms
        self.seen_at_start = 0  # parts seen by the demo by the time the tap listened (set by the caller)
        addr = parse_mqtt_url(url)
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"soak-tap-{os.getpid()}", protocol=mqtt.MQTTv5
        )
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(addr.host, addr.port, 10)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        minute = int((time.monotonic() - self.t0) // 60)
        body = json.loads(msg.payload)
        part_id = int(body["part_id"])
        with self.lock:
            if part_id in self.ids:
                self.duplicates += 1
                return
            self.ids.add(part_id)
            self.failsafe += bool(body.get("failsafe"))
            self.versions.add(int(body.get("thresholds_version") or 0))
            self.latency.setdefault(minute, []).append(float(body["latency_ms"]))

    def gaps(self) -> int:
        """Ids missing between the first and the last id seen."""
        with self.lock:
            return (max(self.ids) - min(self.ids) + 1 - len(self.ids)) if self.ids else 0

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the dashboard user -----------------------------------------------------------------------------------------


class Editor:
    """The admin on the dashboard: polls the stats and nudges a threshold (logs in again when the session ends)."""

    def __init__(self, url: str, password: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.password = password
        self.edits_ok = self.edits_failed = self.conflicts = 0
        self.poll_ms: list[float] = []
        self.errors: list[str] = []
        self._up = True
        self._login()

    def _login(self) -> None:
        r = self.http.post("/api/login", json={"username": "admin", "password": self.password})
        r.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {r.json()['token']}"

    def stats(self) -> dict[str, Any] | None:
        t = time.monotonic()
        try:
            r = self.http.get("/api/stats")
            r.raise_for_status()
        except httpx.HTTPError as exc:
            self.errors.append(f"stats: {exc}")
            return None
        self.poll_ms.append((time.monotonic() - t) * 1000)
        return r.json()

    def nudge_threshold(self) -> None:
        """Move one class's min_confidence by 0.01, up and down in turn; a 409 (moved on meanwhile) is retried."""
        for _ in range(3):
            try:
                r = self.http.get("/api/thresholds")
                if r.status_code == 401:
                    self._login()
                    r = self.http.get("/api/thresholds")
                r.raise_for_status()
                rules = r.json()["thresholds"]
                version = rules.pop("version")
                rule = rules["classes"].get(EDIT_CLASS) or rules["default"]
                rule["min_confidence"] = round(rule["min_confidence"] + (0.01 if self._up else -0.01), 6)
                body = {"version": version, "thresholds": rules, "comment": f"soak edit {self.edits_ok + 1}"}
                r = self.http.put("/api/thresholds", json=body)
                if r.status_code == 401:
                    self._login()
                    r = self.http.put("/api/thresholds", json=body)
                if r.status_code == 409:
                    self.conflicts += 1
                    continue
                r.raise_for_status()
            except httpx.HTTPError as exc:
                self.errors.append(f"threshold edit: {exc}")
                break
            self.edits_ok += 1
            self._up = not self._up
            return
        self.edits_failed += 1

    def close(self) -> None:
        self.http.close()


def _queue_depths(stats: dict[str, Any]) -> dict[str, int]:
    queue = stats.get("queue") or {}
    return {
        "in_flight": int(stats["ledger"].get("in_flight", 0)),
        "frames": int(queue.get("frames", 0)),
        "triggers": int(queue.get("triggers_pending", 0)),
        "store": int((stats.get("store") or {}).get("queue", 0)),
        "mqtt": int((stats.get("mqtt") or {}).get("queued", 0)),
    }


def _drops(stats: dict[str, Any]) -> dict[str, int]:
    return {
        "frames_dropped": int(stats["ledger"].get("frames_dropped", 0)),
        "store_rows_dropped": int((stats.get("store") or {}).get("rows_dropped", 0)),
        "mqtt_overflow": int((stats.get("mqtt") or {}).get("overflow", 0)),
        "inspector_late": int(stats["ledger"].get("late", 0)),
    }


# -- the run ----------------------------------------------------------------------------------------------------


def soak(args: argparse.Namespace) -> dict[str, Any]:
    parts = round(args.minutes * 60 * args.rate)
    load_before = os.getloadavg()
    started = dt.datetime.now(dt.UTC)
    demo = Demo(args, parts)
    tap: VerdictTap | None = None
    editor: Editor | None = None
    minutes: list[dict[str, Any]] = []
    try:
        url = demo.wait_banner(r"dashboard (http://\S+?)/?$").group(1)
        password = demo.wait_banner(r"password (\S+)").group(1)
        broker = demo.wait_banner(r"on (mqtt://\S+) \(embedded").group(1)
        t0 = time.monotonic()
        tap = VerdictTap(broker, "inspector/demo/cam0/verdict", t0)
        editor = Editor(url, password)
        polls: list[dict[str, int]] = []
        last: dict[str, Any] | None = None
        rss = (0, 0, 0)  # the last live sample
        rss_samples: list[tuple[int, int, int]] = []  # this minute's (RSS moves by a few MB from poll to poll)
        seen_at_tap = None  # parts the demo had seen when the tap listened: every later verdict must reach the tap
        prev_decided = prev_failsafe = 0
        next_poll = next_edit = t0
        next_minute = t0 + 60
        deadline = t0 + args.minutes * 60 + max(300.0, args.minutes * 6)
        while True:
            now = time.monotonic()
            ended = demo.proc.poll() is not None
            # The demo stops its dashboard once it made its parts: the last polls and edits come before that, with a
            # margin of two poll periods of parts (the next poll may otherwise land in the demo's shutdown).
            seen = int(last["ledger"]["seen"]) if last else 0
            open_for_polls = seen < parts - 2 * args.rate * args.poll_s * 1.25
            if now >= next_poll:
                # Jittered: a period that is a multiple of the part period would see every part at the same phase.
                next_poll += args.poll_s * random.uniform(0.75, 1.25)
                if not ended and open_for_polls and (stats := editor.stats()) is not None:
                    last = stats
                    polls.append(_queue_depths(stats))
                    if seen_at_tap is None:
                        seen_at_tap = int(stats["ledger"]["seen"])
                rss = _live_rss(demo, rss)
                if rss[0] and not ended and open_for_polls:
                    rss_samples.append(rss)
            if now >= next_edit:
                next_edit += args.edit_every_s
                if not ended and seen < parts - 10 * args.rate:
                    editor.nudge_threshold()
            if now >= next_minute or (ended and polls):
                rss = _live_rss(demo, rss)
                med = [float(np.median([x[i] for x in rss_samples or [rss]])) for i in range(3)]
                span = min(60.0, now - (next_minute - 60))
                index = len(minutes)
                with tap.lock:
                    lat = list(tap.latency.get(index, []))
                decided = int(last["ledger"]["decided"]) if last else 0
                failsafe = int(last["ledger"]["failsafe"]) if last else 0
                row: dict[str, Any] = {
                    "minute": index + 1,
                    "seconds": round(span, 1),
                    "decided": decided - prev_decided,
                    "verdicts": len(lat),
                    "failsafe": failsafe - prev_failsafe,
                    "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat else None,
                    "p99_ms": round(float(np.percentile(lat, 99)), 1) if lat else None,
                    "max_ms": round(max(lat), 1) if lat else None,
                    "queue_mean": {q: round(float(np.mean([p[q] for p in polls])), 2) for q in QUEUES} if polls else {},
                    "queue_max": {q: max(p[q] for p in polls) for q in QUEUES} if polls else {},
                    "depth_median": float(np.median([sum(p.values()) for p in polls])) if polls else None,
                    "depth_min": min(sum(p.values()) for p in polls) if polls else None,
                    "rss_mb": round(med[0] / 1024, 1),
                    "broker_rss_mb": round(med[1] / 1024, 1),
                    "anon_rss_mb": round(med[2] / 1024, 1),
                    "thresholds_version": int(last["thresholds_version"]) if last else None,
                    "load1": round(os.getloadavg()[0], 2),
                    "partial": span < 55,
                }
                if not (ended and span < 5):  # a last sliver of a minute says nothing
                    minutes.append(row)
                    print(_row_line(row), flush=True)
                prev_decided, prev_failsafe, polls, rss_samples = decided, failsafe, [], []
                next_minute += 60
            if ended:
                break
            if now > deadline:
                demo.stop()
                raise RuntimeError(f"the demo did not finish its {parts} parts in time")
            time.sleep(max(0.0, min(next_poll, next_edit, next_minute) - time.monotonic()))
        time.sleep(1.0)  # the last verdicts through the tap
        summary = demo.summary()
        tap.seen_at_start = seen_at_tap or 0
        return _verdict(args, demo, parts, summary, minutes, tap, editor, last, started, load_before)
    finally:
        demo.stop()
        if tap is not None:
            tap.stop()
        if editor is not None:
            editor.close()


def _verdict(
    args: argparse.Namespace,
    demo: Demo,
    parts: int,
    summary: dict[str, Any] | None,
    minutes: list[dict[str, Any]],
    tap: VerdictTap,
    editor: Editor,
    last: dict[str, Any] | None,
    started: dt.datetime,
    load_before: tuple[float, float, float],
) -> dict[str, Any]:
    plc = (summary or {}).get("plc", {})
    full = [m for m in minutes if m["seconds"] >= 30]
    # RSS: the demo and its broker, from the end of the base minute to the last full minute.
    base_minute = args.rss_base_minute if args.rss_base_minute is not None else (5 if len(minutes) >= 7 else 1)
    base = next((m for m in minutes if m["minute"] == base_minute), None)
    end = minutes[-1] if minutes else None
    if base is not None and end is not None and end is not base:
        base_rss, end_rss = base["rss_mb"] + base["broker_rss_mb"], end["rss_mb"] + end["broker_rss_mb"]
        rss_growth = round((end_rss - base_rss) / base_rss * 100, 2)
        anon_growth = round((end["anon_rss_mb"] - base["anon_rss_mb"]) / base["anon_rss_mb"] * 100, 2)
    else:
        rss_growth = anon_growth = None
    # The trend too: a least-squares line through the minutes from the base on, in MB an hour.
    trend = [m for m in minutes if m["minute"] >= base_minute and m["seconds"] >= 30]
    slope = (
        round(
            float(np.polyfit([m["minute"] for m in trend], [m["rss_mb"] + m["broker_rss_mb"] for m in trend], 1)[0])
            * 60,
            1,
        )
        if len(trend) >= 3
        else None
    )
    # Queues: each minute's least summed depth (a busy line still empties its queues now and then; one part or
    # message never let go raises it by 1 for good), last third of the minutes against the first third (the warm-up
    # minute left out).
    depth = [m["depth_min"] for m in full[1:] if m["depth_min"] is not None]
    third = max(1, len(depth) // 3)
    queue_growth = round(float(np.mean(depth[-third:]) - np.mean(depth[:third])), 2) if len(depth) >= 2 else None
    drops = _drops(last) if last else {}
    accounted = {
        "demo_parts": (summary or {}).get("parts"),
        "plc_parts": plc.get("parts"),
        "truth_known": plc.get("truth_known"),
        "missing_answers": plc.get("missing_answers"),
        "late_answers": plc.get("late_answers"),
        "plc_duplicates": plc.get("duplicates"),
        "tap_verdicts": len(tap.ids),
        "tap_gaps": tap.gaps(),
        "tap_first_id": min(tap.ids) if tap.ids else None,
        "tap_last_id": max(tap.ids) if tap.ids else None,
        "tap_should_see_at_least": parts - tap.seen_at_start,
        "tap_duplicates": tap.duplicates,
    }
    goals = {
        "every_part_accounted": summary is not None
        and summary.get("parts") == parts
        and plc.get("parts") == parts
        and plc.get("truth_known") == parts
        and summary.get("drained") is True
        and tap.gaps() == 0
        and len(tap.ids) >= parts - tap.seen_at_start,
        "no_missing_or_late": plc.get("missing_answers") == 0 and plc.get("late_answers") == 0,
        "rss_growth": rss_growth is not None and rss_growth < args.rss_growth_max,
        "no_queue_growth": queue_growth is not None
        and queue_growth < 1.0
        and drops.get("store_rows_dropped", 0) == 0
        and drops.get("mqtt_overflow", 0) == 0,
    }
    return {
        "command": " ".join(["bench/soak.py", *sys.argv[1:]]),
        "demo_command": " ".join(["inspector", *demo.cmd[3:]]),
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "parts": parts,
        "rate": args.rate,
        "exit_code": demo.proc.returncode,
        "minutes": minutes,
        "rss_base_minute": base_minute,
        "rss_growth_pct": rss_growth,
        "rss_growth_max_pct": args.rss_growth_max,
        "anon_rss_growth_pct": anon_growth,
        "rss_trend_mb_per_hour": slope,
        "queue_growth": queue_growth,
        "drops": drops,
        "accounted": accounted,
        "failsafe": (summary or {}).get("failsafe"),
        "tap_failsafe": tap.failsafe,
        "escapes": (summary or {}).get("escapes"),
        "false_rejects": (summary or {}).get("false_rejects"),
        "threshold_edits": {
            "installed": editor.edits_ok,
            "failed": editor.edits_failed,
            "conflicts": editor.conflicts,
            "versions_seen_in_verdicts": len(tap.versions),
        },
        "stats_poll_ms_p99": round(float(np.percentile(editor.poll_ms, 99)), 1) if editor.poll_ms else None,
        "api_errors": editor.errors[:20],
        "goals": goals,
        "ok": all(goals.values()),
        "summary": summary,
        "demo_tail": list(demo.err)[-5:] if summary is None else [],
    }


def _cpu() -> dict[str, Any]:
    text = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = sorted(set(re.findall(r"\b(avx2|avx512_vnni|avx_vnni)\b", text)))
    return {"model": model.group(1) if model else platform.processor(), "cores": os.cpu_count(), "flags": flags}


# -- output -----------------------------------------------------------------------------------------------------

HEAD = (
    "| min | s | decided | verdicts | fail-safe | p50 ms | p99 ms | max ms | queue mean (in flight / frames / store "
    "/ mqtt) | queue max | RSS MB (anon) | broker RSS MB | thresholds v | load 1 min |"
)


def _row_line(m: dict[str, Any]) -> str:
    mean, top = m["queue_mean"], m["queue_max"]
    qm = " / ".join(str(mean.get(q, "-")) for q in ("in_flight", "frames", "store", "mqtt"))
    qx = " / ".join(str(top.get(q, "-")) for q in ("in_flight", "frames", "store", "mqtt"))
    return (
        f"| {m['minute']}{'*' if m['partial'] else ''} | {m['seconds']} | {m['decided']} | {m['verdicts']} | "
        f"{m['failsafe']} | {m['p50_ms']} | {m['p99_ms']} | {m['max_ms']} | {qm} | {qx} | "
        f"{m['rss_mb']} ({m['anon_rss_mb']}) | "
        f"{m['broker_rss_mb']} | {m['thresholds_version']} | {m['load1']} |"
    )


def table(result: dict[str, Any]) -> str:
    rows = [HEAD, "| " + " | ".join(["---"] * 14) + " |"]
    return "\n".join(rows + [_row_line(m) for m in result["minutes"]])


def verdict_line(r: dict[str, Any]) -> str:
    g, a = r["goals"], r["accounted"]

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    return (
        f"verdict: {'PASS' if r['ok'] else 'FAIL'}: parts {a['demo_parts']}/{r['parts']} decided, "
        f"{a['plc_parts']} gated, missing {a['missing_answers']}, late {a['late_answers']} "
        f"({mark(g['every_part_accounted'] and g['no_missing_or_late'])}); "
        f"RSS growth {r['rss_growth_pct']} % since minute {r['rss_base_minute']} (anon {r['anon_rss_growth_pct']} %, "
        f"trend {r['rss_trend_mb_per_hour']} MB/h) "
        f"(< {r['rss_growth_max_pct']} %: {mark(g['rss_growth'])}); "
        f"queue growth {r['queue_growth']} (< 1: {mark(g['no_queue_growth'])}); fail-safe {r['failsafe']}"
    )


def markdown(r: dict[str, Any]) -> str:
    cpu = r["cpu"]
    lines = [
        f"## Run of {r['date']}: {r['parts']} parts at {r['rate']} parts/s",
        "",
        f"- Command: `{r['command']}` (runs `{r['demo_command']}`)",
        f"- CPU: {cpu['model']}, {cpu['cores']} cores, flags {', '.join(cpu['flags']) or 'none of the three'} "
        "(`grep -o 'avx2\\|avx512_vnni\\|avx_vnni' /proc/cpuinfo | sort -u`)",
        f"- Load average before: {' / '.join(map(str, r['load_before']))}; after: "
        f"{' / '.join(map(str, r['load_after']))} (1 / 5 / 15 min)",
        f"- Demo exit code {r['exit_code']}; threshold edits installed {r['threshold_edits']['installed']}, failed "
        f"{r['threshold_edits']['failed']}, 409 retries {r['threshold_edits']['conflicts']}; `/api/stats` poll p99 "
        f"{r['stats_poll_ms_p99']} ms",
        f"- Accounted: `{json.dumps(r['accounted'])}`; drops `{json.dumps(r['drops'])}`; fail-safe {r['failsafe']}, "
        f"escapes {r['escapes']}, false rejects {r['false_rejects']}",
        "",
        table(r),
        "",
        f"**{verdict_line(r)}**",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the run (60)")
    parser.add_argument("--rate", type=float, default=20.0, help="parts per second (20)")
    parser.add_argument("--model", type=Path, help="ONNX model for the demo (default: the demo's)")
    parser.add_argument("--seed", type=int, default=0, help="synthetic line seed (0)")
    parser.add_argument("--poll-s", type=float, default=3.0, help="dashboard stats poll period (3 s)")
    parser.add_argument("--edit-every-s", type=float, default=60.0, help="threshold edit period (60 s)")
    parser.add_argument("--rss-growth-max", type=float, default=5.0, help="RSS growth goal, %% (5)")
    parser.add_argument("--rss-base-minute", type=int, help="RSS baseline minute (5; 1 for runs under 7 minutes)")
    parser.add_argument("--record", type=Path, help="append a markdown section to this file")
    parser.add_argument("--json-out", type=Path, help="write the result as JSON")
    args = parser.parse_args()
    if args.minutes <= 0 or args.rate <= 0:
        parser.error("--minutes and --rate must be positive")
    try:
        result = soak(args)
    except RuntimeError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    print(table(result))
    print(verdict_line(result), flush=True)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1))
    if args.record:
        head = "" if args.record.exists() else "# Soak: `inspector demo` for a long run (issue 20)\n\n"
        with args.record.open("a") as f:
            f.write(head + markdown(result) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
