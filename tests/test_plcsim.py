"""The PLC simulator against a real Mosquitto and a fake inspector (a `PlcLink` answering as planned):
its report must match what the fake inspector was told to do."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from inspector.broker import EmbeddedBroker
from inspector.plc import PlcLink, parse_mqtt_url
from inspector.sim.plc import PlcSimulator, SimReport
from tests.mqtt_helpers import (
    WAIT_S,
    CutProxy,
    FakeInspector,
    Plan,
    Publisher,
    amqtt_broker,
    mosquitto,
    mqtt_config,
)

ROOT_DIR = Path(__file__).resolve().parent.parent


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with mosquitto(tmp_path) as b:
        yield b


MakeInspector = Callable[..., FakeInspector]


@pytest.fixture
def inspector(broker: EmbeddedBroker) -> Iterator[MakeInspector]:
    """make(plans, gate_s, camera="cam0"): a fake inspector behind a started `PlcLink`."""
    made: list[tuple[FakeInspector, PlcLink]] = []

    def make(plans: dict[int, Plan], gate_s: float, camera: str = "cam0", url: str | None = None) -> FakeInspector:
        fake = FakeInspector(gate_s=gate_s, plans=plans)
        link = PlcLink(mqtt_config(url or broker.url), camera, commands=fake)
        fake.link = link
        link.start()
        assert link.wait_connected(WAIT_S)
        made.append((fake, link))
        return fake

    yield make
    for fake, link in made:
        fake.close()
        link.stop(timeout_s=1.0)


def test_triggered_report_matches_the_truth(broker: EmbeddedBroker, inspector: MakeInspector) -> None:
    gate_s = 1.5
    defective = {0, 5, 10, 15, 20, 25}
    plans = {i: Plan(reject=i in defective, truth=i in defective) for i in range(30)}
    plans[10] = Plan(reject=False, truth=True)  # an escape: a defective part passed
    plans[7] = Plan(reject=True, truth=False)  # a false reject
    plans[13] = Plan(skip=True)  # never answered: rejected at the gate, truth unknown
    plans[3] = Plan(delay_s=gate_s + 0.6, truth=False)  # answered after its gate: late, rejected meanwhile
    plans[21] = Plan(twice=True)  # a QoS 1 duplicate
    fake = inspector(plans, gate_s)
    sim = PlcSimulator(broker.url, rate=20, gate_ms=gate_s * 1000, trigger=True, parts=30, grace_s=1.5)
    report = sim.run(timeout_s=60)
    assert fake.triggers[:30] == list(range(30))
    assert report == SimReport(
        parts=30,
        passed=22,
        rejected=8,
        rejected_on_answer=6,  # 0, 5, 15, 20, 25 and the false reject 7
        rejected_missing=2,
        missing_answers=2,
        late_answers=1,
        duplicates=1,
        unexpected=0,
        truth_known=29,
        defective=6,
        escapes=1,
        false_rejects=2,  # 7, and 3 (good, but rejected for its late answer)
        protocol="5",
        missing_ids=[3, 13],
        escape_ids=[10],
        false_reject_ids=[7, 3],
    )


def test_free_run_follows_the_inspector_ids(broker: EmbeddedBroker, inspector: MakeInspector) -> None:
    """Without --trigger the camera numbers the parts; ids skipped in the sequence are missing answers."""
    plans = {i: Plan(reject=i % 4 == 0, truth=i % 4 == 0) for i in range(100, 120)}
    plans[105] = plans[106] = Plan(skip=True)
    fake = inspector(plans, 1.0)
    sim = PlcSimulator(broker.url, rate=20, gate_ms=1000, parts=20, grace_s=0.5)
    sim.start()
    try:
        for i in range(100, 125):  # more parts than asked for: the simulator counts 20
            fake.answer(i)
            time.sleep(0.05)
        assert sim.wait(30)
    finally:
        report = sim.stop()
    assert report.parts == 20
    assert report.missing_ids == [105, 106] and report.missing_answers == 2
    rejected_on_answer = [i for i in range(100, 120) if i % 4 == 0 and i not in (105, 106)]
    assert report.rejected_on_answer == len(rejected_on_answer)
    assert report.rejected == report.rejected_on_answer + 2 and report.passed == 20 - report.rejected
    assert report.truth_known == 18 and report.escapes == 0 and report.false_rejects == 0
    assert report.unexpected == 0 and report.late_answers == 0


def test_free_run_ignores_parts_before_it_joined(broker: EmbeddedBroker, inspector: MakeInspector) -> None:
    fake = inspector({}, 1.0)
    sim = PlcSimulator(broker.url, rate=20, gate_ms=1000, parts=3, grace_s=0.2)
    sim.start()
    try:
        for i in (50, 49, 51, 52):  # 49 arrives out of order, from before the first id seen
            fake.answer(i)
        assert sim.wait(30)
    finally:
        report = sim.stop()
    assert report.parts == 3 and report.passed == 3 and report.missing_answers == 0


def test_free_run_answer_after_its_gate_is_late(broker: EmbeddedBroker) -> None:
    """An answer delayed in transit past its `gate_ts` (e.g. a 3.1.1 broker without expiry) does not count: the
    part was rejected at the gate for want of an answer."""
    sim = PlcSimulator(broker.url, rate=20, gate_ms=1000, parts=2, grace_s=0.2)
    sim.start()
    try:
        plc_side = Publisher(broker.url)
        try:
            now = time.time()
            plc_side.send(
                "inspector/line1/cam0/reject",
                json.dumps(
                    {"part_id": 7, "reject": False, "reason": "", "gate_ts": now - 1.0, "seq": 7, "ts": now - 1.5}
                ),
            )
            plc_side.send(
                "inspector/line1/cam0/reject",
                json.dumps({"part_id": 8, "reject": False, "reason": "", "gate_ts": now + 0.3, "seq": 8, "ts": now}),
            )
        finally:
            plc_side.close()
        assert sim.wait(30)
    finally:
        report = sim.stop()
    assert (report.parts, report.passed, report.missing_ids, report.late_answers) == (2, 1, [7], 1)


def test_triggered_answers_for_unknown_parts_are_counted(broker: EmbeddedBroker, inspector: MakeInspector) -> None:
    fake = inspector({}, 2.0)
    sim = PlcSimulator(broker.url, rate=20, gate_ms=1000, trigger=True, parts=3, first_id=1000, grace_s=0.3)
    sim.start()
    try:
        fake.answer(5)  # not a part the simulator put on the conveyor
        assert sim.wait(30)
    finally:
        report = sim.stop()
    assert fake.triggers == [1000, 1001, 1002]
    assert report.parts == 3 and report.passed == 3 and report.unexpected == 1


def test_plc_sim_command_line(broker: EmbeddedBroker, inspector: MakeInspector) -> None:
    plans = {i: Plan(reject=i == 2, truth=i == 2) for i in range(8)}
    plans[6] = Plan(skip=True)
    inspector(plans, 1.5, camera="camX")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inspector",
            "plc-sim",
            "--mqtt",
            broker.url,
            "--line",
            "line1",
            "--camera",
            "camX",
            "--rate",
            "20",
            "--gate-ms",
            "1500",
            "--trigger",
            "--parts",
            "8",
            "--grace",
            "0.3",
            "--json",
        ],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["parts"] == 8 and report["rejected"] == 2 and report["missing_ids"] == [6]
    assert report["truth_known"] == 7 and report["escapes"] == 0 and report["false_rejects"] == 0


@pytest.mark.parametrize("persistent", [True, False], ids=["persistent-session", "clean-session"])
def test_answers_published_while_the_plc_is_away_arrive_after_it_reconnects(
    broker: EmbeddedBroker, inspector: MakeInspector, persistent: bool
) -> None:
    """The PLC's cable is pulled for a while (a relay between it and the broker cut): with its persistent session
    the broker queues the answers meanwhile and delivers them on reconnect; with a clean session they are lost,
    and the gate rejects those parts for want of an answer (issue 20: 120 of 150 lost in a 5 s outage)."""
    fake = inspector({}, 8.0)  # a gate far enough away to outlast the cut and paho's reconnect back-off
    address = parse_mqtt_url(broker.url)
    with CutProxy(address.host, address.port) as relay:
        sim = PlcSimulator(relay.url, rate=20, gate_ms=8000, parts=9, grace_s=0.3, persistent=persistent)
        sim.start()
        try:
            for i in range(3):
                fake.answer(i)
            assert wait_until(lambda: sim.answered_ids() == [0, 1, 2])
            relay.cut()
            assert wait_until(lambda: not sim.connected)
            time.sleep(0.3)  # the broker has seen the PLC go too (the relay closed both ends at once)
            for i in range(3, 8):
                fake.answer(i)
            assert fake.link is not None and fake.link.flush(WAIT_S), "the broker has them all"
            relay.restore()
            assert wait_until(lambda: sim.connected)
            if persistent:  # the queued answers come first, right after the reconnect
                assert wait_until(lambda: sim.answered_ids() == list(range(8)))
            fake.answer(8)
            assert sim.wait(60)
        finally:
            report = sim.stop()
    # (Answers in flight at the cut may come twice, QoS 1: the simulator counts and drops them as duplicates.)
    assert report.parts == 9 and report.reconnects == 1
    if persistent:
        assert report.missing_answers == 0 and report.passed == 9
    else:
        assert report.missing_ids == [3, 4, 5, 6, 7] and report.rejected_missing == 5


def test_the_simulator_keeps_a_fixed_client_id_and_ends_its_session_on_stop(broker: EmbeddedBroker) -> None:
    sim = PlcSimulator(broker.url, line="lineX", camera="camY", parts=1)
    assert sim.client_id == "plcsim-lineX-camY" and sim.persistent and sim.session_expiry_s > 0
    sim.start()
    sim.stop()
    # A clean stop ends the session: a client resuming that id finds none (nothing queues for a gone simulator).
    assert session_present(broker.url, "plcsim-lineX-camY") is False


def session_present(url: str, client_id: str) -> bool:
    """Connect with `client_id` resuming its session (MQTT 5, clean start off): did the broker have one?"""
    address = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    flags: list[bool] = []
    client.on_connect = lambda _c, _u, f, _r, _p: flags.append(bool(f.session_present))
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0
    client.connect(address.host, address.port, 5, clean_start=False, properties=props)
    client.loop_start()
    try:
        assert wait_until(lambda: bool(flags))
    finally:
        client.disconnect()
        client.loop_stop()
    return flags[0]


def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("with_run", [True, False], ids=["run-in-answers", "no-run"])
def test_free_run_a_new_run_is_a_restart_not_missing_parts(broker: EmbeddedBroker, with_run: bool) -> None:
    """After a restart the inspector's ids continue past the numbers it had reserved (docs/mqtt.md): a newer `run`
    tells the PLC the gap holds no parts. Without `run` the same jump reads as missing answers."""
    sim = PlcSimulator(broker.url, rate=20, gate_ms=1000, parts=6, grace_s=0.2)
    sim.start()
    plc = Publisher(broker.url)
    try:
        for run, ids in ((3, (11, 12, 13)), (4, (1001, 1002, 1003))):
            for part_id in ids:
                answer = {"part_id": part_id, "reject": False, "reason": "", "gate_ts": round(time.time() + 1, 3)}
                answer.update(seq=part_id, ts=round(time.time(), 3), **({"run": run} if with_run else {}))
                plc.send("inspector/line1/cam0/reject", json.dumps(answer))
        assert sim.wait(30)
    finally:
        plc.close()
        report = sim.stop()
    if with_run:
        assert report.parts == 6 and report.passed == 6 and report.missing_answers == 0
    else:
        assert report.missing_ids == [14, 15, 16], "the gap counted as parts without an answer"


def test_plc_sim_command_line_without_a_broker() -> None:
    from inspector.broker import free_port

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "inspector",
            "plc-sim",
            "--mqtt",
            f"mqtt://127.0.0.1:{free_port()}",
            "--parts",
            "1",
            "--connect-timeout",
            "1",
        ],
        cwd=ROOT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "cannot connect" in result.stderr


def test_simulator_over_mqtt_311(tmp_path: Path) -> None:
    """Against amqtt both sides speak 3.1.1: no message expiry, the simulator still gates on time."""
    with amqtt_broker(tmp_path) as b:
        fake = FakeInspector(gate_s=2.0, plans={1: Plan(reject=True, truth=True)})
        # The link's own fall-back is tested in test_plc; here the simulator must find 3.1.1 by itself.
        link = PlcLink(mqtt_config(b.url, protocol="3.1.1"), "cam0", commands=fake)
        fake.link = link
        link.start()
        try:
            assert link.wait_connected(WAIT_S)
            sim = PlcSimulator(b.url, rate=10, gate_ms=2000, trigger=True, parts=4, grace_s=0.3)
            report = sim.run(timeout_s=60)
        finally:
            fake.close()
            link.stop(timeout_s=1.0)
    assert report.protocol == "3.1.1" and link.info()["protocol"] == "3.1.1"
    assert report.parts == 4 and report.rejected == 1 and report.missing_answers == 0 and report.truth_known == 4


def test_simulator_validates_its_arguments() -> None:
    for kwargs in (
        {"rate": 0},
        {"gate_ms": -1},
        {"parts": 0},
        {"first_id": -1},
        {"camera": "a/b"},
        {"session_expiry_s": -1},
    ):
        with pytest.raises(ValueError):
            PlcSimulator("mqtt://127.0.0.1:1", **kwargs)  # type: ignore[arg-type]


def test_report_matches_the_truth_with_the_real_pipeline(broker: EmbeddedBroker, yolo11n_onnx: Path) -> None:
    """The real pipeline (synthetic PCB line, a small test model) with the link as its sink, the simulator
    following it: the simulator's escapes and false rejects are exactly those of the verdicts against the truth.
    (The command-line version, `inspector plc-sim` against `inspector run`, waits for `inspector run` to start the
    link from the config's `mqtt` section.)"""
    from inspector.config import CameraConfig, LineConfig, ModelConfig, PipelineConfig, SyntheticConfig
    from inspector.line import build_line
    from inspector.sim import SyntheticSource
    from inspector.sources import Paced
    from tests.mqtt_helpers import Recorder

    parts = 24
    synthetic = SyntheticConfig(seed=7, defect_rate=0.5, size=320)
    config = LineConfig(
        camera=CameraConfig(id="camP", synthetic=synthetic),
        model=ModelConfig(path=yolo11n_onnx, conf=0.05),
        pipeline=PipelineConfig(gate_ms=3000.0),
    )
    pipeline = build_line(config, source=Paced(SyntheticSource(synthetic, limit=parts), 8, read_first=True))
    link = PlcLink(
        mqtt_config(broker.url),
        "camP",
        commands=pipeline,
        status=lambda: {"ready": pipeline.ready(), "counters": pipeline.ledger.snapshot()},
    )
    pipeline.add_sink(link)
    link.start()
    assert link.wait_connected(WAIT_S)
    with Recorder(broker.url, ["inspector/line1/camP/#"]) as rec:
        sim = PlcSimulator(broker.url, camera="camP", rate=8, gate_ms=3000, parts=parts, grace_s=0.5)
        sim.start()
        pipeline.start()
        try:
            assert sim.wait(90), sim.report()
        finally:
            report = sim.stop()
            pipeline.stop()
            link.stop()
        verdicts = {v["part_id"]: v for v in rec.payloads("verdict")}
        rejects = {r["part_id"]: r["reject"] for r in rec.payloads("reject")}
    assert len(verdicts) == parts and all("truth" in v for v in verdicts.values())
    escapes = sorted(i for i, v in verdicts.items() if v["truth"] and not rejects[i])
    false_rejects = sorted(i for i, v in verdicts.items() if not v["truth"] and rejects[i])
    assert report.parts == parts and report.missing_answers == 0 and report.truth_known == parts
    assert report.defective == sum(v["truth"] for v in verdicts.values()) > 0
    assert report.rejected == sum(rejects.values())
    assert sorted(report.escape_ids) == escapes and sorted(report.false_reject_ids) == false_rejects
