"""The PLC simulator: a conveyor, triggers and a reject gate that scores the inspector's answers over MQTT.

A conveyor carries parts past the camera at `rate` parts a second; each part reaches the reject gate `gate_ms`
after it passed the camera. At the gate the simulator rejects the part when the inspector answered
`reject: true` on the `reject` topic, and also when no answer has arrived (a PLC must fail safe). An answer that
arrives after its part went through the gate is a late answer and changes nothing.

Two ways to know the parts:
- triggered (`trigger=True`): the simulator is the line master. It numbers the parts, publishes each id on
  `cmd/trigger` when the part is under the camera, and times the gate itself.
- free-run (default): the inspector's camera numbers the parts; the simulator learns them from the answers
  (`reject` carries the gate time `gate_ts`) and counts ids skipped in the sequence as missing answers.

Session: like a real PLC should (docs/mqtt.md), the simulator keeps a persistent MQTT session under a fixed client
id (`plcsim-<line>-<camera>`; MQTT 5: session expiry `session_expiry_s`, 3.1.1: clean session false), so the
answers published while it is disconnected (a network cut, a broker restart with persistence) are queued by the
broker and delivered when it reconnects. A new simulator run starts a fresh session (its report counts its own
parts only) and a clean `stop()` ends it; every reconnect in between resumes it.

Where the inspector knows the truth (the synthetic line, a labelled folder) its `verdict` carries `truth`;
the simulator then also counts escapes (defective parts that went through) and false rejects (good parts
rejected, including those rejected for want of an answer). Its command line is `inspector plc-sim`
(`inspector.sim.plc_cli`).
"""

from __future__ import annotations

import heapq
import json
import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import MQTT_CLEAN_START_FIRST_ONLY
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from inspector.config import TlsConfig
from inspector.plc import MAX_PART_ID, Topics, new_client, parse_mqtt_url, redact_url
from inspector.sim.plc_report import SimReport
from inspector.truth import GroundTruth, Judgement, judge

__all__ = ["PlcSimulator", "SimReport"]

log = logging.getLogger(__name__)

_FORGET_BATCH = 1000  # at most this many gated parts forgotten at a time (each forgetting rebuilds the answer set)


@dataclass(slots=True)
class _Part:
    part_id: int
    gate_mono: float
    answer: bool | None = None  # reject flag of the first answer in time
    answered_late: bool = False
    gated: bool = False
    rejected: bool = False
    missing: bool = False
    scored: bool = False  # escape / false reject counted


