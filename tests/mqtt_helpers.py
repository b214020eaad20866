"""Helpers for the MQTT tests: a real Mosquitto on a free loopback port, an independent subscriber, a command
double and a fake inspector for the PLC simulator.

The test modules wrap these in their own small fixtures (no conftest needed), e.g.:

    @pytest.fixture
    def broker(tmp_path):
        with mosquitto(tmp_path) as b:
            yield b

Run as a program it is the "inspector" process of the kill -9 test:

    python -m tests.mqtt_helpers link URL CAMERA KEEPALIVE_S      # prints READY once connected, then sleeps
"""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from inspector.broker import EmbeddedBroker, find_mosquitto
from inspector.config import MqttConfig
from inspector.plc import PlcLink, parse_mqtt_url
from inspector.types import Decision, Detections, Timings, Verdict

WAIT_S = 20.0  # generous: the test machine is shared with a training job


# -- brokers -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def mosquitto(workdir: Path, *, persistence: bool = False, **kwargs: Any) -> Iterator[EmbeddedBroker]:
    """A real Mosquitto on a free loopback port in `workdir`; fails (not skips) when it is not installed."""
    if find_mosquitto() is None:
        raise RuntimeError("these tests need Mosquitto: apt-get install mosquitto mosquitto-clients")
    broker = EmbeddedBroker(kind="mosquitto", persistence=persistence, workdir=workdir, **kwargs)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@contextlib.contextmanager
def amqtt_broker(workdir: Path) -> Iterator[EmbeddedBroker]:
    """amqtt (MQTT 3.1.1 only) on a free loopback port."""
    broker = EmbeddedBroker(kind="amqtt", workdir=workdir)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def wait_saved(broker: EmbeddedBroker, after: float, timeout_s: float = WAIT_S, quiet_s: float = 0.3) -> None:
    """Wait until a persistent Mosquitto wrote its database after wall time `after` (take it before the change)
    and stopped writing: no `mosquitto.db.new` and the same mtime for `quiet_s`. It saves after every change, in
    the loop that acknowledged it, so a quiet database holds every change acknowledged before the call; a kill -9
    during a save (its fsync can take long on a busy disk) leaves the previous one."""
    assert broker.workdir is not None
    db = broker.workdir / "mosquitto.db"
    partial = broker.workdir / "mosquitto.db.new"
    deadline = time.monotonic() + timeout_s
    last: float | None = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        # File times come from the kernel's coarse clock, a tick behind time.time(): allow 50 ms.
        mtime = db.stat().st_mtime if db.exists() else None
        if mtime != last or partial.exists():
            last, quiet_since = mtime, time.monotonic()
        elif mtime is not None and mtime > after - 0.05 and time.monotonic() - quiet_since >= quiet_s:
            return
        time.sleep(0.05)
    raise TimeoutError(f"mosquitto did not save {db} within {timeout_s} s")


def mqtt_config(url: str, **overrides: Any) -> MqttConfig:
    """An `mqtt` config section for the tests (short heartbeat, default topics)."""
    values: dict[str, Any] = {"url": url, "heartbeat_s": 1.0, "keepalive_s": 5}
    values.update(overrides)
    return MqttConfig(**values)


class CutProxy:
    """A TCP relay on a free loopback port in front of a broker, whose connections can be cut (a pulled cable):
    `cut()` closes every relayed connection and refuses new ones until `restore()`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._refusing = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._refusing = True
            conns, self._open = self._open, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def restore(self) -> None:
        with self._lock:
            self._refusing = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self._server.close()

    def __enter__(self) -> CutProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):  # one side gone: close both, so the other side notices at once
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


# -- an independent subscriber -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One message as the subscriber got it."""

    topic: str
    payload: bytes
    retain: bool
    properties: dict[str, Any]
    at: float  # time.monotonic()

    def json(self) -> Any:
        return json.loads(self.payload)


