"""The Sparkplug B edge node against a real Mosquitto, checked by a primary host with its own codec
(`tests/sparkplug_host.py`, written from the spec's field numbers; the node encodes with Tahu's .proto).

- the config section: off by default, one clear error naming a bad field;
- the node in-process: STATE handshake, bdSeq across sessions, NDEATH on a clean stop and when the host goes
  offline, a rebirth keeps the bdSeq, parts at once while status waits for its minimum period, commands by name
  and by alias, malformed commands counted without harm;
- acceptance: `inspector run` with two recipes as a child process: no birth before the host is online, NBIRTH
  and DBIRTH, every part's result, rebirth on request, recipe change, pause and resume by DCMD, NDEATH with the
  birth's bdSeq on `kill -9`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from inspector.config import DEFAULT_MODEL, ConfigError, LineConfig, SparkplugConfig, load_config
from inspector.sparkplug import Device, SparkplugNode
from inspector.sparkplug import metrics as m
from tests.mqtt_helpers import Recorder, RecordingCommands, make_verdict, mosquitto
from tests.sparkplug_host import BOOLEAN, DOUBLE, INT32, INT64, STRING, UINT64, ScadaHost, SpbMessage

WAIT_S = 30.0
GROUP, HOST = "plant", "scada1"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Any]:
    with mosquitto(tmp_path) as b:
        yield b


@pytest.fixture
def host(broker: Any) -> Iterator[ScadaHost]:
    scada = ScadaHost(broker.url, HOST, GROUP).start()
    yield scada
    scada.stop()


def seqs_in_order(msgs: list[SpbMessage]) -> None:
    """Spec 3.0: NBIRTH has seq 0, every later message of the node the next one (mod 256)."""
    expected = None
    for msg in msgs:
        if msg.kind == "NDEATH":
            assert msg.seq is None, "NDEATH carries no seq"
            continue
        if msg.kind == "NBIRTH":
            assert msg.seq == 0, msg
        else:
            assert msg.seq == expected, (msg.kind, msg.seq, expected)
        expected = (msg.seq + 1) % 256


# -- config ------------------------------------------------------------------------------------------------------


def test_config_off_by_default_and_one_clear_error_per_bad_field(tmp_path: Path) -> None:
    assert LineConfig().sparkplug.enabled is False
    on = LineConfig.model_validate({"sparkplug": {"enabled": True}}).sparkplug
    assert (on.group_id, on.edge_node_id, on.primary_host_id, on.min_period_s) == ("inspector", None, None, 1.0)

    cases = {
        "group_id": ("a/b", "sparkplug.group_id"),
        "edge_node_id": ("line#1", "sparkplug.edge_node_id"),
        "primary_host_id": ("", "sparkplug.primary_host_id"),
        "min_period_s": (-1, "sparkplug.min_period_s"),
        "enable": (True, "sparkplug.enable"),
    }
    for key, (value, path) in cases.items():
        config = tmp_path / f"{key}.yaml"
        config.write_text(yaml.safe_dump({"sparkplug": {"enabled": True, key: value}}))
        with pytest.raises(ConfigError) as err:
            load_config(config, env={})
        assert [issue.path for issue in err.value.issues] == [path], str(err.value)
        assert err.value.issues[0].line is not None, str(err.value)  # the YAML line of the bad key

    config = tmp_path / "creds.yaml"
    config.write_text(yaml.safe_dump({"sparkplug": {"enabled": True, "username": "u"}}))
    with pytest.raises(ConfigError, match=r"sparkplug \(line 1\): sparkplug\.username/password/tls apply to"):
        load_config(config, env={})


# -- the node in-process -----------------------------------------------------------------------------------------


class FakeLine(RecordingCommands):
    """A camera's pipeline as the node sees it: stats that follow pause/resume and recipe commands."""

    def __init__(self) -> None:
        super().__init__(recipes=("default", "boardB"))
        self.stats: dict[str, Any] = {
            "ledger": {"decided": 0, "passed": 0, "rejected": 0, "failsafe": 0},
            "rates": {"parts_per_s": 0.0},
            "latency_ms": {"p50": 0.0, "p99": 0.0},
            "ready": True,
            "paused": False,
            "camera": {"connected": True},
            "recipe": "default",
            "model_sha256": "ab" * 32,
            "thresholds_version": 3,
            "alarms": [],
        }

    def pause(self) -> None:
        self.stats["paused"] = True
        super().pause()

    def resume(self) -> None:
        self.stats["paused"] = False
        super().resume()

    def set_recipe(self, name: str, source: str = "plc") -> None:
        super().set_recipe(name, source)
        self.stats["recipe"] = name

    def status(self) -> dict[str, Any]:
        return self.stats


