"""No lost verdict: the broker crashes (kill -9) for 4 s in the middle of 400 parts at 20 parts/s; and the
inspector itself crashes (kill -9) or freezes: the PLC learns `offline` from the last will.

The independent subscriber holds a persistent MQTT 5 session (clean_start False, QoS 1) on a Mosquitto with
persistence, so the restarted broker still knows its subscriptions and queues for it what the inspector sends
before the subscriber is back: what the subscriber has is what the broker accepted. The broker saves after every
change (`EmbeddedBroker`): Mosquitto acknowledges QoS 1 once a message is in memory, and with a 1 s time-based
autosave a kill -9 once lost the part the link had just had acknowledged (1 CI run in about 30).

Two links run side by side through the same outage: camera `long` with a gate time (10 s) longer than the outage,
camera `short` with a gate time (1 s) shorter than it.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from inspector.plc import PlcLink
from tests.mqtt_helpers import WAIT_S, Recorder, make_verdict, mosquitto, mqtt_config, spawn_link, wait_saved

PARTS = 400
RATE = 20.0
KILL_AFTER = 150  # parts
OUTAGE_S = 4.0
GATES = {"long": 10.0, "short": 1.0}
RECONNECT_MAX_S = 2.0


@dataclass
class Outage:
    handled: dict[str, dict[int, float]] = field(default_factory=lambda: collections.defaultdict(dict))
    kill_at: float = 0.0
    restart_at: float = 0.0
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    late: dict[str, list[int]] = field(default_factory=dict)
    recorder: Recorder | None = None

    def ids(self, camera: str, topic: str) -> list[int]:
        assert self.recorder is not None
        return [m.json()["part_id"] for m in self.recorder.messages if m.topic == f"inspector/line1/{camera}/{topic}"]


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outage]:
    run = Outage()
    with mosquitto(tmp_path_factory.mktemp("outage-broker"), persistence=True) as broker:
        before = time.time()
        rec = Recorder(broker.url, ["inspector/line1/+/verdict", "inspector/line1/+/reject"], persistent=True)
        rec.start()
        run.recorder = rec
        wait_saved(broker, after=before)  # the subscription is on disk before the crash
        links = {cam: PlcLink(mqtt_config(broker.url), cam, reconnect_max_s=RECONNECT_MAX_S) for cam in GATES}
        for link in links.values():
            link.start()
            assert link.wait_connected(WAIT_S)
        killed = threading.Event()

        def feed() -> None:
            t0 = time.monotonic()
            for i in range(PARTS):
                time.sleep(max(0.0, t0 + i / RATE - time.monotonic()))
                if i == KILL_AFTER:
                    killed.set()
                for cam, link in links.items():
                    run.handled[cam][i] = time.monotonic()
                    link.handle(make_verdict(i, reject=i % 3 == 0, gate_s=GATES[cam], camera_id=cam))

        feeder = threading.Thread(target=feed)
        feeder.start()
        try:
            assert killed.wait(60)
            broker.kill()
            run.kill_at = time.monotonic()
            time.sleep(OUTAGE_S)
            broker.start()  # same port, same persisted state
            run.restart_at = time.monotonic()
            feeder.join(120)
            for cam, link in links.items():
                expected = PARTS if cam == "long" else 1
                rec.wait_for(
                    lambda r, c=cam, n=expected: (
                        len(set(run.ids(c, "verdict"))) >= PARTS and len(set(run.ids(c, "reject"))) >= n
                    ),
                    timeout_s=60,
                )
                assert link.flush(WAIT_S)
            time.sleep(0.5)  # let late duplicates, if any, arrive before counting
            for cam, link in links.items():
                run.stats[cam] = link.stats()
                run.late[cam] = link.late_part_ids()
            yield run
        finally:
            feeder.join(120)
            for link in links.values():
                link.stop(timeout_s=1.0)
            rec.stop()


@pytest.mark.parametrize("camera", sorted(GATES))
def test_every_verdict_arrives_through_a_broker_crash(outage: Outage, camera: str) -> None:
    got = outage.ids(camera, "verdict")
    assert set(got) == set(range(PARTS)), f"lost verdicts: {sorted(set(range(PARTS)) - set(got))[:20]}"
    stats = outage.stats[camera]
    assert stats["reconnects"] >= 1 and stats["queued"] == 0 and stats["overflow"] == 0


def test_gate_longer_than_the_outage_every_reject_arrives(outage: Outage) -> None:
    got = outage.ids("long", "reject")
    assert set(got) == set(range(PARTS)), f"missing rejects: {sorted(set(range(PARTS)) - set(got))[:20]}"
    assert outage.stats["long"]["late"] == 0 and outage.late["long"] == []


def test_gate_shorter_than_the_outage_late_rejects_are_not_sent(outage: Outage) -> None:
    late = set(outage.late["short"])
    received = set(outage.ids("short", "reject"))
    handled = outage.handled["short"]
    assert late, "a 1 s gate and a 4 s outage must make some parts late"
    assert outage.stats["short"]["late"] == len(late) == len(outage.late["short"])
    # A reject in flight at the kill can be both: the broker had it (passed on before the kill, or saved and
    # delivered after the restart) but its PUBACK never reached the link, which took it back on reconnect, found its
    # gate passed and counted it late instead of sending it again (seen once on CI). Only the part or two handed
    # over at the moment of the kill.
    in_flight = {i for i in late & received if outage.kill_at - 0.5 <= handled[i] <= outage.kill_at + 0.5}
    assert len(in_flight) <= 2, f"more than the kill's in-flight rejects both late and sent: {sorted(in_flight)}"
    resent = late & received - in_flight
    assert not resent, f"late rejects were sent anyway: {sorted(resent)[:20]}"
    assert late | received == set(range(PARTS)), f"neither sent nor late: {sorted(set(range(PARTS)) - late - received)}"
    # Only parts whose gate passed while the broker was away can be late.
    earliest = outage.kill_at - GATES["short"] - 0.5
    latest = outage.restart_at + RECONNECT_MAX_S + 1.0
    outside = sorted(i for i in late if not earliest <= handled[i] <= latest)
    assert not outside, f"parts counted late outside the outage window: {outside[:20]}"
    # The outage covered OUTAGE_S - gate seconds of parts at least.
    assert len(late) >= (OUTAGE_S - GATES["short"]) * RATE * 0.8


@pytest.mark.parametrize("camera", sorted(GATES))
def test_duplicates_only_where_qos1_allows(outage: Outage, camera: str) -> None:
    """A duplicate is a resend of an unacknowledged message (identical payload, same part_id and seq) around the
    crash; never in steady state."""
    assert outage.recorder is not None
    for topic in ("verdict", "reject"):
        copies: dict[int, list[bytes]] = collections.defaultdict(list)
        for m in outage.recorder.messages:
            if m.topic == f"inspector/line1/{camera}/{topic}":
                copies[m.json()["part_id"]].append(m.payload)
        dups = {i: c for i, c in copies.items() if len(c) > 1}
        for i, payloads in dups.items():
            assert len(set(payloads)) == 1, f"part {i}: duplicates differ"
            t = outage.handled[camera][i]
            assert outage.kill_at - 5.0 <= t <= outage.kill_at + 1.0, f"part {i} duplicated outside the crash"


# -- the inspector crashes ---------------------------------------------------------------------------------------


@pytest.fixture
def broker_url(tmp_path: Any) -> Iterator[str]:
    with mosquitto(tmp_path) as b:
        yield b.url


@pytest.mark.parametrize("how", ["kill", "freeze"])
def test_inspector_crash_publishes_offline_within_keepalive(broker_url: str, how: str) -> None:
    """kill -9: the socket closes and the broker sends the will at once. A frozen process (SIGSTOP) keeps its
    socket: the broker gives up on it after 1.5x the keep-alive; Mosquitto counts whole seconds, compares with
    `>` and checks once a second, so up to ~2 s more (measured: 5.1 s for a 2 s keep-alive)."""
    keepalive = 2
    with Recorder(broker_url, ["inspector/line1/cam9/status"]) as rec:
        proc = spawn_link(broker_url, "cam9", keepalive)
        try:
            assert rec.wait_for(lambda r: any(s["status"] == "online" for s in r.payloads("status")))
            t0 = time.monotonic()
            proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGSTOP)
            assert rec.wait_for(lambda r: r.payloads("status")[-1]["status"] == "offline", timeout_s=10)
            elapsed = rec.on("status")[-1].at - t0
        finally:
            proc.kill()
            proc.wait(10)
    offline = rec.payloads("status")[-1]
    assert offline["reason"] == "connection lost" and offline["camera"] == "cam9"
    bound = 1.5 * keepalive if how == "kill" else 1.5 * keepalive + 3.0
    assert elapsed <= bound, f"offline after {elapsed:.2f} s, want <= {bound} s"
