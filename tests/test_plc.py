"""The PLC link against a real Mosquitto (and amqtt for MQTT 3.1.1): what a PLC receives, commands, auth, TLS.

An independent paho subscriber (`Recorder`) checks what arrives; payloads are validated against the JSON Schemas
in inspector/schemas/ that docs/mqtt.md documents.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from inspector.broker import EmbeddedBroker, free_port
from inspector.config import TlsConfig
from inspector.plc import (
    MAX_PART_ID,
    CommandError,
    PlcLink,
    Topics,
    load_schema,
    parse_command,
    parse_mqtt_url,
    redact_url,
)
from tests.mqtt_helpers import (
    WAIT_S,
    Publisher,
    Recorder,
    RecordingCommands,
    amqtt_broker,
    make_verdict,
    mosquitto,
    mqtt_config,
    publish,
)

ROOT = "inspector/line1/cam0/"
SCHEMAS = (
    "verdict",
    "reject",
    "status",
    "heartbeat",
    "event",
    "cmd_error",
    "cmd_trigger",
    "cmd_recipe",
    "cmd_pause",
    "cmd_resume",
)


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name))


def assert_valid(name: str, payload: Any) -> None:
    errors = [e.message for e in validator(name).iter_errors(payload)]
    assert not errors, f"{name} payload {payload} breaks its schema: {errors}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    with mosquitto(tmp_path) as b:
        yield b


@pytest.fixture
def recorder(broker: EmbeddedBroker) -> Iterator[Recorder]:
    with Recorder(broker.url, ["inspector/#"]) as rec:
        yield rec


def start_link(url: str, **kwargs: Any) -> PlcLink:
    camera = kwargs.pop("camera", "cam0")
    config_overrides = kwargs.pop("config", {})
    link = PlcLink(mqtt_config(url, **config_overrides), camera, **kwargs)
    link.start()
    assert link.wait_connected(WAIT_S), f"link did not connect: {link.info()}"
    return link


# -- pure parts --------------------------------------------------------------------------------------------------


def test_parse_mqtt_url_and_redaction() -> None:
    a = parse_mqtt_url("mqtt://plc:s3cret@10.0.0.5:1884")
    assert (a.host, a.port, a.tls, a.username, a.password) == ("10.0.0.5", 1884, False, "plc", "s3cret")
    assert "s3cret" not in repr(a)
    assert parse_mqtt_url("mqtts://broker.local").port == 8883
    assert parse_mqtt_url("mqtts://broker.local").tls
    assert parse_mqtt_url("mqtt://127.0.0.1").port == 1883
    assert redact_url("mqtt://plc:s3cret@host:1") == "mqtt://plc:***@host:1"
    assert redact_url("mqtt://host:1") == "mqtt://host:1"
    with pytest.raises(ValueError, match="mqtt://") as exc:
        parse_mqtt_url("http://u:s3cret@host")
    assert "s3cret" not in str(exc.value)
    with pytest.raises(ValueError, match="no host"):
        parse_mqtt_url("mqtt://")


def test_topics_are_plain_and_checked() -> None:
    t = Topics.of("factory/inspector", "L1", "cam-2")
    assert t.reject == "factory/inspector/L1/cam-2/reject"
    assert t.command("trigger") == "factory/inspector/L1/cam-2/cmd/trigger"
    for bad in ("cam/2", "cam+", "cam#", ""):
        with pytest.raises(ValueError):
            Topics.of("inspector", "line1", bad)
    with pytest.raises(ValueError):
        Topics.of("insp/#", "line1", "cam0")


VALID_COMMANDS: list[tuple[str, bytes, Any]] = [
    ("trigger", b"123", 123),
    ("trigger", b' {"part_id": 0} ', 0),
    ("trigger", str(MAX_PART_ID).encode(), MAX_PART_ID),
    ("recipe", b"boardB", "boardB"),
    ("recipe", b'"boardB"', "boardB"),
    ("recipe", b'{"recipe": "board_B-2.1"}', "board_B-2.1"),
    ("pause", b"", None),
    ("pause", b"{}", None),
    ("resume", b"  ", None),
]

# (command, payload, error kind): each is one kind of malformed command the PLC side might send.
MALFORMED: list[tuple[str, bytes, str]] = [
    ("trigger", b'{"part_id": ', "bad_json"),
    ("trigger", b"twelve", "bad_json"),
    ("trigger", b"", "empty"),
    ("trigger", b"\xff\xfe\x00", "not_utf8"),
    ("trigger", b'"12"', "wrong_type"),
    ("trigger", b"12.5", "wrong_type"),
    ("trigger", b"true", "wrong_type"),
    ("trigger", b"NaN", "bad_json"),
    ("trigger", b"-1", "out_of_range"),
    ("trigger", str(2**64).encode(), "out_of_range"),
    ("trigger", b'{"part_id": 5, "camera": "x"}', "extra_fields"),
    ("trigger", b'{"id": 5}', "missing_field"),
    ("trigger", b"[1, 2]", "wrong_type"),
    ("trigger", b"[" * 3000 + b"]" * 3000, "too_large"),
    ("trigger", b"[" * 2000 + b"]" * 2000, "bad_json"),
    ("explode", b"{}", "unknown_command"),
    ("recipe", b"nosuchboard", "unknown_recipe"),
    ("recipe", b'{"recipe": "../etc/passwd"}', "bad_name"),
    ("recipe", b'{"recipe": 7}', "wrong_type"),
    ("recipe", b"", "empty"),
    ("pause", b'{"now": true}', "extra_fields"),
    ("resume", b"1", "unexpected_payload"),
]


@pytest.mark.parametrize(("command", "payload", "expected"), VALID_COMMANDS)
def test_parse_command_accepts(command: str, payload: bytes, expected: Any) -> None:
    assert parse_command(command, payload) == (command, expected)
    # The schema a PLC programmer reads agrees (empty pause/resume payloads are not JSON: documented).
    text = payload.decode().strip()
    if text:
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = text  # a bare recipe name
        assert_valid(f"cmd_{command}", doc)


@pytest.mark.parametrize(("command", "payload", "kind"), [m for m in MALFORMED if m[2] != "unknown_recipe"])
def test_parse_command_refuses(command: str, payload: bytes, kind: str) -> None:
    with pytest.raises(CommandError) as exc:
        parse_command(command, payload)
    assert exc.value.kind == kind
    assert kind in validator("cmd_error").schema["properties"]["error"]["enum"]
    if kind in {"wrong_type", "out_of_range", "extra_fields", "missing_field", "bad_name"}:
        assert not validator(f"cmd_{command}").is_valid(json.loads(payload)), "schema accepts what the code refuses"


def test_retained_commands_are_refused() -> None:
    with pytest.raises(CommandError) as exc:
        parse_command("pause", b"", retain=True)
    assert exc.value.kind == "retained"


def test_schemas_are_valid_json_schemas() -> None:
    for name in SCHEMAS:
        Draft202012Validator.check_schema(load_schema(name))


def test_contract_needs_no_paho_and_old_import_paths_still_work() -> None:
    """`inspector.plc.contract` (topics, payloads, command parsing) imports without paho; `inspector.broker` is the
    same object as before the package split."""
    code = (
        "import sys\n"
        "from inspector.plc import Topics, parse_command, verdict_payload\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'paho'], 'paho imported'\n"
        "import inspector.broker, inspector.plc.broker\n"
        "from inspector import broker\n"
        "assert inspector.broker is inspector.plc.broker is broker\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)


def test_production_link_does_not_import_the_ground_truth() -> None:
    """Ground truth is the demo's and the simulator's business (`inspector.truth`); the link only passes on the flag
    a verdict record carries."""
    code = (
        "import sys\n"
        "import inspector.plc.link, inspector.service\n"
        "assert 'inspector.plc.link' in sys.modules\n"
        "assert 'inspector.truth' not in sys.modules, 'inspector.truth imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parent.parent)


def test_link_needs_a_url() -> None:
    with pytest.raises(ValueError, match="EmbeddedBroker"):
        PlcLink(mqtt_config("mqtt://x").model_copy(update={"url": None}), "cam0")


# -- against Mosquitto -------------------------------------------------------------------------------------------


def test_reject_and_verdict_for_every_part(broker: EmbeddedBroker, recorder: Recorder) -> None:
    link = start_link(broker.url)
    try:
        verdicts = [
            make_verdict(i, reject=i % 2 == 1, gate_s=3.0, truth=i % 2 == 1, names={0: "short"}) for i in range(6)
        ]
        for v in verdicts:
            link.handle(v)
        rejects = recorder.wait_count("reject", 6)
        full = recorder.wait_count("verdict", 6)
    finally:
        link.stop()
    assert [r["part_id"] for r in rejects] == list(range(6))
    assert [r["reject"] for r in rejects] == [False, True] * 3, "a pass is answered too (reject: false)"
    assert [r["reason"] for r in rejects] == ["", "short"] * 3
    for r, v in zip(rejects, verdicts, strict=True):
        assert_valid("reject", r)
        assert r["gate_ts"] == pytest.approx(time.time() + (v.deadline_ns - time.monotonic_ns()) / 1e9, abs=0.5)
        assert v.timings.published_ns >= v.timings.decided_ns > 0
    for msg in recorder.on("reject"):
        expiry = msg.properties.get("MessageExpiryInterval")
        assert expiry is not None and 1 <= expiry <= 3, "MQTT 5 expiry = whole seconds left to the gate"
    for f in full:
        assert_valid("verdict", f)
    assert full[1]["defects"] == [{"class": "short", "confidence": 0.8, "xyxy": [10.0, 20.0, 30.0, 40.0]}]
    assert full[1]["decision"] == "reject" and full[1]["truth"] is True and full[0]["truth"] is False
    assert full[0]["model"] == "ab" * 32 and full[0]["thresholds_version"] == 3
    assert full[0]["latency_ms"] == pytest.approx(12.0, abs=0.01)
    # The reject, the time-critical message, goes out before the verdict of the same part.
    order = [
        (m.topic.rsplit("/", 1)[1], m.json()["part_id"])
        for m in recorder.messages
        if m.topic.endswith(("/reject", "/verdict"))
    ]
    for i in range(6):
        assert order.index(("reject", i)) < order.index(("verdict", i))
    stats = link.stats()
    assert stats["sent"] == 12 and stats["queued"] == 0 and stats["late"] == 0


def test_reject_past_its_gate_is_not_sent(broker: EmbeddedBroker, recorder: Recorder) -> None:
    link = start_link(broker.url)
    try:
        link.handle(make_verdict(1, reject=True, gate_s=-0.01))  # decided after the part passed the gate
        link.handle(make_verdict(2, reject=True, gate_s=3.0))
        link.handle(make_verdict(3, gate_s=None))  # no deadline: always answered, no expiry
        recorder.wait_count("verdict", 3)
        rejects = recorder.wait_count("reject", 2)
    finally:
        link.stop()
    assert [r["part_id"] for r in rejects] == [2, 3]
    assert rejects[1]["gate_ts"] is None
    assert "MessageExpiryInterval" not in recorder.on("reject")[1].properties
    assert link.stats()["late"] == 1 and link.late_part_ids() == [1]


def test_birth_retained_and_offline_on_clean_stop(broker: EmbeddedBroker) -> None:
    link = start_link(broker.url)
    with Recorder(broker.url, [ROOT + "status"]) as late_joiner:  # subscribes after the birth: gets it retained
        online = late_joiner.wait_count("status", 1)[0]
        assert late_joiner.on("status")[0].retain
        assert online["status"] == "online" and online["protocol"] == "5"
        assert_valid("status", online)
        link.stop()
        offline = late_joiner.wait_count("status", 2)[1]
    assert offline["status"] == "offline" and offline["reason"] == "stopped"
    assert_valid("status", offline)
    with Recorder(broker.url, [ROOT + "status"]) as after:
        assert after.wait_count("status", 1)[0]["status"] == "offline", "offline must be retained"


def test_heartbeat_carries_ready_counters_and_processing_time(broker: EmbeddedBroker, recorder: Recorder) -> None:
    state = {"ready": True, "counters": {"parts": 0, "rejected": 0}, "paused": False}
    link = start_link(broker.url, status=lambda: dict(state), config={"heartbeat_s": 0.2})
    try:
        recorder.wait_count("heartbeat", 1)
        for i, ms in enumerate((10.0, 20.0, 30.0)):
            link.handle(make_verdict(i, latency_ms=ms))
        state["counters"] = {"parts": 3, "rejected": 0}
        state["ready"] = False
        assert recorder.wait_for(
            lambda r: any(h["counters"]["parts"] == 3 and not h["ready"] for h in r.payloads("heartbeat"))
        )
        beats = recorder.payloads("heartbeat")
    finally:
        link.stop()
    for b in beats:
        assert_valid("heartbeat", b)
    assert beats[0]["ready"] is True and beats[0]["pipeline"] == {"paused": False}
    with_parts = [b["processing_ms"] for b in beats if b["processing_ms"]["n"]]
    assert sum(p["n"] for p in with_parts) == 3
    assert min(p["min"] for p in with_parts) == pytest.approx(10.0)
    assert max(p["max"] for p in with_parts) == pytest.approx(30.0)
    assert sum(p["avg"] * p["n"] for p in with_parts) == pytest.approx(60.0)
    seqs = [b["seq"] for b in beats]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_heartbeat_survives_a_failing_status_callback(broker: EmbeddedBroker, recorder: Recorder) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("pipeline not ready")

    link = start_link(broker.url, status=broken, config={"heartbeat_s": 0.2})
    try:
        beats = recorder.wait_count("heartbeat", 2)
    finally:
        link.stop()
    assert beats[0]["ready"] is False
    assert "pipeline not ready" in beats[0]["pipeline"]["status_error"]


def test_malformed_commands_are_answered_and_the_link_keeps_working(broker: EmbeddedBroker, recorder: Recorder) -> None:
    commands = RecordingCommands()
    link = start_link(broker.url, commands=commands)
    plc = Publisher(broker.url)
    try:
        for command, payload, _ in MALFORMED:
            plc.send(ROOT + "cmd/" + command, payload)
        errors = recorder.wait_count("error", len(MALFORMED))
        # The line keeps running: good commands still work, verdicts still go out.
        plc.send(ROOT + "cmd/trigger", b"41")
        plc.send(ROOT + "cmd/pause", b"")
        plc.send(ROOT + "cmd/resume", b"{}")
        plc.send(ROOT + "cmd/recipe", b'{"recipe": "boardB"}')
        assert commands.wait_for(("recipe", "boardB"))
        link.handle(make_verdict(41))
        recorder.wait_count("verdict", 1)
        events = recorder.wait_count("events", 3)
    finally:
        plc.close()
        link.stop()
    assert len({kind for _, _, kind in MALFORMED}) >= 10
    # One answer per malformed command (recipe switches run on their own thread: order may differ there).
    assert collections.Counter((e["topic"], e["error"]) for e in errors) == collections.Counter(
        (ROOT + "cmd/" + command, kind) for command, _, kind in MALFORMED
    )
    for e in errors:
        assert_valid("cmd_error", e)
        assert e["detail"]
    assert sorted(e["count"] for e in errors) == list(range(1, len(MALFORMED) + 1))
    not_utf8 = next(e for e in errors if e["error"] == "not_utf8")
    assert not_utf8["payload"] == "\\xff\\xfe\x00", "non-UTF-8 bytes are shown escaped"
    assert commands.calls == [("trigger", 41), ("pause", None), ("resume", None), ("recipe", "boardB")]
    assert [(e["event"], e["command"]) for e in events] == [
        ("command", "pause"),
        ("command", "resume"),
        ("command", "recipe"),
    ]
    assert events[2]["recipe"] == "boardB"
    for e in events:
        assert_valid("event", e)
    stats = link.stats()
    assert stats["malformed_commands"] == len(MALFORMED) and stats["commands"] == 4


def test_a_failing_command_handler_is_answered_not_fatal(broker: EmbeddedBroker, recorder: Recorder) -> None:
    commands = RecordingCommands(fail_on="pause")
    link = start_link(broker.url, commands=commands)
    try:
        publish(broker.url, ROOT + "cmd/pause", b"")
        error = recorder.wait_count("error", 1)[0]
        publish(broker.url, ROOT + "cmd/trigger", b"7")
        assert commands.wait_for(("trigger", 7))
    finally:
        link.stop()
    assert error["error"] == "command_failed" and "RuntimeError" in error["detail"]


def test_a_repeated_trigger_is_answered_once_and_reported_duplicate(broker: EmbeddedBroker, recorder: Recorder) -> None:
    commands = RecordingCommands()
    link = start_link(broker.url, commands=commands, duplicate_window_s=1.0)
    plc = Publisher(broker.url)
    try:
        plc.send(ROOT + "cmd/trigger", b"5")
        plc.send(ROOT + "cmd/trigger", b'{"part_id": 5}')  # the same part, e.g. re-sent after a reconnect
        plc.send(ROOT + "cmd/trigger", b"6")
        assert commands.wait_for(("trigger", 6))
        error = recorder.wait_count("error", 1)[0]
        time.sleep(1.2)  # past the window: the id may be a new part again (a PLC that restarted its counter)
        plc.send(ROOT + "cmd/trigger", b"5")
        assert _wait_calls(commands, 3)
    finally:
        plc.close()
        link.stop()
    assert_valid("cmd_error", error)
    assert error["error"] == "duplicate" and error["command"] == "trigger" and "part 5" in error["detail"]
    assert error["payload"] == '{"part_id": 5}'
    assert commands.calls == [("trigger", 5), ("trigger", 6), ("trigger", 5)], "one part per trigger in the window"
    assert len(recorder.on("error")) == 1
    stats = link.stats()
    assert stats["duplicate_triggers"] == 1 and stats["commands"] == 3


def test_a_refused_trigger_may_be_retried(broker: EmbeddedBroker, recorder: Recorder) -> None:
    commands = RecordingCommands(fail_on="trigger")  # e.g. the pipeline is in free-run mode
    link = start_link(broker.url, commands=commands)
    try:
        publish(broker.url, ROOT + "cmd/trigger", b"9")
        publish(broker.url, ROOT + "cmd/trigger", b"9")
        errors = recorder.wait_count("error", 2)
    finally:
        link.stop()
    assert [e["error"] for e in errors] == ["command_failed", "command_failed"], "only accepted triggers count"
    assert commands.calls == [("trigger", 9), ("trigger", 9)]


def _wait_calls(commands: RecordingCommands, n: int, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while len(commands.calls) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return len(commands.calls) >= n


def test_a_stale_retained_command_is_not_replayed(broker: EmbeddedBroker, recorder: Recorder) -> None:
    publish(broker.url, ROOT + "cmd/pause", b"{}", retain=True)  # e.g. a PLC program bug, long ago
    with Recorder(broker.url, [ROOT + "cmd/pause"]) as check:  # it is there, retained, for any new subscriber
        assert check.wait_for(lambda r: len(r.on("pause")) == 1 and r.on("pause")[0].retain)
    commands = RecordingCommands()
    link = start_link(broker.url, commands=commands)
    try:
        publish(broker.url, ROOT + "cmd/trigger", b"1")
        assert commands.wait_for(("trigger", 1))
    finally:
        link.stop()
    assert commands.calls == [("trigger", 1)], "the retained pause must not reach the pipeline"
    assert recorder.on("error") == []


def test_events_are_published(broker: EmbeddedBroker, recorder: Recorder) -> None:
    link = start_link(broker.url)
    try:
        link.publish_event({"event": "thresholds", "version": 4, "by": "qa"})
        link.publish_event(
            {
                "event": "recipe_switched",
                "recipe": "boardB",
                "previous_recipe": "boardA",
                "model_sha256": "b" * 64,
                "previous_model_sha256": "a" * 64,
                "thresholds_version": 3,
                "switch_ms": 0.012,
                "model_loaded": False,
                "source": "plc",
            }
        )
        events = recorder.wait_count("events", 2)
    finally:
        link.stop()
    assert [e["seq"] for e in events] == [1, 2]
    assert events[0]["version"] == 4 and events[1]["previous_recipe"] == "boardA"
    for e in events:
        assert_valid("event", e)


def test_offline_queue_is_bounded_counted_and_alarmed(broker: EmbeddedBroker, recorder: Recorder) -> None:
    link = PlcLink(mqtt_config(broker.url, offline_queue=6), "cam0")
    # Not started yet, i.e. not connected: everything queues.
    for i in range(5):
        link.handle(make_verdict(i, gate_s=None))  # 10 messages for a queue of 6
    stats = link.stats()
    assert stats["connected"] is False and stats["overflow"] == 4 and stats["queued"] == 6
    link.start()
    try:
        alarm = recorder.wait_count("events", 1)[0]
        recorder.wait_count("verdict", 3)
        assert link.flush(WAIT_S)
    finally:
        link.stop()
    assert alarm["event"] == "alarm" and alarm["alarm"] == "offline_queue_overflow"
    assert alarm["dropped"] == 4 and alarm["first_part_id"] == 0 and alarm["last_part_id"] == 1
    assert_valid("event", alarm)
    assert [v["part_id"] for v in recorder.payloads("verdict")] == [2, 3, 4], "the oldest messages are dropped"
    assert [r["part_id"] for r in recorder.payloads("reject")] == [2, 3, 4]
    assert link.stats()["overflow"] == 4


def test_overflow_drops_stale_rejects_before_anything_else() -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"  # never answers
    link = PlcLink(mqtt_config(url, offline_queue=4), "cam0")
    link.start()
    try:
        link.handle(make_verdict(1, gate_s=0.05))
        link.handle(make_verdict(2, gate_s=0.05))
        time.sleep(0.2)  # both gates pass while the broker is away
        link.handle(make_verdict(3, gate_s=None))
        stats = link.stats()
    finally:
        link.stop(timeout_s=0.1)
    assert stats["late"] == 2 and stats["overflow"] == 0 and stats["queued"] == 4
    assert link.late_part_ids() == [1, 2]


def test_secrets_never_in_logs_or_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Username/password and TLS with a client certificate; a wrong password is refused and said so; the
    password appears in no log line and not in `info()`."""
    certs = _make_certs(tmp_path)
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), "plc", "s3cret-pw"], check=True, capture_output=True)
    extra = "\n".join(
        [
            f"cafile {certs['ca']}",
            f"certfile {certs['server']}",
            f"keyfile {certs['server_key']}",
            "require_certificate true",
            f"password_file {pwfile}",
        ]
    )
    tls = TlsConfig(ca_file=certs["ca"], cert_file=certs["client"], key_file=certs["client_key"])
    caplog.set_level(logging.DEBUG)
    with mosquitto(tmp_path / "broker", allow_anonymous=False, extra_config=extra) as b:
        url = f"mqtts://127.0.0.1:{b.port}"
        good = PlcLink(mqtt_config(url, username="plc", password="s3cret-pw", tls=tls), "cam0")
        good.start()
        try:
            assert good.wait_connected(WAIT_S), good.info()
            good.handle(make_verdict(5))
            assert good.flush(WAIT_S)
            info = good.info()
        finally:
            good.stop()
        bad = PlcLink(mqtt_config(url, username="plc", password="wrong-pw", tls=tls), "cam1")
        bad.start()
        try:
            deadline = time.monotonic() + WAIT_S
            while bad.info()["last_error"] is None and time.monotonic() < deadline:
                time.sleep(0.05)
            bad_info = bad.info()
        finally:
            bad.stop(timeout_s=0.1)
        no_cert = PlcLink(
            mqtt_config(url, username="plc", password="s3cret-pw", tls=TlsConfig(ca_file=certs["ca"])), "cam2"
        )
        no_cert.start()
        try:
            assert not no_cert.wait_connected(2.0), "the broker requires a client certificate"
        finally:
            no_cert.stop(timeout_s=0.1)
    assert info["tls"] is True and info["auth"] is True and info["username"] == "plc"
    assert good.stats()["sent"] == 2
    assert bad_info["connected"] is False and "authori" in str(bad_info["last_error"]).lower()
    text = caplog.text + json.dumps(info) + json.dumps(bad_info) + repr(good) + repr(good.config)
    assert "s3cret-pw" not in text and "wrong-pw" not in text


