"""`SparkplugNode`: a Sparkplug B 3.0 edge node (the line) with one device per camera, and a pipeline sink.

Session: every MQTT connection carries an NDEATH will with the session's `bdSeq` (0..255, one more per new
connection); NBIRTH repeats that `bdSeq`, so a host can tell which death ends which birth. With a primary host
configured, the node subscribes to `spBv1.0/STATE/<host>` and births only while the host says online; when the
host goes offline the node publishes NDEATH, disconnects and connects again (next `bdSeq`), then waits for it.
Births: NBIRTH (seq 0) then a DBIRTH per device, on connect and on `Node Control/Rebirth`; a rebirth keeps the
`bdSeq` (same connection, same will). Every message after NBIRTH takes the next `seq` (mod 256).

Data: each part is one DDATA of `Last Part/...` metrics, sent at once from `handle()` (the dispatch thread).
Status metrics (counters, rate, latency, ready, recipe, alarms) are reported by exception by a worker thread: only
those that changed, at most once per `min_period_s`. Sparkplug keeps no offline queue: while the node is not born
(broker away, host offline) parts are counted `unsent`; the plain MQTT link is the contract that never loses one.

Threads: paho's network thread runs the callbacks, which only record state and hand commands on; the worker
publishes births and status; `handle()` publishes part results. The `Sender` orders `seq` with the wire; the
state lock `_lock` is never held while calling paho, nor while taking the sender's lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

import inspector
from inspector.config import SparkplugConfig
from inspector.plc.client import ProtocolName, new_client, parse_mqtt_url, redact_url
from inspector.plc.contract import PlcCommands
from inspector.sparkplug import metrics as m
from inspector.sparkplug.commands import Action, CommandRunner, device_actions, node_actions
from inspector.sparkplug.payloads import PayloadError, decode_command, parse_state, state_topic
from inspector.sparkplug.sender import Sender
from inspector.throttled_log import ThrottledLog
from inspector.types import Verdict

__all__ = ["Device", "SparkplugNode"]

log = logging.getLogger(__name__)


@dataclass
class Device:
    """A camera as a Sparkplug device. status: its pipeline's `stats()`; commands: where DCMDs go (None: none)."""

    id: str
    status: Callable[[], Mapping[str, Any]]
    commands: PlcCommands | None = None
    last_error: str = ""