class Recorder:
    """A separate paho client that records what arrives on `topics`.

    persistent: MQTT 5 session that survives disconnects (clean_start False, session expiry 300 s), so a broker
    with persistence queues what is published while the recorder is away. Reconnects fast (0.1 s).
    topics: subscribed on every connect; empty: rely on the subscriptions of a persistent session.
    """

    def __init__(
        self,
        url: str,
        topics: list[str],
        *,
        protocol: str = "5",
        persistent: bool = False,
        client_id: str | None = None,
        qos: int = 1,
    ) -> None:
        self.url = url
        self.topics = topics
        self.protocol = protocol
        self.persistent = persistent
        self.qos = qos
        self.client_id = client_id or f"recorder-{id(self):x}"
        self.messages: list[Received] = []
        self.connects = 0
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        kwargs: dict[str, Any] = {} if protocol == "5" else {"clean_session": not persistent}
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=version, **kwargs)
        self.client.reconnect_delay_set(0.1, 0.2)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message

    def start(self, timeout_s: float = WAIT_S) -> Recorder:
        addr = parse_mqtt_url(self.url)
        if self.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            if self.persistent:
                props.SessionExpiryInterval = 300
            self.client.connect_async(addr.host, addr.port, 5, clean_start=not self.persistent, properties=props)
        else:
            self.client.connect_async(addr.host, addr.port, 5)
        self.client.loop_start()
        if not self._subscribed.wait(timeout_s):
            raise TimeoutError(f"recorder did not subscribe to {self.url}")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Recorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            return
        self.connects += 1
        if self.topics:
            client.subscribe([(t, self.qos) for t in self.topics])
        else:  # a persistent session that already holds its subscriptions
            self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        props = dict(msg.properties.json()) if msg.properties is not None else {}
        item = Received(msg.topic, bytes(msg.payload), bool(msg.retain), props, time.monotonic())
        with self._cond:
            self.messages.append(item)
            self._cond.notify_all()

    def on(self, suffix: str) -> list[Received]:
        """Messages whose topic ends with `/suffix`."""
        with self._cond:
            return [m for m in self.messages if m.topic.endswith("/" + suffix)]

    def payloads(self, suffix: str) -> list[Any]:
        return [m.json() for m in self.on(suffix)]

    def wait_for(self, predicate: Callable[[Recorder], bool], timeout_s: float = WAIT_S) -> bool:
        """Wait until `predicate(self)` holds; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if predicate(self):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))

    def wait_count(self, suffix: str, n: int, timeout_s: float = WAIT_S) -> list[Any]:
        """Wait for at least `n` messages on `suffix`; returns their payloads (asserts on timeout)."""
        ok = self.wait_for(lambda r: len(r.on(suffix)) >= n, timeout_s)
        got = self.payloads(suffix)
        assert ok, f"expected {n} message(s) on {suffix}, got {len(got)}: {got[-5:]}"
        return got


def publish(url: str, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1) -> None:
    """Publish one message from a throw-away client and wait for the broker's acknowledgement."""
    addr = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(addr.host, addr.port, 5)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()


class Publisher:
    """A long-lived publishing client (the PLC side of command tests)."""

    def __init__(self, url: str, protocol: str = "5") -> None:
        addr = parse_mqtt_url(url)
        version = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=version)
        self.client.connect(addr.host, addr.port, 5)
        self.client.loop_start()

    def send(self, topic: str, payload: bytes | str, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(WAIT_S)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- doubles -----------------------------------------------------------------------------------------------------


class RecordingCommands:
    """A `PlcCommands` double: records calls; knows the recipes in `recipes`; `fail_on` makes a call raise."""

    def __init__(self, recipes: tuple[str, ...] = ("default", "boardB"), fail_on: str | None = None) -> None:
        self.recipes = recipes
        self.fail_on = fail_on
        self.calls: list[tuple[str, Any]] = []
        self._cond = threading.Condition()

    def _record(self, name: str, arg: Any = None) -> None:
        with self._cond:
            self.calls.append((name, arg))
            self._cond.notify_all()
        if name == self.fail_on:
            raise RuntimeError(f"{name} failed in the test double")

    def trigger(self, part_id: int) -> None:
        self._record("trigger", part_id)

    def pause(self) -> None:
        self._record("pause")

    def resume(self) -> None:
        self._record("resume")

    def set_recipe(self, name: str, source: str = "plc") -> None:
        if name not in self.recipes:
            raise KeyError(name)
        self._record("recipe", name)

    def wait_for(self, call: tuple[str, Any], timeout_s: float = WAIT_S) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while call not in self.calls:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.1))
            return True