def test_url_password_is_used_but_never_shown(broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    link = start_link(broker.url.replace("mqtt://", "mqtt://someone:hunter2@"))
    link.stop()
    assert "hunter2" not in caplog.text + json.dumps(link.info())
    assert link.info()["url"].startswith("mqtt://someone:***@")


def _make_certs(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (EC keys: fast)."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test-ca")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("server", "localhost"), ("client", "inspector")):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}")
        ext = ["-extfile", "san.ext"] if name == "server" else []
        run(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            *ext,
        )
    return {
        "ca": d / "ca.crt",
        "server": d / "server.crt",
        "server_key": d / "server.key",
        "client": d / "client.crt",
        "client_key": d / "client.key",
    }


# -- MQTT 3.1.1 --------------------------------------------------------------------------------------------------


def test_falls_back_to_311_against_amqtt(tmp_path: Path) -> None:
    with amqtt_broker(tmp_path) as b, Recorder(b.url, ["inspector/#"], protocol="3.1.1") as rec:
        # A stale retained command: MQTT 3.1.1 replays it on subscribe; the link must refuse it.
        publish_311(b.url, ROOT + "cmd/pause", b"{}", retain=True)  # (an empty retained payload would clear)
        commands = RecordingCommands()
        link = start_link(b.url, commands=commands)
        try:
            assert link.info()["protocol"] == "3.1.1" and link.stats()["protocol"] == "3.1.1"
            link.handle(make_verdict(9, reject=True, gate_s=5.0))
            reject = rec.wait_count("reject", 1)[0]
            rec.wait_count("verdict", 1)
            status = rec.wait_for(lambda r: any(s["status"] == "online" for s in r.payloads("status")))
            rec.wait_count("error", 1)
            publish_311(b.url, ROOT + "cmd/trigger", b"-3")
            assert rec.wait_for(lambda r: any(e["error"] == "out_of_range" for e in r.payloads("error")))
            publish_311(b.url, ROOT + "cmd/trigger", b"4")
            assert commands.wait_for(("trigger", 4))
            errors = rec.payloads("error")
        finally:
            link.stop()
    assert status
    # (amqtt 0.12 delivers a retained message twice to a new subscription, once per QoS: each is answered.)
    assert {e["error"] for e in errors[:-1]} == {"retained"} and ("pause", None) not in commands.calls
    online = next(s for s in rec.payloads("status") if s["status"] == "online")
    assert online["protocol"] == "3.1.1"
    assert reject["reject"] is True and reject["gate_ts"] > time.time() - 5, "3.1.1 PLCs drop stale answers by gate_ts"
    assert errors[-1]["error"] == "out_of_range"
    assert link.stats()["malformed_commands"] == len(errors), "our own cmd/error must not be taken for a command"


