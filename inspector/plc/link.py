"""The MQTT link to the line's PLC, a pipeline sink: verdicts and reject signals out, commands in, heartbeats.

docs/mqtt.md is the contract (`inspector.plc.contract` writes it in code). `PlcLink` puts the pieces together:
the `Connection` (paho client, reconnect, protocol fall-back), the `Outbox` (offline queue, gate deadlines) and
the `CommandDispatcher`.

Threads: `handle()` runs on the pipeline's dispatch thread and only builds two small JSON payloads and either
hands them to paho (connected, nothing queued) or appends them to the bounded offline queue. A worker thread
drains that queue after a reconnect, publishes heartbeats and alarms, and switches to MQTT 3.1.1 when a broker
refuses 5. Paho's network thread runs the callbacks (connect, disconnect, commands); recipe switches run on a
thread of their own.

No lost verdict: every QoS >= 1 message stays ours until the broker acknowledged it (`inspector.plc.queue`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from inspector.config import MqttConfig
from inspector.plc.commands import DUPLICATE_WINDOW_S, CommandDispatcher
from inspector.plc.connection import Connection
from inspector.plc.contract import (
    PlcCommands,
    ProcessingWindow,
    Topics,
    camera_payload,
    dumps,
    event_payload,
    heartbeat_payload,
    reject_payload,
    verdict_payload,
    wall_from_monotonic_ns,
)
from inspector.plc.queue import Item, Outbox
from inspector.plc.tally import VerdictTally
from inspector.redact import redact_obj
from inspector.types import Verdict

__all__ = ["PlcLink"]

log = logging.getLogger(__name__)

_COUNTS_LOGGED = ("sent", "queued", "late", "overflow", "reconnects", "malformed_commands")


class PlcLink:
    """The MQTT link of one camera, and a pipeline sink (`name = "plc"`, `handle(verdict)`, `close()`).

    config: the line's `mqtt` section (`url` must be set: start an `EmbeddedBroker` and pass its URL otherwise).
    commands: the pipeline's command handler; None subscribes to no commands.
    status: returns the pipeline's state for the heartbeat: `{"ready": bool, "counters": {name: int}, ...}`;
        other keys are passed on under `pipeline`.
    reconnect_min_s / reconnect_max_s: back-off between reconnect attempts (doubling); not yet in MqttConfig.
    flush_timeout_s: how long `stop()` waits for queued messages to be acknowledged.
    duplicate_window_s: a `cmd/trigger` repeating a part id within this window is answered `duplicate` on
        `cmd/error` and makes no second part.
    dashboard_url: the line's dashboard, announced in every heartbeat once set (the service sets it when the
        dashboard is up); None announces none.
    """

    name = "plc"

    def __init__(
        self,
        config: MqttConfig,
        camera_id: str,
        commands: PlcCommands | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        *,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 2.0,
        flush_timeout_s: float = 5.0,
        duplicate_window_s: float = DUPLICATE_WINDOW_S,
    ) -> None:
        if not config.url:
            raise ValueError("mqtt.url is not set: start inspector.broker.EmbeddedBroker and use its url")
        self.config = config
        self.camera_id = camera_id
        self.commands = commands
        self.status = status
        self.topics = Topics.of(config.prefix, config.line, camera_id)
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_min_s)
        self.flush_timeout_s = flush_timeout_s
        # One lock for the state of the link, its connection and its queue; never held while calling paho.
        self._lock = threading.Condition(threading.Lock())
        self._out = Outbox(config.offline_queue, config.qos, self._lock)
        self._commands = CommandDispatcher(
            commands,
            self.topics,
            answer=self._answer,
            event=self.publish_event,
            duplicate_window_s=duplicate_window_s,
        )
        self._conn = Connection(
            config,
            camera_id,
            self.topics,
            lock=self._lock,
            outbox=self._out,
            on_command=self._commands.receive if commands is not None else None,
            reconnect_s=(self.reconnect_min_s, self.reconnect_max_s),
        )
        self.address = self._conn.address
        self.client_id = self._conn.client_id
        self._started = False
        self._worker: threading.Thread | None = None
        self._window = ProcessingWindow()
        self._tally = VerdictTally()
        self.dashboard_url: str | None = None
        self._started_mono = time.monotonic()
        self._verdicts = 0
        self._event_seq = 0
        self._heartbeat_seq = 0

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (returns at once); birth, commands and the offline queue follow on
        connect. MQTT 5 first; with `protocol: auto` a broker that refuses 5 gets 3.1.1."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._started_mono = time.monotonic()
        self._conn.start()
        self._worker = threading.Thread(target=self._work, name=f"plc-{self.camera_id}", daemon=True)
        self._worker.start()
        if self.commands is not None:
            self._commands.start(f"plc-{self.camera_id}-cmd")
        log.info(
            "PLC link %s -> %s (MQTT %s, client id %s)",
            self.topics.root,
            self._conn.safe_url(),
            self._conn.protocol,
            self.client_id,
        )

    def stop(self, timeout_s: float | None = None) -> None:
        """Flush what is queued (up to `timeout_s`), publish `offline` (retained), disconnect."""
        with self._lock:
            if not self._started:
                return
        timeout_s = self.flush_timeout_s if timeout_s is None else timeout_s
        # Waiting only makes sense while connected; during an outage what is queued is lost (and said so).
        if not (self._conn.connected and self.flush(timeout_s)) and (left := self.stats()["queued"]):
            log.warning("PLC link stopping with %d message(s) not acknowledged by the broker", left)
        self._conn.begin_stop()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        self._commands.stop()
        self._conn.close()
        with self._lock:
            self._started = False
        log.info("PLC link %s stopped: %s", self.topics.root, self._counts_summary())

    def close(self) -> None:
        """Sink protocol: same as `stop()`."""
        self.stop()

    def __enter__(self) -> PlcLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """Block until connected (birth sent) or `timeout_s` passed; True when connected."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while not self._conn.connected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.1))
            return True

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued message has been acknowledged by the broker; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._out.sweep()
            with self._lock:
                if not self._out.pending:
                    return True
                if time.monotonic() >= deadline:
                    return False
                self._lock.notify_all()
                self._lock.wait(0.02)

    # -- the sink -----------------------------------------------------------------------------------------------

    def handle(self, verdict: Verdict) -> None:
        """Publish `reject` then `verdict` for one part (or queue them while the broker is away)."""
        now_ns = time.monotonic_ns()
        now_wall = time.time()
        deadline = verdict.deadline_ns
        gate_ts = wall_from_monotonic_ns(deadline, now_ns, now_wall) if deadline is not None else None
        latency = verdict.timings.latency_ms()
        record = verdict.to_record(now_ns, now_wall)
        items: list[Item] = []
        if deadline is not None and deadline <= now_ns:
            # Too late for the gate: the PLC's missing-answer rule has already rejected this part.
            self._out.count_late(verdict.part_id)
        else:
            body = dumps(reject_payload(record, gate_ts=gate_ts, now_wall=now_wall))
            items.append(Item("reject", self.topics.reject, body, verdict.part_id, deadline, verdict.timings))
        body = dumps(verdict_payload(record, line=self.config.line, gate_ts=gate_ts))
        items.append(Item("verdict", self.topics.verdict, body, verdict.part_id, None, verdict.timings))
        with self._lock:
            self._verdicts += 1
            self._tally.add(verdict)
            if latency > 0:
                self._window.add(latency)
        for item in items:
            self._conn.submit(item)

    def publish_event(self, event: dict[str, Any]) -> None:
        """Publish on `events` (QoS 1, queued while offline): `{"event": "thresholds", ...}` and the like.
        `schema`, `ts` and `seq` are added."""
        with self._lock:
            self._event_seq += 1
            seq = self._event_seq
        # Redacted: an alarm or event may quote a camera URI or an error message (docs: inspector/redact.py).
        self._conn.submit(Item("event", self.topics.events, dumps(redact_obj(event_payload(event, seq=seq)))))

    def publish_camera(self, change: dict[str, Any]) -> None:
        """A camera state change from the pipeline (`{"state": "up" | "lost" | "back", "reason", "source", "since",
        "lost", "down_s"?}`): the retained `camera` topic always, and `events` for a loss or a return."""
        body = dumps(camera_payload(change, camera=self.camera_id))
        self._conn.submit(Item("camera", self.topics.camera, body, retain=True))
        if change["state"] in ("lost", "back"):
            fields = ("state", "reason", "source", "down_s")
            self.publish_event({"event": "camera", **{k: change[k] for k in fields if k in change}})

    # -- introspection ------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Link counters: verdicts (handled), sent (acknowledged by the broker), refused (of those, acknowledged
        with an error reason, MQTT 5: e.g. an ACL), queued (not yet acknowledged), overflow, late, reconnects,
        malformed_commands (answered on `cmd/error`), duplicate_triggers (of those, repeated triggers), commands
        (accepted), connected, protocol."""
        self._out.sweep()
        with self._lock:
            return {
                "verdicts": self._verdicts,
                "sent": self._out.sent,
                "refused": self._conn.refused,
                "queued": self._out.pending,
                "overflow": self._out.overflow,
                "late": self._out.late,
                "reconnects": self._conn.reconnects,
                "malformed_commands": self._commands.malformed,
                "duplicate_triggers": self._commands.duplicates,
                "commands": self._commands.accepted,
                "connected": self._conn.connected,
                "protocol": self._conn.protocol,
            }

    def info(self) -> dict[str, Any]:
        """What the dashboard shows about the link; never the password."""
        with self._lock:
            connected, protocol, error = self._conn.connected, self._conn.protocol, self._conn.last_error
        return {
            "url": self._conn.safe_url(),
            "host": self.address.host,
            "port": self.address.port,
            "tls": self._conn.tls,
            "username": self.config.username or self.address.username,
            "auth": bool(self._conn.password or self.address.password),
            "client_id": self.client_id,
            "topics": self.topics.root,
            "qos": self.config.qos,
            "keepalive_s": self.config.keepalive_s,
            "requested_protocol": self.config.protocol,
            "protocol": protocol,
            "connected": connected,
            "last_error": error,
        }

    def late_part_ids(self) -> list[int]:
        """Part ids whose reject was not sent because their gate had passed (the last 10000)."""
        with self._lock:
            return list(self._out.late_ids)

    # -- worker: drain, heartbeat, alarms, protocol fall-back ---------------------------------------------------

    def _work(self) -> None:
        next_beat = time.monotonic() + self.config.heartbeat_s
        while (state := self._conn.wait_for_work(next_beat)) != "stop":
            if state == "fall_back":
                self._conn.fall_back()
                continue
            self._conn.drain()
            self._out.sweep()
            self._raise_overflow_alarm()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.config.heartbeat_s
                self._heartbeat()

    def _raise_overflow_alarm(self) -> None:
        with self._lock:
            if not self._conn.connected or (overflow := self._out.take_overflow()) is None:
                return
            dropped, first, last = overflow
            total = self._out.overflow
        log.error("PLC link dropped %d message(s) (parts %s..%s) while the broker was away", dropped, first, last)
        self.publish_event(
            {
                "event": "alarm",
                "alarm": "offline_queue_overflow",
                "dropped": dropped,
                "overflow_total": total,
                "first_part_id": first,
                "last_part_id": last,
                "bound": self.config.offline_queue,
            }
        )

    def _heartbeat(self) -> None:
        with self._lock:
            if not self._conn.connected:
                return
            window, self._window = self._window, ProcessingWindow()
            self._heartbeat_seq += 1
            seq = self._heartbeat_seq
            latency, recipes = self._tally.latency_summary(), self._tally.recipes_summary()
        payload = heartbeat_payload(
            seq=seq,
            started_mono=self._started_mono,
            window=window,
            status=self.status,
            link_stats=self.stats,
            dashboard_url=self.dashboard_url,
            latency_ms=latency,
            recipes=recipes,
        )
        self._conn.publish(self.topics.heartbeat, dumps(redact_obj(payload)), qos=0)

    # -- helpers ------------------------------------------------------------------------------------------------

    def _answer(self, payload: bytes) -> None:
        """A command's error answer on `cmd/error`, queued like every other message."""
        self._conn.submit(Item("error", self.topics.cmd_error, payload))

    def _counts_summary(self) -> str:
        s = self.stats()
        return ", ".join(f"{k} {s[k]}" for k in _COUNTS_LOGGED)

    def __repr__(self) -> str:
        return f"PlcLink({self.topics.root!r}, {self._conn.safe_url()!r}, connected={self._conn.connected})"
