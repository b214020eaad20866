"""The fleet view (`inspector fleet`): its state model fed payloads directly (states, restarts, shifts, malformed
messages), and end to end over a real Mosquitto with real `PlcLink`s: two lines, their heartbeats (valid against
the schema, with the fleet's fields), the JSON API, the Prometheus metrics and the offline state on a clean stop.
The page in real Chromium, with lines killed with kill -9, is `tests/test_fleet_e2e.py`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from inspector.broker import EmbeddedBroker
from inspector.fleet import Fleet, Shifts
from inspector.fleet.server import FleetServer
from inspector.plc import PlcLink, load_schema
from tests.mqtt_helpers import Recorder, make_verdict, mosquitto, mqtt_config
from tests.web_helpers import wait_for

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with mosquitto(tmp_path) as b:
        yield b


def status(state: str = "online", reason: str = "connected", heartbeat_s: float = 1.0) -> bytes:
    return json.dumps(
        {
            "schema": 1,
            "status": state,
            "reason": reason,
            "protocol": "5",
            "client_id": "x",
            "line": "l",
            "camera": "c",
            "heartbeat_s": heartbeat_s,
            "keepalive_s": 5,
        }
    ).encode()


def heartbeat(seq: int, decided: int, *, uptime: float, ts: float, recipes: dict[str, Any] | None = None) -> bytes:
    counts = {
        "parts": decided,
        "rejected": 1,
        "failsafe": 0,
        "scored": decided,
        "defective": 2,
        "escapes": 1,
        "false_rejects": 0,
    }
    return json.dumps(
        {
            "schema": 1,
            "ts": ts,
            "seq": seq,
            "ready": True,
            "uptime_s": uptime,
            "protocol": "5",
            "counters": {"decided": decided, "passed": decided - 1, "rejected": 1, "failsafe": 0},
            "processing_ms": {"min": 1.0, "avg": 1.0, "max": 1.0, "n": 1},
            "link": {"sent": 0, "queued": 0, "overflow": 0, "late": 0, "reconnects": 0, "malformed_commands": 0},
            "pipeline": {"paused": False, "recipe": "boardA"},
            "recipes": recipes if recipes is not None else {"boardA": counts},
        }
    ).encode()


# -- shifts -------------------------------------------------------------------------------------------------------


def test_shifts_parse_and_place_a_moment_in_its_shift() -> None:
    shifts = Shifts.parse("22:00, 06:00,14:00")
    assert str(shifts) == "06:00,14:00,22:00"
    at = datetime(2024, 6, 1, 15, 30).astimezone().timestamp()
    shift = shifts.at(at)
    assert shift.name == "2024-06-01 14:00-22:00"
    assert shift.start <= at < shift.end
    night = shifts.at(datetime(2024, 6, 2, 3, 0).astimezone().timestamp())
    assert night.name == "2024-06-01 22:00-06:00"  # the night shift belongs to the day it started
    assert Shifts.parse("00:00").at(at).name == "2024-06-01 00:00-00:00"


@pytest.mark.parametrize("bad", ["", "6", "25:00", "06:00,,14:00", "06:60", "noon"])
def test_a_bad_shift_list_is_refused_naming_the_entry(bad: str) -> None:
    with pytest.raises(ValueError, match=r"shifts: .* HH:MM"):
        Shifts.parse(bad)


def test_the_cli_refuses_bad_arguments_naming_them() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "inspector", "fleet", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )

    bad_shift = run("--mqtt", "mqtt://127.0.0.1:1", "--shifts", "6am")
    assert bad_shift.returncode == 2 and "--shifts" in bad_shift.stderr and "'6am'" in bad_shift.stderr
    bad_url = run("--mqtt", "http://127.0.0.1:1883")
    assert bad_url.returncode == 2 and "--mqtt" in bad_url.stderr and "mqtt://" in bad_url.stderr
    assert run("--help").returncode == 0


# -- the state model ----------------------------------------------------------------------------------------------


def test_states_online_stale_offline_from_status_and_silence() -> None:
    fleet = Fleet()
    root = "inspector/line1/cam0/"
    assert fleet.ingest(root + "status", status(heartbeat_s=0.5), now=100.0)
    assert fleet.ingest(root + "heartbeat", heartbeat(1, 10, uptime=1, ts=time.time()), now=100.2)
    rows = fleet.snapshot(now=100.5)["lines"]
    assert [(r["key"], r["state"], r["recipe"], r["decided"]) for r in rows] == [("line1/cam0", "online", "boardA", 10)]
    assert fleet.snapshot(now=101.19)["lines"][0]["state"] == "online"  # silent 0.99 s < 2 x 0.5 s
    assert fleet.snapshot(now=101.21)["lines"][0]["state"] == "stale"
    fleet.ingest(root + "heartbeat", heartbeat(2, 14, uptime=2, ts=time.time()), now=101.3)
    row = fleet.snapshot(now=101.4)["lines"][0]
    assert row["state"] == "online" and row["rate"] == pytest.approx(4 / 1.1, rel=1e-3)
    fleet.ingest(root + "status", status("offline", "connection lost"), now=101.5)
    row = fleet.snapshot(now=101.6)["lines"][0]
    assert (row["state"], row["reason"], row["decided"]) == ("offline", "connection lost", 14)  # last values kept
    assert fleet.snapshot()["counts"] == {"online": 0, "stale": 0, "offline": 1, "unknown": 0}


def test_plant_totals_survive_a_line_restart_and_shifts_count_what_arrived() -> None:
    fleet = Fleet(shifts=Shifts.parse("00:00"))
    root = "inspector/line1/cam0/"
    now = time.time()
    fleet.ingest(root + "status", status())
    fleet.ingest(root + "heartbeat", heartbeat(5, 50, uptime=5, ts=now))  # started now: counted in this shift
    fleet.ingest(root + "heartbeat", heartbeat(6, 60, uptime=6, ts=now))
    fleet.ingest(root + "heartbeat", heartbeat(1, 7, uptime=1, ts=now))  # restarted: a new process life
    snap = fleet.snapshot()
    assert snap["recipes"]["boardA"]["parts"] == 67
    assert snap["lines"][0]["restarts"] == 1
    assert snap["plant"]["escapes"] == 2 and snap["plant"]["yield"] == pytest.approx((67 - 2) / 67, abs=1e-4)
    current = snap["shifts"][0]
    assert current["current"] and current["total"]["parts"] == 67
    assert current["lines"]["line1/cam0"]["parts"] == 67

    # A line seen for the first time that started long before this shift: its earlier parts are not this shift's.
    old = "inspector/line2/cam0/"
    fleet.ingest(old + "heartbeat", heartbeat(9000, 900, uptime=2 * 86400, ts=now))
    fleet.ingest(old + "heartbeat", heartbeat(9001, 905, uptime=2 * 86400 + 1, ts=now))
    snap = fleet.snapshot()
    assert snap["recipes"]["boardA"]["parts"] == 67 + 905
    assert snap["shifts"][0]["lines"]["line2/cam0"]["parts"] == 5


def test_malformed_messages_are_counted_never_raised() -> None:
    fleet = Fleet()
    root = "inspector/line1/cam0/"
    assert not fleet.ingest(root + "heartbeat", b"{not json")
    assert not fleet.ingest(root + "heartbeat", b"[1, 2]")
    assert not fleet.ingest(root + "heartbeat", b'{"seq": "one", "counters": {}}')
    assert not fleet.ingest(root + "status", b'{"status": "sleeping"}')
    assert not fleet.ingest("inspector/line1/cam0/verdict", b"{}")
    assert not fleet.ingest("inspector/line1/heartbeat", b"{}")
    # Odd field types cost their own facts only.
    assert fleet.ingest(root + "heartbeat", b'{"seq": 1, "counters": {"decided": "x"}, "pipeline": 3, "recipes": [1]}')
    snap = fleet.snapshot()
    assert snap["malformed"] == 6
    assert snap["lines"][0]["decided"] == 0 and snap["recipes"] == {}


def test_alarm_events_and_heartbeat_facts_become_row_alarms() -> None:
    fleet = Fleet()
    root = "inspector/line1/cam0/"
    fleet.ingest(root + "status", status())
    beat = json.loads(heartbeat(1, 10, uptime=1, ts=time.time()))
    beat["ready"] = False
    beat["pipeline"]["model"] = {"file": "b.onnx", "fallback_model": True, "provider_fallback": False}
    fleet.ingest(root + "heartbeat", json.dumps(beat).encode())
    event = {"schema": 1, "event": "alarm", "ts": 1.0, "seq": 1, "alarm": "offline_queue_overflow", "dropped": 4}
    fleet.ingest(root + "events", json.dumps(event).encode())
    fleet.ingest(root + "events", json.dumps({**event, "event": "command", "command": "pause"}).encode())
    names = [a["name"] for a in fleet.snapshot()["lines"][0]["alarms"]]
    assert names == ["not_ready", "model_fallback", "offline_queue_overflow"]


# -- end to end over a real broker --------------------------------------------------------------------------------


def start_line(url: str, line: str, counters: dict[str, int], **config: Any) -> PlcLink:
    def line_status() -> dict[str, Any]:
        return {"ready": True, "counters": dict(counters), "paused": False, "recipe": "boardA"}

    link = PlcLink(mqtt_config(url, line=line, heartbeat_s=0.3, **config), "cam0", status=line_status)
    link.dashboard_url = f"http://127.0.0.1:9/{line}/"
    link.start()
    assert link.wait_connected(20)
    return link


def test_two_lines_on_one_broker_as_json_and_prometheus(broker: EmbeddedBroker) -> None:
    schema = load_schema("heartbeat")
    counters = {"l1": {"decided": 0, "passed": 0, "rejected": 0, "failsafe": 0}, "l2": {}}
    counters["l2"] = dict(counters["l1"])
    server = FleetServer(broker.url, port=0)
    url = server.start()
    links = {name: start_line(broker.url, name, counters[name]) for name in ("l1", "l2")}
    try:
        with Recorder(broker.url, ["inspector/+/cam0/heartbeat"]) as recorder:
            for part in range(30):
                for n, (name, link) in enumerate(links.items()):
                    if n == 1 and part >= 20:
                        continue  # l2 makes 20 parts
                    reject = part % 5 == 0
                    link.handle(make_verdict(part, reject=reject, truth=part % 10 == 0 or part == 3))
                    c = counters[name]
                    c["decided"] += 1
                    c["rejected" if reject else "passed"] += 1

            def settled() -> dict[str, Any] | None:
                snap = httpx.get(url + "api/fleet").json()
                rows = {r["key"]: r for r in snap["lines"]}
                done = rows.get("l1/cam0", {}).get("decided") == 30 and rows.get("l2/cam0", {}).get("decided") == 20
                return snap if done and snap["plant"]["parts"] == 50 else None

            snap = wait_for(settled, 20, what="both lines' parts on /api/fleet")
            beats = recorder.payloads("heartbeat")
        for beat in beats:
            jsonschema.validate(beat, schema)
        assert any(b.get("dashboard_url") == "http://127.0.0.1:9/l1/" for b in beats)

        rows = {r["key"]: r for r in snap["lines"]}
        assert [r["state"] for r in rows.values()] == ["online", "online"]
        l1 = rows["l1/cam0"]
        assert (l1["ready"], l1["recipe"], l1["rejected"], l1["dashboard_url"]) == (
            True,
            "boardA",
            6,
            "http://127.0.0.1:9/l1/",
        )
        assert l1["yield"] == pytest.approx(24 / 30) and l1["p99_ms"] == pytest.approx(12.0)
        # make_verdict's recipe is "default"; truth: parts 0, 3, 10, 20 (l1) / 0, 3, 10 (l2) are defective, and
        # part 3 (not a multiple of 5) passed: one escape per line.
        total = snap["recipes"]["default"]
        assert (total["parts"], total["rejected"], total["scored"], total["defective"], total["escapes"]) == (
            50,
            10,
            50,
            7,
            2,
        )
        assert snap["shifts"][0]["current"] and snap["shifts"][0]["total"]["parts"] == 50

        metrics = httpx.get(url + "metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        text = metrics.text
        assert 'inspector_fleet_line_up{camera="cam0",line="l1"} 1.0' in text
        assert 'inspector_fleet_parts_decided_total{camera="cam0",line="l2"} 20.0' in text
        assert 'inspector_fleet_recipe_escapes_total{recipe="default"} 2.0' in text
        assert 'inspector_fleet_latency_ms{camera="cam0",line="l1",quantile="0.99"} 12.0' in text

        links.pop("l2").stop()  # a clean stop: `offline`, reason stopped
        wait_for(
            lambda: (
                {r["key"]: r["state"] for r in httpx.get(url + "api/fleet").json()["lines"]}
                == {"l1/cam0": "online", "l2/cam0": "offline"}
            ),
            20,
            what="l2 offline",
        )
        assert httpx.get(url + "api/health").json() == {"ok": True, "broker_connected": True}
    finally:
        for link in links.values():
            link.stop()
        server.stop()


def test_a_fleet_view_started_later_learns_the_states_from_retained_status(broker: EmbeddedBroker) -> None:
    counters = {"decided": 0}
    running = start_line(broker.url, "up", counters)
    stopped = start_line(broker.url, "down", counters)
    stopped.stop()
    server = FleetServer(broker.url, port=0)
    url = server.start()
    try:

        def states() -> dict[str, str]:
            return {r["key"]: r["state"] for r in httpx.get(url + "api/fleet").json()["lines"]}

        wait_for(lambda: states() == {"down/cam0": "offline", "up/cam0": "online"}, 20, what="retained states")
    finally:
        running.stop()
        server.stop()