def publish_311(url: str, topic: str, payload: bytes, retain: bool = False) -> None:
    plc = Publisher(url, protocol="3.1.1")
    try:
        plc.send(topic, payload, retain=retain)
    finally:
        plc.close()


def test_falls_back_to_311_when_a_broker_refuses_5() -> None:
    """A broker that answers an MQTT 5 CONNECT with 'unacceptable protocol version' gets a 3.1.1 CONNECT next
    (a socket server reading the protocol level of each CONNECT: 5, then 4)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(WAIT_S)
    levels: list[int] = []

    def serve() -> None:
        for _ in range(2):
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(WAIT_S)
                data = conn.recv(4096)
                i = 1
                while data[i] & 0x80:  # remaining length: a variable-length integer
                    i += 1
                levels.append(data[i + 1 + 6])  # after the protocol name (2-byte length + b"MQTT")
                conn.sendall(bytes([0x20, 0x02, 0x00, 0x01]))  # CONNACK, 3.1.1 style: refused, bad version
                time.sleep(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    link = PlcLink(mqtt_config(f"mqtt://127.0.0.1:{server.getsockname()[1]}"), "cam0", reconnect_min_s=0.1)
    link.start()
    try:
        thread.join(WAIT_S)
    finally:
        link.stop(timeout_s=0.1)
        server.close()
    assert levels == [5, 4]
    assert link.info()["protocol"] == "3.1.1"


def test_expiry_is_rounded_up_to_whole_seconds(broker: EmbeddedBroker, recorder: Recorder) -> None:
    link = start_link(broker.url)
    try:
        link.handle(make_verdict(1, gate_s=0.4))
        link.handle(make_verdict(2, gate_s=2.2))
        recorder.wait_count("reject", 2)
    finally:
        link.stop()
    expiries = [m.properties["MessageExpiryInterval"] for m in recorder.on("reject")]
    # Never 0 (a broker could drop an answer still in time); never more than the time left, rounded up.
    # (The broker forwards the expiry left, in whole seconds, so a second boundary may take one off.)
    assert expiries[0] <= 1 and expiries[1] in (2, 3) and all(e <= math.ceil(2.2) for e in expiries)


class SlowRecipes(RecordingCommands):
    """set_recipe blocks until released, like a recipe whose model takes seconds to load."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def set_recipe(self, name: str, source: str = "plc") -> None:
        assert self.release.wait(WAIT_S)
        super().set_recipe(name, source)


