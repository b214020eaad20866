"""The embedded broker: mosquitto when installed, amqtt otherwise; loopback only; kill -9 and restart."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from inspector import broker as broker_mod
from inspector.broker import EmbeddedBroker
from tests.mqtt_helpers import Recorder, mosquitto, publish, wait_saved


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_mosquitto_broker_round_trip_and_stop(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as b:
        assert b.kind == "mosquitto"
        assert b.protocols == ("5", "3.1.1")
        assert b.url == f"mqtt://127.0.0.1:{b.port}"
        conf = (tmp_path / "mosquitto.conf").read_text()
        assert f"listener {b.port} 127.0.0.1" in conf
        with Recorder(b.url, ["t/#"]) as rec:
            publish(b.url, "t/x", b"hello")
            assert rec.wait_for(lambda r: [m.payload for m in r.on("x")] == [b"hello"])
        port = b.port
    assert not _accepts(port), "the broker still listens after stop()"


def test_broker_kill_and_restart_on_the_same_port(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as b:
        port, pid = b.port, b.pid
        b.kill()
        assert not b.running
        assert not _accepts(port)
        b.start()
        assert b.port == port and b.pid != pid
        assert _accepts(port)


def test_persistent_subscriber_survives_broker_kill(tmp_path: Path) -> None:
    """The premise of the outage test: with persistence, a killed and restarted Mosquitto still holds a
    persistent subscription and queues for it while the subscriber is away."""
    with mosquitto(tmp_path, persistence=True) as b:
        before = time.time()
        rec = Recorder(b.url, ["t/#"], persistent=True).start()
        wait_saved(b, after=before)  # a save with the subscription in it
        rec.stop()
        b.kill()
        b.start()
        publish(b.url, "t/queued", b"while away")
        # Same client id, no new subscription: only the restored session can deliver this message.
        with Recorder(b.url, [], persistent=True, client_id=rec.client_id) as rec2:
            assert rec2.wait_for(lambda r: len(r.on("queued")) == 1)


def test_acknowledged_messages_survive_a_broker_kill(tmp_path: Path) -> None:
    """Mosquitto acknowledges QoS 1 once a message is in memory: with its time-based autosave (1 s) a kill -9 just
    after 50 acknowledgements lost all 50 queued for an offline subscriber (measured). The embedded broker saves
    after every change, in the loop that sent the acknowledgement: 0.1 s later it has saved or is saving."""
    with mosquitto(tmp_path, persistence=True) as b:
        before = time.time()
        rec = Recorder(b.url, ["t/#"], persistent=True).start()
        wait_saved(b, after=before)
        rec.stop()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.connect("127.0.0.1", b.port, 5)
        client.loop_start()
        try:
            infos = [client.publish("t/acked", str(i), qos=1) for i in range(50)]
            for info in infos:
                info.wait_for_publish(10)
                assert info.is_published()
            time.sleep(0.1)
            deadline = time.monotonic() + 10
            while (tmp_path / "mosquitto.db.new").exists() and time.monotonic() < deadline:
                time.sleep(0.01)  # a save in progress (its fsync can take long on a busy disk)
            b.kill()
        finally:
            client.loop_stop()
        b.start()
        with Recorder(b.url, [], persistent=True, client_id=rec.client_id) as rec2:
            rec2.wait_for(lambda r: len(r.on("acked")) >= 50)
            assert {m.payload for m in rec2.on("acked")} == {str(i).encode() for i in range(50)}


def test_amqtt_broker_serves_311(tmp_path: Path) -> None:
    with EmbeddedBroker(kind="amqtt", workdir=tmp_path) as b:
        assert b.kind == "amqtt" and b.protocols == ("3.1.1",)
        with Recorder(b.url, ["t/#"], protocol="3.1.1") as rec:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
            client.connect("127.0.0.1", b.port)
            client.loop_start()
            client.publish("t/y", b"311", qos=1).wait_for_publish(10)
            client.disconnect()
            client.loop_stop()
            assert rec.wait_for(lambda r: [m.payload for m in r.on("y")] == [b"311"])


def test_amqtt_refuses_mqtt5(tmp_path: Path) -> None:
    """Why the link needs its 3.1.1 fall-back (DESIGN: measured on amqtt 0.12)."""
    with EmbeddedBroker(kind="amqtt", workdir=tmp_path) as b:
        answers: list[int] = []
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason.value)
        client.connect("127.0.0.1", b.port)
        client.loop_start()
        deadline = time.monotonic() + 10
        while not answers and time.monotonic() < deadline:
            time.sleep(0.05)
        client.disconnect()
        client.loop_stop()
        assert answers and answers[0] == 132  # Unsupported protocol version


def test_auto_uses_amqtt_when_mosquitto_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no mosquitto on it
    monkeypatch.setattr(broker_mod, "_SBIN_CANDIDATES", ())
    assert broker_mod.find_mosquitto() is None
    assert EmbeddedBroker().kind == "amqtt"
    with pytest.raises(broker_mod.BrokerError, match="mosquitto is not installed"):
        EmbeddedBroker(kind="mosquitto")


def test_auto_prefers_mosquitto() -> None:
    assert broker_mod.find_mosquitto() is not None, "Mosquitto must be installed for the test suite"
    assert EmbeddedBroker().kind == "mosquitto"


def test_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        EmbeddedBroker(host="0.0.0.0")


def test_start_failure_names_the_cause(tmp_path: Path) -> None:
    b = EmbeddedBroker(kind="mosquitto", workdir=tmp_path, extra_config="no_such_option 1", start_timeout_s=5)
    with pytest.raises(broker_mod.BrokerError, match=r"exited with \d+ on mqtt:.*\n.*no_such_option"):
        b.start()
    assert not b.running