def make_verdict(
    part_id: int,
    *,
    reject: bool = False,
    gate_s: float | None = 2.0,
    truth: bool | None = None,
    seq: int | None = None,
    latency_ms: float = 12.0,
    camera_id: str = "cam0",
    defects: int = 0,
    names: dict[int, str] | None = None,
) -> Verdict:
    """A decided part as the pipeline would hand it to the sink, with its gate deadline `gate_s` from now."""
    now = time.monotonic_ns()
    n = max(defects, 1 if reject else 0)
    dets = Detections(
        np.array([[10.0 + i, 20.0, 30.0 + i, 40.0] for i in range(n)], np.float32).reshape(n, 4),
        np.full(n, 0.8, np.float32),
        np.zeros(n, np.int64),
    )
    return Verdict(
        part_id=part_id,
        decision=Decision.REJECT if reject else Decision.PASS,
        reasons=["short"] if reject else [],
        detections=dets,
        kept=np.ones(n, bool),
        thresholds_version=3,
        model_sha256="ab" * 32,
        recipe="default",
        camera_id=camera_id,
        seq=part_id if seq is None else seq,
        deadline_ns=None if gate_s is None else now + int(gate_s * 1e9),
        timings=Timings(captured_ns=now - int(latency_ms * 1e6), decided_ns=now),
        truth=truth,
        names=names or {},
    )


@dataclass
class Plan:
    """How the fake inspector answers one part (default: in time, pass, truth good)."""

    reject: bool = False
    truth: bool | None = False
    skip: bool = False  # never answer
    delay_s: float = 0.0  # answer this late (then without a gate deadline, so the link still sends it)
    twice: bool = False  # answer twice (a QoS 1 duplicate)


@dataclass
class FakeInspector:
    """Stands in for the pipeline behind a `PlcLink`: answers each `cmd/trigger` according to `plans`."""

    gate_s: float
    plans: dict[int, Plan] = field(default_factory=dict)
    link: PlcLink | None = None
    triggers: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Answers go out on our own thread, as the pipeline's dispatch thread would send them.
        self._queue: queue.Queue[tuple[float, int] | None] = queue.Queue()
        self._timers: list[threading.Timer] = []
        self._thread = threading.Thread(target=self._answer_loop, daemon=True)
        self._thread.start()

    # PlcCommands
    def trigger(self, part_id: int) -> None:
        self.triggers.append(part_id)
        received = time.monotonic()
        delay = self.plans.get(part_id, Plan()).delay_s
        if delay > 0:
            timer = threading.Timer(delay, self._queue.put, ((received, part_id),))
            timer.daemon = True
            self._timers.append(timer)
            timer.start()
        else:
            self._queue.put((received, part_id))

    def pause(self) -> None:
        pass

    def resume(self) -> None:
        pass

    def set_recipe(self, name: str, source: str = "plc") -> None:
        raise KeyError(name)

    def answer(self, part_id: int, received: float | None = None) -> None:
        """Answer part `part_id` now as the plan says (also usable without triggers: free-run)."""
        assert self.link is not None
        plan = self.plans.get(part_id, Plan())
        if plan.skip:
            return
        received = time.monotonic() if received is None else received
        # A late answer carries no deadline, so the link sends it and the simulator sees it arrive late.
        gate_s = None if plan.delay_s > 0 else self.gate_s - (time.monotonic() - received)
        verdict = make_verdict(part_id, reject=plan.reject, truth=plan.truth, gate_s=gate_s)
        for _ in range(2 if plan.twice else 1):
            self.link.handle(verdict)

    def _answer_loop(self) -> None:
        while (got := self._queue.get()) is not None:
            received, part_id = got
            self.answer(part_id, received)

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._queue.put(None)
        self._thread.join(timeout=5)


# -- the inspector process of the kill -9 test -------------------------------------------------------------------


def spawn_link(url: str, camera: str, keepalive_s: int) -> subprocess.Popen[str]:
    """Start `python -m tests.mqtt_helpers link ...` and wait until it says READY (connected, birth sent)."""
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.mqtt_helpers", "link", url, camera, str(keepalive_s)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.strip() == "READY":
            return proc
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise RuntimeError(f"link process did not become ready (rc {proc.poll()})")


def _main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] != "link":
        print(__doc__, file=sys.stderr)
        return 2
    _, url, camera, keepalive = argv
    link = PlcLink(mqtt_config(url, keepalive_s=int(keepalive)), camera)
    link.start()
    if not link.wait_connected(WAIT_S):
        return 1
    print("READY", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