def test_a_slow_recipe_switch_does_not_hold_up_triggers(broker: EmbeddedBroker, recorder: Recorder) -> None:
    commands = SlowRecipes()
    link = start_link(broker.url, commands=commands)
    try:
        publish(broker.url, ROOT + "cmd/recipe", b"boardB")
        publish(broker.url, ROOT + "cmd/trigger", b"17")
        assert commands.wait_for(("trigger", 17)), "a trigger waited behind a recipe switch"
        assert ("recipe", "boardB") not in commands.calls
        commands.release.set()
        assert commands.wait_for(("recipe", "boardB"))
        event = recorder.wait_count("events", 1)[0]
    finally:
        link.stop()
    assert event["command"] == "recipe" and event["recipe"] == "boardB"


def test_a_broker_refusing_a_message_is_counted(tmp_path: Path) -> None:
    """An ACL that forbids the `reject` topic: Mosquitto acknowledges with 'not authorized' (MQTT 5); the link
    counts it as refused, not as sent."""
    acl = tmp_path / "acl"
    acl.write_text(
        "topic readwrite inspector/line1/cam0/status\ntopic readwrite inspector/line1/cam0/verdict\n"
        "topic read inspector/#\n"
    )
    with mosquitto(tmp_path / "b", extra_config=f"acl_file {acl}") as b, Recorder(b.url, ["inspector/#"]) as rec:
        link = start_link(b.url)
        try:
            link.handle(make_verdict(1, reject=True))
            rec.wait_count("verdict", 1)
            assert link.flush(WAIT_S)
            stats = link.stats()
        finally:
            link.stop()
    assert rec.on("reject") == []
    assert stats["refused"] == 1 and stats["sent"] == 2 and stats["queued"] == 0


def test_stop_then_start_again(broker: EmbeddedBroker, recorder: Recorder) -> None:
    commands = RecordingCommands()
    link = PlcLink(mqtt_config(broker.url), "cam0", commands=commands)
    for attempt in range(2):
        link.start()
        assert link.wait_connected(WAIT_S)
        publish(broker.url, ROOT + "cmd/recipe", b"boardB")  # the recipe thread is back too
        assert recorder.wait_for(lambda r, n=attempt + 1: len(r.on("events")) == n)
        link.stop()
    recorder.wait_count("status", 4)
    assert [s["status"] for s in recorder.payloads("status")] == ["online", "offline"] * 2
    assert commands.calls == [("recipe", "boardB")] * 2
