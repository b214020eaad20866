"""Credentials in URIs never shown: the rule (`inspector.redact`), then the real thing: `inspector run` with a
password in the camera URI and in the MQTT URL, against a real Mosquitto that needs that password, and every output
grepped for both passwords: the log (DEBUG), `/api/stats` (camera alarm included), `/api/health`, the live stream,
the MQTT status, heartbeats and events, `check-config` (OK line and `--print`) and the demo's banner."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from inspector.auth import hash_password
from inspector.redact import install_log_redaction, redact_obj, redact_text, redact_url
from tests.mqtt_helpers import WAIT_S, Recorder, mosquitto

ROOT = Path(__file__).resolve().parent.parent
CAMERA_PW = "secretpw"
MQTT_PW = "mqttsecretpw"
CAMERA_URI = f"rtsp://user:{CAMERA_PW}@127.0.0.1:1/x"
SHOWN_URI = "rtsp://user:***@127.0.0.1:1/x"
EDITOR = ("qa", "qa-editor-pass")


def no_secret(text: str, where: str) -> None:
    assert CAMERA_PW not in text and MQTT_PW not in text, f"a password in {where}:\n{text[-3000:]}"


# -------------------------------------------------------------------------------------------------- the rule
def test_the_rule() -> None:
    assert redact_url("mqtt://plc:s3cret@host:1") == "mqtt://plc:***@host:1"
    assert redact_url("mqtt://host:1") == "mqtt://host:1"
    assert redact_url("rtsp://cam:p@ss@10.0.0.5:554/live") == "rtsp://cam:***@10.0.0.5:554/live"  # unencoded @
    assert redact_url("rtsp://10.0.0.5/live?user=admin&password=abc&ch=1") == (
        "rtsp://10.0.0.5/live?user=admin&password=***&ch=1"
    )
    assert redact_url("http://cam.local/snap.jpg?token=abc") == "http://cam.local/snap.jpg?token=***"
    text = f"cannot open opencv stream {CAMERA_URI}: timeout; broker 'mqtts://a:{MQTT_PW}@b:8883'"
    assert redact_text(text) == f"cannot open opencv stream {SHOWN_URI}: timeout; broker 'mqtts://a:***@b:8883'"
    assert redact_text("no URI here, a@b.c and x=1") == "no URI here, a@b.c and x=1"
    value = {"camera": {"description": CAMERA_URI, "n": 3}, "alarms": [{"message": f"lost {CAMERA_URI}"}]}
    assert redact_obj(value) == {
        "camera": {"description": SHOWN_URI, "n": 3},
        "alarms": [{"message": f"lost {SHOWN_URI}"}],
    }
    assert redact_obj((1, None, CAMERA_URI)) == (1, None, SHOWN_URI)


def test_log_records_are_redacted_whatever_the_handler(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent
    log = logging.getLogger("tests.redaction")
    with caplog.at_level(logging.INFO, logger="tests.redaction"):
        log.info("opening %s", CAMERA_URI)
        try:
            raise ConnectionError(f"cannot reach {CAMERA_URI}")
        except ConnectionError:
            log.exception("camera failed")
    text = caplog.text
    no_secret(text, "the log")
    assert f"opening {SHOWN_URI}" in text and f"cannot reach {SHOWN_URI}" in text  # the traceback too


# -------------------------------------------------------------------------------------------------- the service
def inspector(*args: str, log: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECTOR_")}
    env.update(YOLO_OFFLINE="1", PYTHONUNBUFFERED="1")
    out = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", "inspector", *args], cwd=ROOT, env=env, text=True, stdout=out, stderr=subprocess.STDOUT
    )


def wait_text(path: Path, pattern: str, proc: subprocess.Popen[str], timeout: float = 120) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if m := re.search(pattern, path.read_text()):
            return m
        assert proc.poll() is None, f"exited {proc.returncode}:\n{path.read_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no {pattern!r} in:\n{path.read_text()[-3000:]}")


def line_yaml(tmp_path: Path, broker_port: int) -> Path:
    path = tmp_path / "line.yaml"
    path.write_text(
        f"""camera:
  source: opencv
  uri: "{CAMERA_URI}"
  open_timeout_s: 1
  read_timeout_s: 1
  reconnect_max_s: 1
mqtt:
  url: "mqtt://inspector:{MQTT_PW}@127.0.0.1:{broker_port}"
  line: red
  heartbeat_s: 0.5