class SparkplugNode:
    """The edge node of one line (`name = "sparkplug"`, `handle(verdict)`, `close()`).

    config: the `sparkplug` section with `url` set (the service fills in the `mqtt` broker when it is None).
    edge_node_id: the node's id (the service: `sparkplug.edge_node_id` or `mqtt.line`). line: reported in NBIRTH.
    protocol: "5" or "3.1.1" (Sparkplug 3.0 allows both; the embedded amqtt broker speaks only 3.1.1).
    """

    name = "sparkplug"

    def __init__(
        self,
        config: SparkplugConfig,
        devices: Sequence[Device],
        *,
        edge_node_id: str,
        line: str = "",
        protocol: ProtocolName = "5",
        bd_seq: int = 0,
    ) -> None:
        if not config.url:
            raise ValueError("sparkplug.url is not set (the service uses the mqtt section's broker)")
        if not devices:
            raise ValueError("a Sparkplug edge node needs at least one device")
        self.config = config
        self.edge_node_id = edge_node_id
        self.line = line
        self.protocol = protocol
        self.address = parse_mqtt_url(config.url)
        self.client_id = config.client_id or f"inspector-spb-{config.group_id}-{edge_node_id}"
        self._password = config.password.get_secret_value() if config.password is not None else None
        self.devices = {d.id: d for d in devices}
        self._out = Sender(config.group_id, edge_node_id, list(self.devices), self._lost)
        self._aliases_node = {s.alias: s.name for s in m.node_metrics()}
        self._aliases_device = {d: {s.alias: s.name for s in specs.values()} for d, specs in self._out.specs.items()}
        self._rbe = {d.id: m.ReportByException() for d in devices}
        self._group = config.group_id
        self._primary = config.primary_host_id
        self._lock = threading.Condition(threading.Lock())
        self._client: mqtt.Client | None = None
        self._bd_seq = bd_seq % 256  # the bdSeq in the will of the current (or next) connection
        self._connected = False
        self._need_birth = False
        self._restart = False
        self._stopping = False
        self._host_online: bool | None = None
        self._host_ts = -1
        self._last_report = 0.0
        self._report_now = False
        self._worker: threading.Thread | None = None
        handlers = {d.id: d.commands for d in devices if d.commands is not None}
        self._runner = CommandRunner(handlers, self._command_done)
        self._throttled = ThrottledLog(log)
        self.counts = {
            "births": 0,
            "rebirths": 0,
            "parts_sent": 0,
            "parts_unsent": 0,
            "status_sent": 0,
            "commands": 0,
            "malformed_commands": 0,
            "sessions": 0,
            "host_offline": 0,
        }

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; the births follow (at once, or once the primary host is online)."""
        with self._lock:
            if self._worker is not None:
                return
            self._stopping = False
        self._runner.start(f"spb-{self.edge_node_id}-cmd")
        self._open_session()
        self._worker = threading.Thread(target=self._work, name=f"spb-{self.edge_node_id}", daemon=True)
        self._worker.start()
        log.info(
            "Sparkplug edge node %s/%s -> %s (devices %s%s)",
            self._group,
            self.edge_node_id,
            redact_url(self.config.url or ""),
            ", ".join(self.devices),
            f"; primary host {self._primary}" if self._primary else "",
        )

    def stop(self) -> None:
        """Publish NDEATH (a clean stop says so itself, spec 3.0), disconnect, stop the threads. Idempotent."""
        with self._lock:
            if self._worker is None:
                return
            self._stopping = True
            self._lock.notify_all()
            worker, self._worker = self._worker, None
        worker.join(timeout=5.0)
        self._runner.stop()
        self._end_session(say_death=True)
        log.info("Sparkplug edge node %s stopped: %s", self.edge_node_id, self.counts)

    def close(self) -> None:
        """Sink protocol: same as `stop()`."""
        self.stop()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        return self._wait(lambda: self._connected, timeout_s)

    def wait_born(self, timeout_s: float = 10.0) -> bool:
        return self._wait(lambda: self._out.born, timeout_s)

    def _wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.1))
            return True

    def info(self) -> dict[str, Any]:
        """What the dashboard may show (never the password)."""
        with self._lock:
            return {
                "url": redact_url(self.config.url or ""),
                "group_id": self._group,
                "edge_node_id": self.edge_node_id,
                "devices": list(self.devices),
                "primary_host_id": self._primary,
                "host_online": self._host_online,
                "connected": self._connected,
                "born": self._out.born,
                "bd_seq": self._bd_seq,
                **self.counts,
            }

    # -- the sink -----------------------------------------------------------------------------------------------

    def handle(self, verdict: Verdict) -> None:
        """One part's result as a DDATA of its device, at once (dropped and counted while not born)."""
        device = self.devices.get(verdict.camera_id)
        if device is None:
            self._throttled("device", 60, logging.WARNING, "Sparkplug: verdict of unknown camera %s", verdict.camera_id)
            return
        sent = self._out.part(device.id, m.part_values(verdict), m.part_time_ms(verdict))
        with self._lock:
            self.counts["parts_sent" if sent else "parts_unsent"] += 1

    # -- sessions -----------------------------------------------------------------------------------------------

    def _open_session(self) -> None:
        """A new paho client whose CONNECT carries the NDEATH will of the current `bdSeq`."""
        client = new_client(
            protocol=self.protocol,
            client_id=self.client_id,
            address=self.address,
            username=self.config.username,
            password=self._password,
            tls=self.config.tls,
        )
        client.reconnect_delay_set(0.5, 2.0)  # type: ignore[arg-type]
        with self._lock:
            bd_seq = self._bd_seq
        client.will_set(self._out.topic("NDEATH"), self._out.death_payload(bd_seq), qos=1, retain=False)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        with self._lock:
            self._client = self._out.client = client
            self.counts["sessions"] += 1
        if self.protocol == "5":  # spec 3.0: clean start, session expiry 0 (paho's default)
            client.connect_async(self.address.host, self.address.port, self.config.keepalive_s, clean_start=True)
        else:
            client.connect_async(self.address.host, self.address.port, self.config.keepalive_s)
        client.loop_start()

    def _end_session(self, *, say_death: bool) -> None:
        """Publish NDEATH when born (and `say_death`), disconnect and drop the client; the next session's
        `bdSeq` is one more."""
        with self._lock:
            client, self._client = self._client, None
            self._out.client = None
            connected = self._connected
            self._connected = False
            bd_seq = self._bd_seq
            self._bd_seq = (self._bd_seq + 1) % 256
            self._lock.notify_all()
        if client is None:
            return
        if say_death and connected and self._out.born:
            self._out.death(client, bd_seq)
        self._out.born = False
        client.disconnect()
        client.loop_stop()

    def _lost(self) -> None:
        """Paho refused a message (socket gone): birth again once connected."""
        with self._lock:
            self._need_birth = True
            self._lock.notify_all()

    # -- paho callbacks (network thread): record, hand on, never publish ---------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if client is not self._client:
            return
        if reason.is_failure:
            self._throttled("refused", 60, logging.WARNING, "Sparkplug: broker refused the connection: %s", reason)
            return
        subscriptions = [(self._out.topic("NCMD"), 1), (self._out.topic("DCMD") + "/+", 1)]
        if self._primary:
            subscriptions.append((state_topic(self._primary), 1))
        client.subscribe(subscriptions)
        with self._lock:
            self._connected = True
            self._out.born = False
            # Without a primary host, birth now; with one, once its (retained) STATE says online.
            self._need_birth = not self._primary or bool(self._host_online)
            self._lock.notify_all()
        log.info("Sparkplug edge node %s connected (bdSeq %d)", self.edge_node_id, self._bd_seq)

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if client is not self._client:
            return
        with self._lock:
            was = self._connected
            self._connected = False
            self._out.born = False  # without the sender's lock: at worst one DDATA more goes to a dead socket
            self._bd_seq = (self._bd_seq + 1) % 256
            bd_seq = self._bd_seq
            self._lock.notify_all()
        # paho reconnects by itself with the will it holds: the next connection's will carries the next bdSeq.
        client.will_set(self._out.topic("NDEATH"), self._out.death_payload(bd_seq), qos=1, retain=False)
        if was:
            log.warning("Sparkplug edge node %s lost the broker (%s); reconnecting", self.edge_node_id, reason)

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        if client is not self._client:
            return
        try:
            if self._primary and msg.topic == state_topic(self._primary):
                self._on_state(bytes(msg.payload))
            elif msg.topic == self._out.topic("NCMD"):
                actions = node_actions(decode_command(bytes(msg.payload)), self._aliases_node)
                self._accept(actions)
            elif msg.topic.startswith(self._out.topic("DCMD") + "/"):
                device = msg.topic.rsplit("/", 1)[1]
                if device not in self.devices:
                    raise PayloadError("unknown_device", f"no device {device!r} on this node")
                try:
                    metrics = decode_command(bytes(msg.payload))
                    actions = device_actions(device, metrics, self._aliases_device[device])
                except PayloadError as exc:
                    self.devices[device].last_error = f"{exc.kind}: {exc.detail}"
                    raise
                self._accept(actions)
        except PayloadError as exc:
            with self._lock:
                self.counts["malformed_commands"] += 1
                self._report_now = True  # a device's Last Error changed: say so now
                self._lock.notify_all()
            self._throttled("malformed", 10, logging.WARNING, "Sparkplug: refused %s: %s", msg.topic, exc)

    def _on_state(self, payload: bytes) -> None:
        state = parse_state(payload)
        with self._lock:
            if state.timestamp < self._host_ts:
                return  # an older STATE than one already seen (spec 3.0): stale
            self._host_ts = state.timestamp
            was, self._host_online = self._host_online, state.online
            if state.online and self._connected and not self._out.born:
                self._need_birth = True
            elif not state.online and self._connected and self._out.born:
                self._restart = True  # spec 3.0: NDEATH, disconnect, connect again and wait for the host
                self.counts["host_offline"] += 1
            self._lock.notify_all()
        if was != state.online:
            log.info("Sparkplug primary host %s is %s", self._primary, "online" if state.online else "offline")

    def _accept(self, actions: list[Action]) -> None:
        for action in actions:
            with self._lock:
                self.counts["commands"] += 1
                if action.kind == "rebirth":
                    self.counts["rebirths"] += 1
                    self._need_birth = self._connected
                    self._lock.notify_all()
                    continue
            self._runner.submit(action)

    def _command_done(self, action: Action, error: str | None) -> None:
        if action.device in self.devices:
            self.devices[action.device].last_error = error or ""
        with self._lock:
            if error is not None:  # counted like the plain link counts `command_failed`
                self.counts["malformed_commands"] += 1
            self._report_now = True  # report the command's effect now, not after min_period_s
            self._lock.notify_all()

    # -- worker: births, status by exception, host offline -----------------------------------------------------

    def _work(self) -> None:
        period = self.config.min_period_s
        while True:
            with self._lock:
                due = 0.0 if self._report_now else self._last_report + period - time.monotonic()
                if not (self._stopping or self._restart or self._need_birth) and due > 0:
                    self._lock.wait(min(max(due, 0.02), 0.25))
                if self._stopping:
                    return
                restart, self._restart = self._restart, False
                birth = self._need_birth and self._connected and (not self._primary or bool(self._host_online))
                if birth:
                    self._need_birth = False
                report = self._out.born and (self._report_now or time.monotonic() >= self._last_report + period)
                if report:
                    self._report_now = False
            try:
                if restart:
                    log.warning("Sparkplug primary host %s offline: NDEATH, reconnecting", self._primary)
                    self._end_session(say_death=True)
                    self._open_session()
                elif birth:
                    self._birth()
                elif report:
                    self._report()
            except Exception:  # a failing status callback must not end the node
                self._throttled("worker", 60, logging.ERROR, "Sparkplug worker failed", exc_info=True)
                time.sleep(0.5)

    def _device_values(self, device: Device) -> dict[str, m.MetricValue]:
        values = m.status_values(device.status())
        values[m.LAST_ERROR] = device.last_error
        return values

    def _birth(self) -> None:
        """NBIRTH (seq 0, this connection's bdSeq) and a DBIRTH per device with every metric's current value."""
        statuses = {d.id: self._device_values(d) for d in self.devices.values()}
        with self._lock:
            bd_seq = self._bd_seq
        node_values: dict[str, m.MetricValue] = {
            m.BD_SEQ: bd_seq,
            m.REBIRTH: False,
            "Node Info/Software": f"inspector {inspector.__version__}",
            "Node Info/Line": self.line,
        }
        if not self._out.birth(node_values, statuses):
            return
        for device, values in statuses.items():
            self._rbe[device].reset(values)
        with self._lock:
            self.counts["births"] += 1
            self._last_report = time.monotonic()
            self._lock.notify_all()
        log.info("Sparkplug edge node %s born (bdSeq %d)", self.edge_node_id, bd_seq)

    def _report(self) -> None:
        """DDATA with the status metrics that changed since they were last reported."""
        for device in self.devices.values():
            changes = self._rbe[device.id].changes(self._device_values(device))
            if changes and self._out.status(device.id, changes):
                self._rbe[device.id].reported(changes)
                with self._lock:
                    self.counts["status_sent"] += 1
        with self._lock:
            self._last_report = time.monotonic()

    # -- helpers ------------------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"SparkplugNode({self._group!r}, {self.edge_node_id!r}, born={self._out.born})"