def test_node_state_handshake_bdseq_rebirth_commands_and_report_by_exception(broker: Any, host: ScadaHost) -> None:
    line = FakeLine()
    config = SparkplugConfig(
        enabled=True, url=broker.url, group_id=GROUP, primary_host_id=HOST, min_period_s=3600.0, keepalive_s=5
    )
    node = SparkplugNode(config, [Device("cam0", line.status, line)], edge_node_id="line1", line="line1")
    node.start()
    try:
        assert node.wait_connected(WAIT_S)
        # Parts while the host is offline are not published (Sparkplug keeps no queue) but counted.
        node.handle(make_verdict(1))
        host.online()
        assert host.wait_for(lambda h: len(h.of("DBIRTH")) == 1), host.problems
        nbirth, dbirth = host.of("NBIRTH")[0], host.of("DBIRTH")[0]
        assert nbirth.values[m.BD_SEQ] == 0 and nbirth.datatypes[m.BD_SEQ] == INT64
        assert nbirth.values[m.REBIRTH] is False and nbirth.values["Node Info/Line"] == "line1"
        assert dbirth.device == "cam0" and dbirth.named and nbirth.named
        assert set(dbirth.values) == {name for name, _ in m.DEVICE_METRICS}
        # The first part's result is in the birth, as the last part before it.
        assert dbirth.values["Last Part/Part ID"] == 1 and dbirth.values["Last Part/Reject"] is False
        assert dbirth.values["Quality/Yield Percent"] is None  # no part counted yet: null, not 0 %
        assert dbirth.datatypes["Counters/Parts"] == UINT64 and dbirth.datatypes["Alarms/Count"] == INT32
        assert dbirth.datatypes["Latency/P99 ms"] == DOUBLE and dbirth.datatypes["Recipe/Name"] == STRING
        assert node.counts["parts_unsent"] == 1

        # Parts go out at once, one DDATA each, by alias only; status waits for its (long) minimum period.
        line.stats["ledger"] = {"decided": 2, "passed": 1, "rejected": 1, "failsafe": 0}
        node.handle(make_verdict(2, reject=True, truth=True))
        assert host.wait_for(lambda h: h.values("Last Part/Part ID") == [2])
        part = host.of("DDATA")[-1]
        assert not part.named and set(part.values) == {name for name, _ in m.PART_METRICS}
        assert part.values["Last Part/Reason"] == "short" and part.values["Last Part/Truth Defective"] is True
        assert part.values["Last Part/Defect Count"] == 1 and part.values["Last Part/Defect Classes"] == "0"
        assert all(stamp == part.timestamp for stamp in part.timestamps.values())

        # A command's effect is reported at once; commands by name and by alias (as Ignition sends them).
        host.dcmd("line1", "cam0", m.PAUSE_CMD, BOOLEAN, True, by_alias=True)
        assert line.wait_for(("pause", None))
        assert host.wait_for(lambda h: h.latest("State/Paused") is True)
        status = host.of("DDATA")[-1].values
        assert status["Counters/Parts"] == 2 and status["Quality/Yield Percent"] == 50.0
        host.dcmd("line1", "cam0", m.RECIPE_CMD, STRING, "boardB")
        assert line.wait_for(("recipe", "boardB"))
        assert host.wait_for(lambda h: h.latest("Recipe/Name") == "boardB" and h.latest(m.RECIPE_CMD) == "boardB")
        host.dcmd("line1", "cam0", m.RESUME_CMD, BOOLEAN, False)  # a momentary button's release: nothing
        host.dcmd("line1", "cam0", m.RESUME_CMD, BOOLEAN, True)
        assert line.wait_for(("resume", None))

        # Refused commands: reported on Last Error, counted; the node goes on.
        host.dcmd("line1", "cam0", m.RECIPE_CMD, STRING, "nope")
        assert host.wait_for(lambda h: str(h.latest(m.LAST_ERROR)).startswith("unknown_recipe"))
        host.dcmd("line1", "cam0", m.PAUSE_CMD, STRING, "yes")
        assert host.wait_for(lambda h: str(h.latest(m.LAST_ERROR)).startswith("wrong_type"))
        host.send(f"spBv1.0/{GROUP}/NCMD/line1", b"\xff\xff\xff")
        host.send(f"spBv1.0/{GROUP}/DCMD/line1/nocam", [(m.PAUSE_CMD, BOOLEAN, True)])
        assert host.wait_for(lambda _: node.counts["malformed_commands"] == 4), node.counts
        assert line.calls.count(("pause", None)) == 1

        # A STATE older than the last one is stale: ignored. Then a rebirth: same bdSeq, seq from 0.
        host.client.publish(host.state_topic, b'{"online":false,"timestamp":1}', qos=1, retain=True)
        host.rebirth("line1")
        assert host.wait_for(lambda h: len(h.of("DBIRTH")) == 2)
        assert not host.of("NDEATH") and host.of("NBIRTH")[1].values[m.BD_SEQ] == 0
        assert host.of("DBIRTH")[1].values["Recipe/Name"] == "boardB"

        # The host goes offline: NDEATH (this session's bdSeq), reconnect, birth again once it is back (bdSeq 1).
        host.online(False)
        assert host.wait_for(lambda h: len(h.of("NDEATH")) == 1)
        assert host.of("NDEATH")[0].values == {m.BD_SEQ: 0}
        host.online(True)
        assert host.wait_for(lambda h: len(h.of("DBIRTH")) == 3)
        assert host.of("NBIRTH")[2].values[m.BD_SEQ] == 1
        node.handle(make_verdict(3))
        assert host.wait_for(lambda h: h.values("Last Part/Part ID")[-1:] == [3])
    finally:
        node.stop()
    # A clean stop says NDEATH itself, with the bdSeq of its birth.
    assert host.wait_for(lambda h: len(h.of("NDEATH")) == 2)
    assert host.of("NDEATH")[1].values == {m.BD_SEQ: 1}
    seqs_in_order(host.messages)
    assert not host.problems