dashboard:
  port: 0
  users:
    {EDITOR[0]}: {{role: editor, password_hash: "{hash_password(EDITOR[1], iterations=1000)}"}}
store:
  path: {tmp_path / "inspector.db"}
  images_dir: {tmp_path / "images"}
"""
    )
    return path


def first_stats_event(client: httpx.Client) -> str:
    with client.stream("GET", "/api/events") as events:
        buffer = ""
        for chunk in events.iter_text():
            buffer += chunk
            if m := re.search(r"event: stats\ndata: (.*)\n\n", buffer):
                return m.group(1)
    raise AssertionError(f"no stats event in {buffer!r}")


def test_no_password_in_any_output(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "inspector", MQTT_PW], check=True, capture_output=True)
    with mosquitto(tmp_path / "broker", allow_anonymous=False, extra_config=f"password_file {passwd}") as broker:
        config = line_yaml(tmp_path, broker.port)
        recorder = Recorder(broker.url, ["inspector/#"])
        recorder.client.username_pw_set("inspector", MQTT_PW)
        outputs: dict[str, str] = {}

        # check-config: the OK line and --print (the camera is not opened; the model is loaded).
        for args in ([], ["--print"]):
            done = subprocess.run(
                [sys.executable, "-m", "inspector", "check-config", str(config), *args],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, done.stderr
            outputs[f"check-config {args}"] = done.stdout + done.stderr
        assert f"opencv {SHOWN_URI}" in outputs["check-config []"]
        printed = json.loads(outputs["check-config ['--print']"].split(f"\n{config}: OK")[0])
        assert printed["camera"]["uri"] == SHOWN_URI
        assert printed["mqtt"]["url"] == f"mqtt://inspector:***@127.0.0.1:{broker.port}"

        with recorder:
            log = tmp_path / "run.log"
            proc = inspector("run", "--config", str(config), "--log-level", "DEBUG", "--stats-every", "1", log=log)
            try:
                url = wait_text(log, r"dashboard (http://\S+)", proc).group(1)
                with httpx.Client(base_url=url, timeout=30) as c:
                    deadline = time.monotonic() + WAIT_S
                    while True:  # the camera alarm quotes the URI: it is there, redacted
                        stats = c.get("/api/stats")
                        alarms = [a for a in stats.json()["alarms"] if a["name"] == "camera"]
                        if alarms and SHOWN_URI in alarms[0]["message"]:
                            break
                        assert time.monotonic() < deadline, stats.text
                        time.sleep(0.2)
                    outputs["/api/stats"] = stats.text
                    assert stats.json()["camera"]["description"] == f"opencv stream {SHOWN_URI}"
                    outputs["/api/health"] = c.get("/api/health").text
                    outputs["/api/events"] = first_stats_event(c)
                    assert SHOWN_URI in outputs["/api/events"]
                    # A thresholds edit: an `events` message on MQTT.
                    assert c.post("/api/login", json={"username": EDITOR[0], "password": EDITOR[1]}).status_code == 200
                    edit = {"version": 1, "thresholds": {"default": {"min_confidence": 0.4}}, "comment": "x"}
                    assert c.put("/api/thresholds", json=edit).status_code == 200
                recorder.wait_count("events", 1)
                recorder.wait_count("heartbeat", 2)
                assert any(p["status"] == "online" for p in recorder.payloads("status"))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            assert proc.returncode == 0, log.read_text()[-3000:]
            assert recorder.wait_for(lambda r: any(p["status"] == "offline" for p in r.payloads("status")))
            outputs["log"] = log.read_text()
            assert SHOWN_URI in outputs["log"] and "cannot open" in outputs["log"]
            for m in recorder.messages:
                outputs[f"mqtt {m.topic}"] = m.payload.decode()

        # The demo's banner and log, on the same password-protected broker.
        demo_log = tmp_path / "demo.log"
        mqtt_url = f"mqtt://inspector:{MQTT_PW}@127.0.0.1:{broker.port}"
        demo = inspector("demo", "--mqtt", mqtt_url, "--parts", "3", "--rate", "5", "--port", "0", log=demo_log)
        assert demo.wait(300) == 0, demo_log.read_text()[-3000:]
        outputs["demo"] = demo_log.read_text()
        assert f"on mqtt://inspector:***@127.0.0.1:{broker.port}" in outputs["demo"]

    assert {"events", "heartbeat", "status"} <= {k.rsplit("/", 1)[-1] for k in outputs if k.startswith("mqtt ")}
    for where, text in outputs.items():
        no_secret(text, where)