class PlcSimulator:
    """The conveyor, gate and report; usable as a library (`start()`, `wait()`, `stop()`, `report()`).

    url: the broker. line / camera / prefix: which inspector to talk to (its topics).
    rate: parts a second on the conveyor. gate_ms: camera to reject gate.
    trigger: publish `cmd/trigger` for every part (line master) instead of following the inspector's ids.
    parts: stop after this many parts reached the gate (None: until `stop()`).
    first_id: the first part id in triggered mode.
    grace_s: after the last gate, how long to keep listening for late answers and truth.
    client_id: fixed by default (`plcsim-<line>-<camera>`): a persistent session belongs to a client id.
    persistent: keep the MQTT session across disconnects (the default, as a PLC should); False: clean session,
        and what is published while disconnected is lost.
    session_expiry_s: MQTT 5: how long the broker keeps the session (and queues answers) while disconnected.
    history: gated parts remembered for late answers, repeats and truth; older ones are forgotten (in batches), so
        that a long run's memory stays flat (bench/soak.py). An answer for a forgotten part counts as late.
    """

    def __init__(
        self,
        url: str,
        *,
        line: str = "line1",
        camera: str = "cam0",
        prefix: str = "inspector",
        rate: float = 5.0,
        gate_ms: float = 2000.0,
        trigger: bool = False,
        parts: int | None = None,
        first_id: int = 0,
        protocol: str = "auto",
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
        tls: TlsConfig | None = None,
        client_id: str | None = None,
        grace_s: float = 1.0,
        connect_timeout_s: float = 15.0,
        persistent: bool = True,
        session_expiry_s: int = 300,
        history: int = 10_000,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0 parts a second")
        if gate_ms <= 0:
            raise ValueError("gate_ms must be > 0")
        if parts is not None and parts < 1:
            raise ValueError("parts must be >= 1")
        if not 0 <= first_id <= MAX_PART_ID:
            raise ValueError(f"first_id must be in 0..{MAX_PART_ID}")
        if session_expiry_s < 0:
            raise ValueError("session_expiry_s must be >= 0")
        if history < 1:
            raise ValueError("history must be >= 1")
        self.url = url
        self.topics = Topics.of(prefix, line, camera)
        self.rate = rate
        self.gate_s = gate_ms / 1000.0
        self.trigger = trigger
        self.parts = parts
        self.first_id = first_id
        self.protocol = protocol
        self.qos = qos
        self.username = username
        self._password = password
        self.tls = tls
        self.client_id = client_id or f"plcsim-{line}-{camera}"
        self.persistent = persistent
        self.session_expiry_s = session_expiry_s
        self.grace_s = grace_s
        self.connect_timeout_s = connect_timeout_s
        self.history = history

        self._lock = threading.Lock()
        self._parts: dict[int, _Part] = {}
        self._gates: list[tuple[float, int]] = []  # heap of (gate time, part id)
        self._truth: dict[int, GroundTruth] = {}
        self._seen_answers: set[tuple[int, int]] = set()  # (part_id, seq) of reject answers
        self._report = SimReport()
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()  # connected and subscribed
        self._connects = 0
        self._refused: str | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_id = first_id
        self._first_seen: int | None = None
        self._max_seen: int | None = None
        self._inspector_run: int | None = None  # the inspector's `run` of the newest answers (free-run)
        self._added = 0  # parts known so far (forgotten ones included)
        self._gated: deque[int] = deque()  # gated part ids, oldest first: the ones to forget beyond `history`
        self._forgotten_max: int | None = None  # the highest part id forgotten

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (MQTT 5, or 3.1.1 when refused and `protocol` is auto), subscribe, start the conveyor."""
        protocols = ["5", "3.1.1"] if self.protocol == "auto" else [self.protocol]
        last_error = ""
        for proto in protocols:
            if self._connect(proto):
                self._report.protocol = proto
                break
            last_error = self._refused or "no answer"
        else:
            raise ConnectionError(f"cannot connect to {redact_url(self.url)}: {last_error}")
        self._thread = threading.Thread(target=self._run, name="plcsim", daemon=True)
        self._thread.start()

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait until the requested parts went through the gate (plus grace); True when done."""
        return self._done.wait(timeout_s)

    def stop(self) -> SimReport:
        """Stop the conveyor and disconnect; returns the report."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._client is not None:
            # A clean stop ends the session (MQTT 5): nothing should queue up for a simulator that is gone.
            props = Properties(PacketTypes.DISCONNECT)
            props.SessionExpiryInterval = 0
            self._client.disconnect(properties=props if self._report.protocol == "5" else None)
            self._client.loop_stop()
            self._client = None
        return self.report()

    def answered_ids(self) -> list[int]:
        """The part ids a `reject` answer has arrived for so far, in order."""
        with self._lock:
            return sorted({part_id for part_id, _ in self._seen_answers})

    @property
    def connected(self) -> bool:
        """Connected to the broker and subscribed."""
        return self._connected.is_set()

    def run(self, timeout_s: float | None = None) -> SimReport:
        """start(), wait(timeout_s), stop()."""
        self.start()
        try:
            self.wait(timeout_s)
        finally:
            report = self.stop()
        return report

    def report(self) -> SimReport:
        """A copy of the counters so far."""
        with self._lock:
            r = self._report
            return SimReport(
                **{
                    **asdict(r),
                    "missing_ids": list(r.missing_ids),
                    "escape_ids": list(r.escape_ids),
                    "false_reject_ids": list(r.false_reject_ids),
                }
            )

    def __enter__(self) -> PlcSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- MQTT ---------------------------------------------------------------------------------------------------

    def _new_client(self, protocol: str, clean_session: bool) -> mqtt.Client:
        return new_client(
            protocol="5" if protocol == "5" else "3.1.1",
            client_id=self.client_id,
            address=parse_mqtt_url(self.url),
            username=self.username,
            password=self._password,
            tls=self.tls,
            clean_session=clean_session,
        )

    def _connect(self, protocol: str) -> bool:
        address = parse_mqtt_url(self.url)
        if protocol != "5" and self.persistent:
            self._end_old_session_311(address.host, address.port)
        client = self._new_client(protocol, clean_session=not self.persistent)
        client.reconnect_delay_set(1, 5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        self._refused = None
        self._connected.clear()
        if protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s if self.persistent else 0
            # Clean start on this run's first connect only: every reconnect resumes the session.
            clean = MQTT_CLEAN_START_FIRST_ONLY if self.persistent else True
            client.connect_async(address.host, address.port, keepalive=10, clean_start=clean, properties=props)
        else:
            client.connect_async(address.host, address.port, keepalive=10)
        client.loop_start()
        self._client = client
        deadline = time.monotonic() + self.connect_timeout_s
        # amqtt answers an MQTT 5 CONNECT with silence: give 5 a few seconds only when 3.1.1 is the fall-back.
        if protocol == "5" and self.protocol == "auto":
            deadline = time.monotonic() + min(self.connect_timeout_s, 6.0)
        while time.monotonic() < deadline and not self._connected.is_set() and self._refused is None:
            time.sleep(0.02)
        if self._connected.is_set():
            return True
        client.disconnect()
        client.loop_stop()
        self._client = None
        return False

    def _end_old_session_311(self, host: str, port: int) -> None:
        """MQTT 3.1.1 has no "clean start on the first connect only": end a session an earlier run left behind
        with one clean-session connect, so its queued answers do not count in this run's report."""
        client = self._new_client("3.1.1", clean_session=True)
        try:
            client.connect(host, port, keepalive=10)
            client.loop_start()
            client.disconnect()
        except OSError:
            return  # no broker: the real connect says so
        finally:
            client.loop_stop()

    def _on_connect(self, client: mqtt.Client, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            return
        self._connects += 1
        if self._connects > 1:
            with self._lock:
                self._report.reconnects += 1
            if self.persistent and not getattr(flags, "session_present", True):
                log.warning("plc-sim: the broker lost our session; answers published while away are gone")
        client.subscribe([(self.topics.reject, self.qos), (self.topics.verdict, self.qos)])

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, _reason: Any, _p: Any) -> None:
        self._connected.clear()

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, _codes: Any, _p: Any) -> None:
        # Only now can no answer slip past us: the broker routes to a subscription once it acknowledged it.
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        try:
            data = json.loads(msg.payload)
            part_id = int(data["part_id"])
        except (ValueError, KeyError, TypeError):
            log.warning("plc-sim: unreadable message on %s", msg.topic)
            return
        if msg.topic == self.topics.verdict:
            truth = GroundTruth.from_payload(data)
            if truth is not None:
                with self._lock:
                    if self._forgotten(part_id):
                        return
                    self._truth[part_id] = truth
                    self._score_truth(part_id)
            return
        reject = bool(data.get("reject", True))
        gate_ts = data.get("gate_ts")
        seq = int(data.get("seq", 0) or 0)
        with self._lock:
            if self._forgotten(part_id):  # its part went through the gate long ago
                self._report.late_answers += 1
                return
            if (part_id, seq) in self._seen_answers:
                self._report.duplicates += 1
                return
            self._seen_answers.add((part_id, seq))
            self._note_run(data.get("run"))
            part = self._parts.get(part_id)
            if part is None:
                if self.trigger:
                    self._report.unexpected += 1
                    return
                part = self._follow(part_id, gate_ts, now)
                if part is None:
                    return
            if part.gated:
                part.answered_late = True
                self._report.late_answers += 1
            elif part.answer is None:
                part.answer = reject

    def _note_run(self, run: Any) -> None:
        """A newer `run` is a restart of the inspector (lock held): its ids continue past a gap (the numbers it had
        reserved before, docs/mqtt.md), so the ids in between are no parts, not missing answers."""
        if (
            not isinstance(run, int)
            or isinstance(run, bool)
            or (self._inspector_run is not None and run <= self._inspector_run)
        ):
            return
        if self._inspector_run is not None:
            self._max_seen = None
        self._inspector_run = run

    def _follow(self, part_id: int, gate_ts: Any, now: float) -> _Part | None:
        """Free-run: a new id from the inspector. Its gate is `gate_ts`; ids it skipped share that gate.

        Ids below the first one seen belong to parts from before the simulator started: ignored.
        """
        if self._first_seen is not None and part_id < self._first_seen:
            return None
        # gate_ts is the inspector's wall clock; a missing one (no deadline) falls back to our own gate time.
        gate = now + (float(gate_ts) - time.time()) if isinstance(gate_ts, int | float) else now + self.gate_s
        if self._first_seen is None:
            self._first_seen = part_id
        if self._max_seen is None:  # the first answer, or the first of a new run: nothing skipped before it
            self._max_seen = part_id
        for pid in range(min(self._max_seen + 1, part_id), part_id + 1):
            if pid not in self._parts and (self.parts is None or self._added < self.parts):
                self._add_part(pid, gate)
        self._max_seen = max(self._max_seen, part_id)
        # An answer that arrives after its gate (delayed in transit): the gate acts first, the answer is late.
        self._open_gates_locked(now)
        return self._parts.get(part_id)

    def _forgotten(self, part_id: int) -> bool:
        """True for a part forgotten beyond `history` (lock held)."""
        return self._forgotten_max is not None and part_id <= self._forgotten_max and part_id not in self._parts

    def _forget_locked(self) -> None:
        """Forget the oldest gated parts beyond `history` (lock held), with their truth and answers."""
        while len(self._gated) > self.history:
            part_id = self._gated.popleft()
            self._parts.pop(part_id, None)
            self._truth.pop(part_id, None)
            self._forgotten_max = part_id if self._forgotten_max is None else max(self._forgotten_max, part_id)
        floor = self._forgotten_max
        assert floor is not None
        self._seen_answers = {k for k in self._seen_answers if k[0] > floor or k[0] in self._parts}

    def _add_part(self, part_id: int, gate: float) -> None:
        self._parts[part_id] = _Part(part_id, gate)
        self._added += 1
        heapq.heappush(self._gates, (gate, part_id))

    # -- the conveyor -------------------------------------------------------------------------------------------

    def _run(self) -> None:
        period = 1.0 / self.rate
        t0 = time.monotonic()
        triggered = 0
        last_gate = None
        assert self._client is not None
        while not self._stop.is_set():
            now = time.monotonic()
            if self.trigger and (self.parts is None or triggered < self.parts):
                due = t0 + triggered * period
                if now >= due:
                    part_id = self._next_id
                    self._next_id += 1
                    triggered += 1
                    with self._lock:
                        self._add_part(part_id, due + self.gate_s)
                    self._client.publish(self.topics.command("trigger"), json.dumps({"part_id": part_id}), qos=1)
                    continue
            self._open_gates(now)
            with self._lock:
                finished = self.parts is not None and self._report.parts >= self.parts
                next_gate = self._gates[0][0] if self._gates else None
            if finished:
                last_gate = last_gate or now
                if now - last_gate >= self.grace_s:
                    self._done.set()
                    # Keep counting late answers until stop(); nothing else to do.
                    self._stop.wait(0.1)
                    continue
            wake = [now + 0.05]
            if next_gate is not None:
                wake.append(next_gate)
            if self.trigger and (self.parts is None or triggered < self.parts):
                wake.append(t0 + triggered * period)
            self._stop.wait(max(0.0, min(wake) - time.monotonic()))

    def _open_gates(self, now: float) -> None:
        with self._lock:
            self._open_gates_locked(now)

    def _open_gates_locked(self, now: float) -> None:
        """Gate every part whose gate time has come (lock held): reject on a reject answer or no answer."""
        while self._gates and self._gates[0][0] <= now:
            _, part_id = heapq.heappop(self._gates)
            part = self._parts[part_id]
            if part.gated:
                continue
            part.gated = True
            self._gated.append(part_id)
            r = self._report
            r.parts += 1
            if part.answer is None:
                part.missing = part.rejected = True
                r.missing_answers += 1
                r.rejected_missing += 1
                r.missing_ids.append(part_id)
            elif part.answer:
                part.rejected = True
                r.rejected_on_answer += 1
            if part.rejected:
                r.rejected += 1
            else:
                r.passed += 1
            self._score_truth(part_id)
        if len(self._gated) > self.history + min(self.history, _FORGET_BATCH):
            self._forget_locked()

    def _score_truth(self, part_id: int) -> None:
        """Count escape / false reject once both the gate action and the truth are known (lock held)."""
        part = self._parts.get(part_id)
        truth = self._truth.get(part_id)
        if part is None or truth is None or not part.gated or part.scored:
            return
        part.scored = True
        r = self._report
        r.truth_known += 1
        r.defective += int(truth.defective)
        judgement = judge(part.rejected, truth)
        if judgement is Judgement.ESCAPE:
            r.escapes += 1
            r.escape_ids.append(part_id)
        elif judgement is Judgement.FALSE_REJECT:
            r.false_rejects += 1
            r.false_reject_ids.append(part_id)