def test_connection_lost_reconnects_with_the_next_bdseq_in_will_and_birth(broker: Any, host: ScadaHost) -> None:
    """The socket dies under paho (no DISCONNECT): the broker sends the will (bdSeq 0); paho reconnects by itself
    with a will that carries bdSeq 1, and the new NBIRTH says 1; the next death says 1 too."""
    line = FakeLine()
    config = SparkplugConfig(enabled=True, url=broker.url, group_id=GROUP, min_period_s=0.1)
    node = SparkplugNode(config, [Device("cam0", line.status, line)], edge_node_id="line2")
    node.start()
    try:
        for bd_seq in (0, 1):
            assert host.wait_for(lambda h, n=bd_seq + 1: len(h.of("DBIRTH")) == n), host.problems
            assert host.of("NBIRTH")[bd_seq].values[m.BD_SEQ] == bd_seq
            node.handle(make_verdict(10 + bd_seq))
            assert host.wait_for(lambda h, b=bd_seq: h.values("Last Part/Part ID")[-1:] == [10 + b])
            sock = node._client.socket() if node._client is not None else None
            assert sock is not None
            sock.shutdown(socket.SHUT_RDWR)  # as a pulled cable or a crashed peer would, without DISCONNECT
            assert host.wait_for(lambda h, n=bd_seq + 1: len(h.of("NDEATH")) == n)
            assert host.of("NDEATH")[bd_seq].values == {m.BD_SEQ: bd_seq}
        assert host.wait_for(lambda h: len(h.of("DBIRTH")) == 3) and host.of("NBIRTH")[2].values[m.BD_SEQ] == 2
    finally:
        node.stop()
    assert not host.problems


# -- acceptance: `inspector run` as a child process ---------------------------------------------------------------


class Child:
    """`python -m inspector run --config FILE` with its output collected line by line."""

    def __init__(self, config: Path) -> None:
        root = Path(__file__).resolve().parent.parent
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inspector", "run", "--config", str(config), "--log-level", "INFO"],
            cwd=root,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip())
                self._cond.notify_all()

    def wait_line(self, text: str, timeout_s: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not any(text in line for line in self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self._cond.wait(min(left, 0.2))
            return True

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines[-40:])


def test_acceptance_inspector_process_as_a_sparkplug_edge_node(tmp_path: Path, broker: Any, host: ScadaHost) -> None:
    node_id, camera = "lineSP", "camSP"
    config = {
        "camera": {"id": camera, "source": "synthetic", "fps": 6, "synthetic": {"seed": 5, "size": 320}},
        "model": {"path": str(DEFAULT_MODEL)},
        "recipes": {"boardB": {"model": {"path": str(DEFAULT_MODEL)}, "thresholds": {"version": 7}}},
        "pipeline": {"gate_ms": 4000},
        "mqtt": {"url": broker.url, "line": node_id},
        "sparkplug": {"enabled": True, "group_id": GROUP, "primary_host_id": HOST, "min_period_s": 0.2},
        "dashboard": {"enabled": False},
        "store": {"enabled": False},
    }
    path = tmp_path / "line.yaml"
    path.write_text(yaml.safe_dump(config))
    with Recorder(broker.url, [f"inspector/{node_id}/{camera}/verdict"]) as plain:
        child = Child(path)
        try:
            _acceptance(child, host, plain, node_id, camera)
        finally:
            if child.proc.poll() is None:
                child.proc.kill()
            child.proc.wait(10)


def _acceptance(child: Child, host: ScadaHost, plain: Any, node: str, camera: str) -> None:
    # The node is connected and the line runs, but the primary host is not online: no birth, no data.
    assert child.wait_line("Sparkplug edge node lineSP connected (bdSeq 0)"), child.output()
    assert plain.wait_for(lambda r: len(r.on("verdict")) >= 3, WAIT_S), child.output()
    assert host.messages == [] and not host.problems

    host.online()
    assert host.wait_for(lambda h: h.of("DBIRTH")), child.output()
    nbirth, dbirth = host.of("NBIRTH")[0], host.of("DBIRTH")[0]
    bd_seq = nbirth.values[m.BD_SEQ]
    assert bd_seq == 0 and nbirth.seq == 0 and dbirth.seq == 1 and dbirth.device == camera
    assert dbirth.values["Recipe/Name"] == "default" and dbirth.values["Recipe/Thresholds Version"] == 1
    assert len(dbirth.values["Recipe/Model SHA256"]) == 64 and dbirth.values["State/Camera Connected"] is True
    before_birth = dbirth.values["Last Part/Seq"]  # the last part decided before the birth
    assert before_birth is not None

    # Data: parts, and status by exception.
    assert host.wait_for(lambda h: len(h.values("Last Part/Part ID")) >= 3), child.output()
    assert host.wait_for(lambda h: (h.latest("Counters/Parts") or 0) > 0 and h.latest("Rate/Parts per s"))

    # Rebirth on request: NBIRTH with the same bdSeq, then DBIRTH.
    host.rebirth(node)
    assert host.wait_for(lambda h: len(h.of("DBIRTH")) == 2), child.output()
    assert host.of("NBIRTH")[1].values[m.BD_SEQ] == bd_seq

    # Recipe change by DCMD, by alias as Ignition writes a tag: the verdicts follow, and the SCADA sees it.
    host.dcmd(node, camera, m.RECIPE_CMD, STRING, "boardB", by_alias=True)
    assert host.wait_for(lambda h: h.latest("Recipe/Name") == "boardB", 60), child.output()
    assert host.latest("Recipe/Thresholds Version") == 7 and host.latest(m.LAST_ERROR) == ""
    assert plain.wait_for(lambda r: any(p["recipe"] == "boardB" for p in r.payloads("verdict")), WAIT_S)
    host.dcmd(node, camera, m.RECIPE_CMD, STRING, "boardZ")
    assert host.wait_for(lambda h: str(h.latest(m.LAST_ERROR)).startswith("unknown_recipe"))

    # Pause: once the parts in flight are out, every part decided since the birth has its result on Sparkplug,
    # the same as on the plain contract.
    host.dcmd(node, camera, m.PAUSE_CMD, BOOLEAN, True)
    assert host.wait_for(lambda h: h.latest("State/Paused") is True), child.output()

    def settled(h: ScadaHost) -> bool:
        decided = {p["seq"] for p in plain.payloads("verdict")}  # QoS 1 may deliver one twice
        since_birth = {seq for seq in decided if seq > before_birth}  # seq continues across runs: not from 1
        return h.latest("Counters/Parts") == len(decided) and since_birth <= set(h.values("Last Part/Seq"))

    assert host.wait_for(settled, WAIT_S), (host.latest("Counters/Parts"), len(plain.on("verdict")))
    verdicts = {p["seq"]: p for p in plain.payloads("verdict")}
    results = {}
    for msg in host.of("DDATA"):
        if "Last Part/Seq" in msg.values:
            results[msg.values["Last Part/Seq"]] = msg.values
    expected = [seq for seq in verdicts if seq > before_birth]
    assert sorted(results) == sorted(expected), "a part's result is missing or extra on Sparkplug"
    for seq in expected:
        got, want = results[seq], verdicts[seq]
        assert got["Last Part/Part ID"] == want["part_id"]
        assert got["Last Part/Reject"] == (want["decision"] == "reject")
        assert got["Last Part/Decision"] == want["decision"]
        assert got["Last Part/Failsafe"] == want["failsafe"]
        assert got["Last Part/Defect Count"] == len(want["defects"])
        assert got["Last Part/Truth Defective"] == want["truth"]
    assert host.latest("Counters/Rejected") == sum(p["decision"] == "reject" for p in verdicts.values())

    # Resume: parts flow again.
    host.dcmd(node, camera, m.RESUME_CMD, BOOLEAN, True)
    count = len(host.values("Last Part/Seq"))
    assert host.wait_for(lambda h: len(h.values("Last Part/Seq")) >= count + 2), child.output()
    assert host.latest("State/Paused") is False

    # Death: kill -9; the broker publishes the will, NDEATH with the bdSeq of the birth.
    child.proc.send_signal(signal.SIGKILL)
    child.proc.wait(10)
    assert host.wait_for(lambda h: h.of("NDEATH")), child.output()
    assert host.of("NDEATH")[0].values == {m.BD_SEQ: bd_seq}
    seqs_in_order(host.messages)
    assert not host.problems


def test_demo_sparkplug_switch_births_and_sends_every_part(broker: Any) -> None:
    """`inspector demo --sparkplug`: the edge node births before the first part, every part's result arrives,
    and the clean stop ends with NDEATH."""
    scada = ScadaHost(broker.url, "demo-host", "inspector").start()
    try:
        root = Path(__file__).resolve().parent.parent
        argv = ["--parts", "12", "--rate", "6", "--port", "0", "--mqtt", broker.url, "--sparkplug"]
        done = subprocess.run(
            [sys.executable, "-m", "inspector", "demo", *argv],
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "Sparkplug B edge node spBv1.0/inspector/+/demo (device cam0)" in done.stderr
        assert scada.wait_for(lambda h: h.of("NDEATH"))
        kinds = [msg.kind for msg in scada.messages]
        assert kinds[:2] == ["NBIRTH", "DBIRTH"] and kinds[-1] == "NDEATH"
        assert scada.of("DBIRTH")[0].values["Last Part/Part ID"] is None  # born before the first part
        assert sorted(scada.values("Last Part/Seq")) == list(range(1, 13))
        seqs_in_order(scada.messages)
        assert not scada.problems
    finally:
        scada.stop()
