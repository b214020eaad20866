"""The MQTT link to the line's PLC: verdicts and reject signals out, commands in (docs/mqtt.md is the contract).

Topics live under `<prefix>/<line>/<camera>/`:

    verdict    QoS 1   full JSON result of every part (audit, dashboards, MES)
    reject     QoS 1   flat `{"part_id", "reject", "reason", "gate_ts", ...}` for every part; MQTT 5 message
                       expiry = the time left until the part reaches the reject gate
    status     QoS 1, retained   `online` birth on connect, `offline` last will and on a clean stop
    heartbeat  QoS 0   every `heartbeat_s`: ready, ledger counters, processing time min/avg/max, link counters
    events     QoS 1   threshold changes, recipe switches, accepted commands, alarms
    cmd/trigger, cmd/pause, cmd/resume, cmd/recipe      PLC -> inspector
    cmd/error  QoS 1   the answer to a malformed command

Threads: `handle()` runs on the pipeline's dispatch thread and only builds two small JSON payloads and either
hands them to paho (connected, nothing queued) or appends them to a bounded offline queue. A worker thread
drains that queue after a reconnect, publishes heartbeats and switches to MQTT 3.1.1 when a broker refuses 5.
Paho's network thread runs the callbacks (connect, disconnect, commands).

No lost verdict: every QoS >= 1 message stays ours until the broker acknowledged it. On a reconnect the link
takes back what paho still holds unacknowledged (`drop_out_messages`) and sends it again through the same
path as the offline queue, so a reject whose gate has passed meanwhile is dropped (counted `late`) instead of
reaching the PLC after the part went by, and every other reject gets a fresh message expiry.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import math
import queue
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from inspector.config import MqttConfig, TlsConfig
from inspector.types import Timings, Verdict

__all__ = [
    "COMMANDS",
    "MAX_COMMAND_BYTES",
    "MAX_PART_ID",
    "SCHEMA_VERSION",
    "BrokerAddress",
    "CommandError",
    "PlcCommands",
    "PlcLink",
    "Topics",
    "load_schema",
    "new_client",
    "parse_command",
    "parse_mqtt_url",
    "redact_url",
    "reject_payload",
    "truth_flag",
    "verdict_payload",
]

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_PART_ID = 2**53 - 1  # the largest integer every JSON parser (and a PLC's LREAL) holds exactly
MAX_COMMAND_BYTES = 4096
COMMANDS = ("trigger", "pause", "resume", "recipe")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOPIC_PART_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_PROTOCOL_REFUSED = {132, 1}  # MQTT 5 "Unsupported protocol version"; 3.1.1 CONNACK code 1 as paho reports it
ProtocolName = Literal["5", "3.1.1"]


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one payload (`verdict`, `reject`, `status`, `heartbeat`, `event`, `cmd_error`,
    `cmd_trigger`, `cmd_recipe`, `cmd_pause`, `cmd_resume`) from `inspector/schemas/`."""
    text = resources.files("inspector").joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


# -- addresses, topics, clients ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is: from `mqtt://[user[:password]@]host[:port]` or `mqtts://...` (TLS, port 8883)."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse_mqtt_url(url: str) -> BrokerAddress:
    """Parse a broker URL; raises ValueError naming what is wrong (never echoing a password)."""
    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "mqtts", "tcp", "ssl"}:
        raise ValueError(f"MQTT URL must start with mqtt:// or mqtts://, got {redact_url(url)!r}")
    if not parts.hostname:
        raise ValueError(f"MQTT URL has no host: {redact_url(url)!r}")
    tls = parts.scheme in {"mqtts", "ssl"}
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError as exc:
        raise ValueError(f"MQTT URL has a bad port: {redact_url(url)!r}") from exc
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***` (for logs, `info()` and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return parts._replace(netloc=f"{user}:***@{netloc}").geturl()


@dataclass(frozen=True, slots=True)
class Topics:
    """The topic names of one camera: `<prefix>/<line>/<camera>/...`."""

    root: str

    @classmethod
    def of(cls, prefix: str, line: str, camera: str) -> Topics:
        for what, value in (("line", line), ("camera", camera)):
            if not _TOPIC_PART_RE.match(value):
                raise ValueError(f"{what} {value!r} must be plain ASCII letters, digits, '_', '.', '-'")
        if any(ch in prefix for ch in "+#") or not prefix.strip("/"):
            raise ValueError(f"topic prefix {prefix!r} must be non-empty and contain no MQTT wildcards")
        return cls(f"{prefix.strip('/')}/{line}/{camera}/")

    @property
    def verdict(self) -> str:
        return self.root + "verdict"

    @property
    def reject(self) -> str:
        return self.root + "reject"

    @property
    def status(self) -> str:
        return self.root + "status"

    @property
    def heartbeat(self) -> str:
        return self.root + "heartbeat"

    @property
    def events(self) -> str:
        return self.root + "events"

    @property
    def cmd(self) -> str:
        """Prefix of the command topics (`cmd/trigger` etc.)."""
        return self.root + "cmd/"

    @property
    def cmd_error(self) -> str:
        return self.root + "cmd/error"

    def command(self, name: str) -> str:
        return self.cmd + name


def new_client(
    *,
    protocol: ProtocolName,
    client_id: str,
    address: BrokerAddress,
    username: str | None = None,
    password: str | None = None,
    tls: TlsConfig | None = None,
) -> mqtt.Client:
    """A paho client (callback API 2) with protocol, credentials and TLS set; not yet connected.

    Credentials from the config win over those in the URL. TLS is on for `mqtts://` or when `tls` is given;
    without a CA file the system's trusted CAs verify the broker.
    """
    if protocol == "5":
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    else:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311, clean_session=True
        )
    user = username if username is not None else address.username
    secret = password if password is not None else address.password
    if user is not None:
        client.username_pw_set(user, secret)
    if address.tls or tls is not None:
        tls = tls or TlsConfig()
        client.tls_set(
            ca_certs=str(tls.ca_file) if tls.ca_file else None,
            certfile=str(tls.cert_file) if tls.cert_file else None,
            keyfile=str(tls.key_file) if tls.key_file else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        if tls.insecure:
            client.tls_insecure_set(True)
    return client


# -- payloads ----------------------------------------------------------------------------------------------------


def _wall_from_monotonic_ns(mono_ns: int, now_mono_ns: int | None = None, now_wall: float | None = None) -> float:
    """Unix time (s) of a `time.monotonic_ns()` instant, rounded to the millisecond."""
    now_mono_ns = time.monotonic_ns() if now_mono_ns is None else now_mono_ns
    now_wall = time.time() if now_wall is None else now_wall
    return round(now_wall + (mono_ns - now_mono_ns) / 1e9, 3)


def truth_flag(truth: Any) -> bool | None:
    """Ground truth as "is this part defective?": True / False, or None when unknown.

    Accepts what sources carry: a bool, a 0/1 number, a mapping with `defective` (or `reject`, `bad`), an object
    with a `defective` attribute, or a list / array / `Detections` of true defects (non-empty = defective).
    """
    if truth is None:
        return None
    if isinstance(truth, bool | np.bool_):
        return bool(truth)
    if isinstance(truth, int | np.integer):
        return bool(truth)
    if isinstance(truth, Mapping):
        for key in ("defective", "reject", "bad"):
            if key in truth:
                return truth_flag(truth[key])
        for key in ("boxes", "defects", "labels"):
            if key in truth:
                return truth_flag(list(truth[key]) if truth[key] is not None else None)
        return None
    if hasattr(truth, "defective"):
        return truth_flag(truth.defective)
    if isinstance(truth, np.ndarray):
        return bool(truth.size)
    if isinstance(truth, Sequence) and not isinstance(truth, str | bytes):
        return len(truth) > 0
    if hasattr(truth, "__len__"):
        return len(truth) > 0
    return None


def verdict_payload(
    verdict: Verdict,
    *,
    line: str,
    names: Mapping[int, str] | None = None,
    gate_ts: float | None = None,
    now_ns: int | None = None,
    now_wall: float | None = None,
) -> dict[str, Any]:
    """The `verdict` message of one part (schema `verdict.json`)."""
    now_ns = time.monotonic_ns() if now_ns is None else now_ns
    now_wall = time.time() if now_wall is None else now_wall
    decided = verdict.timings.decided_ns or now_ns
    payload: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "part_id": int(verdict.part_id),
        "seq": int(verdict.seq),
        "ts": _wall_from_monotonic_ns(decided, now_ns, now_wall),
        "line": line,
        "camera": verdict.camera_id,
        "decision": str(verdict.decision.value),
        "reasons": [str(r) for r in verdict.reasons],
        "failsafe": verdict.failsafe,
        "defects": verdict.defects(dict(names) if names else None),
        "model": verdict.model_sha256,
        "recipe": verdict.recipe,
        "thresholds_version": int(verdict.thresholds_version),
        "latency_ms": round(verdict.timings.latency_ms(), 3),
        "gate_ts": gate_ts,
    }
    truth = truth_flag(verdict.truth)
    if truth is not None:
        payload["truth"] = truth
    return payload


def reject_payload(verdict: Verdict, *, gate_ts: float | None, now_wall: float | None = None) -> dict[str, Any]:
    """The flat `reject` message a PLC acts on (schema `reject.json`); sent for passes too (`reject: false`)."""
    return {
        "part_id": int(verdict.part_id),
        "reject": verdict.rejected,
        "reason": str(verdict.reasons[0]) if verdict.rejected and verdict.reasons else "",
        "gate_ts": gate_ts,
        "seq": int(verdict.seq),
        "ts": round(time.time() if now_wall is None else now_wall, 3),
    }


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), default=str).encode()


# -- commands ----------------------------------------------------------------------------------------------------


@runtime_checkable
class PlcCommands(Protocol):
    """What the PLC can ask of the pipeline. Called on paho's network thread: return quickly."""

    def trigger(self, part_id: int) -> None:
        """A part is under the camera now: grab a frame for it."""

    def pause(self) -> None:
        """Stop inspecting (the line stopped)."""

    def resume(self) -> None:
        """Inspect again."""

    def set_recipe(self, name: str) -> None:
        """Switch product (model + thresholds) between two parts; raises KeyError for an unknown recipe."""


class CommandError(ValueError):
    """A malformed command: `kind` is a stable short name (answered on `cmd/error`), `detail` says why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def _loads(text: str) -> Any:
    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        return json.loads(text, parse_constant=no_constants)
    except (ValueError, RecursionError) as exc:
        raise CommandError("bad_json", f"payload is not valid JSON: {str(exc)[:120]}") from exc


def _exact_keys(obj: dict[str, Any], required: str) -> Any:
    extra = sorted(set(obj) - {required})
    if required not in obj:
        got = f", got {extra}" if extra else ""
        raise CommandError("missing_field", f"object needs the field {required!r}{got}")
    if extra:
        raise CommandError("extra_fields", f"unknown fields {extra}; only {required!r} is allowed")
    return obj[required]


def parse_command(name: str, payload: bytes, retain: bool = False) -> tuple[str, int | str | None]:
    """Validate one command; returns `(command, argument)` or raises `CommandError`.

    trigger: `123` or `{"part_id": 123}`, an integer 0..2^53-1.
    recipe:  `{"recipe": "boardB"}`, `"boardB"` or the bare name `boardB` ([A-Za-z0-9_.-], 1..64 chars).
    pause, resume: empty payload or `{}`.
    A retained command is refused: replaying a stale command on every reconnect would be dangerous.
    """
    if name not in COMMANDS:
        raise CommandError("unknown_command", f"unknown command {name!r}; known: {', '.join(COMMANDS)}")
    if retain:
        raise CommandError("retained", "retained commands are refused (a stale command would replay on reconnect)")
    if len(payload) > MAX_COMMAND_BYTES:
        raise CommandError("too_large", f"payload of {len(payload)} bytes exceeds {MAX_COMMAND_BYTES}")
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise CommandError("not_utf8", f"payload is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc

    if name in {"pause", "resume"}:
        if text and (obj := _loads(text)) != {}:
            if isinstance(obj, dict):
                raise CommandError("extra_fields", f"{name} takes no fields, got {sorted(obj)}")
            raise CommandError("unexpected_payload", f"{name} takes an empty payload or {{}}")
        return name, None

    if not text:
        raise CommandError("empty", f"{name} needs a payload")

    if name == "trigger":
        obj = _loads(text)
        value = _exact_keys(obj, "part_id") if isinstance(obj, dict) else obj
        if isinstance(value, bool) or not isinstance(value, int):
            raise CommandError("wrong_type", f"part_id must be an integer, got {type(value).__name__} {value!r:.40}")
        if not 0 <= value <= MAX_PART_ID:
            raise CommandError("out_of_range", f"part_id must be in 0..{MAX_PART_ID}, got {str(value)[:40]}")
        return name, value

    # recipe: a bare name is not JSON; everything else must be.
    if _NAME_RE.match(text) and not text.isdigit() and text not in {"true", "false", "null"}:
        return name, text
    obj = _loads(text)
    value = _exact_keys(obj, "recipe") if isinstance(obj, dict) else obj
    if not isinstance(value, str):
        raise CommandError("wrong_type", f"recipe must be a string, got {type(value).__name__}")
    if not _NAME_RE.match(value):
        raise CommandError("bad_name", f"recipe name {value[:80]!r} must be 1..64 of [A-Za-z0-9_.-]")
    return name, value


# -- the link ----------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    """One message waiting to go out (or waiting for its PUBACK)."""

    kind: Literal["verdict", "reject", "event", "error"]
    topic: str
    payload: bytes
    part_id: int | None = None
    deadline_ns: int | None = None
    timings: Timings | None = None


@dataclass(slots=True)
class _Window:
    """Processing time (capture to decision) over one heartbeat period."""

    n: int = 0
    total: float = 0.0
    lo: float = math.inf
    hi: float = 0.0

    def add(self, ms: float) -> None:
        self.n += 1
        self.total += ms
        self.lo = min(self.lo, ms)
        self.hi = max(self.hi, ms)

    def summary(self) -> dict[str, float | int]:
        if not self.n:
            return {"min": 0.0, "avg": 0.0, "max": 0.0, "n": 0}
        return {"min": round(self.lo, 3), "avg": round(self.total / self.n, 3), "max": round(self.hi, 3), "n": self.n}


class PlcLink:
    """The MQTT link of one camera, and a pipeline sink (`name = "plc"`, `handle(verdict)`, `close()`).

    config: the line's `mqtt` section (`url` must be set: start an `EmbeddedBroker` and pass its URL otherwise).
    commands: the pipeline's command handler; None subscribes to no commands.
    status: returns the pipeline's state for the heartbeat: `{"ready": bool, "counters": {name: int}, ...}`;
        other keys are passed on under `pipeline`.
    names: class id -> defect class name, for the verdict's `defects`.
    reconnect_min_s / reconnect_max_s: back-off between reconnect attempts (doubling); not yet in MqttConfig.
    flush_timeout_s: how long `stop()` waits for queued messages to be acknowledged.
    """

    name = "plc"

    def __init__(
        self,
        config: MqttConfig,
        camera_id: str,
        commands: PlcCommands | None = None,
        status: Callable[[], dict[str, Any]] | None = None,
        names: dict[int, str] | None = None,
        *,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 2.0,
        flush_timeout_s: float = 5.0,
    ) -> None:
        if not config.url:
            raise ValueError("mqtt.url is not set: start inspector.broker.EmbeddedBroker and use its url")
        self.config = config
        self.camera_id = camera_id
        self.commands = commands
        self.status = status
        self.names = dict(names or {})
        self.topics = Topics.of(config.prefix, config.line, camera_id)
        self.address = parse_mqtt_url(config.url)
        self.client_id = config.client_id or f"inspector-{config.line}-{camera_id}"
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = max(reconnect_max_s, reconnect_min_s)
        self.flush_timeout_s = flush_timeout_s
        self._password = config.password.get_secret_value() if config.password is not None else None
        self._tls = self.address.tls or config.tls is not None

        self._lock = threading.Lock()  # state below; never held while calling paho
        self._wake = threading.Condition(self._lock)
        self._send_lock = threading.Lock()  # serialises publish+register against the reconnect hand-back
        self._queue: collections.deque[_Item] = collections.deque()
        self._inflight: dict[int, tuple[mqtt.MQTTMessageInfo, _Item]] = {}
        self._client: mqtt.Client | None = None
        self._protocol: ProtocolName = "3.1.1" if config.protocol == "3.1.1" else "5"
        self._connected = False
        self._ever_connected = False
        self._started = False
        self._stopping = False
        self._fallback_pending = False
        self._connack_seen = False
        self._worker: threading.Thread | None = None
        # Recipe switches may load a model for seconds: they run on their own thread, so paho's network thread
        # keeps answering pings and acknowledgements and triggers keep flowing meanwhile.
        self._slow_commands: queue.Queue[tuple[str, str, bytes, str] | None] | None = None
        self._slow_thread: threading.Thread | None = None
        self._window = _Window()
        self._started_mono = time.monotonic()
        self._last_error: str | None = None
        self._late_ids: collections.deque[int] = collections.deque(maxlen=10000)
        # Overflow since the last alarm: count, first and last part id dropped (the alarm event reports them).
        self._overflow_pending: tuple[int, int | None, int | None] = (0, None, None)
        self._alarm_logged = False
        self._last_purge_ns = 0
        self._error_log_times: collections.deque[float] = collections.deque(maxlen=10)
        self._event_seq = 0
        self._heartbeat_seq = 0
        self._counts = collections.Counter[str]()

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (returns at once); birth, commands and the offline queue follow on
        connect. MQTT 5 first; with `protocol: auto` a broker that refuses 5 gets 3.1.1."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._stopping = False
            self._started_mono = time.monotonic()
        self._connect(self._protocol)
        self._worker = threading.Thread(target=self._work, name=f"plc-{self.camera_id}", daemon=True)
        self._worker.start()
        if self.commands is not None:
            self._slow_commands = queue.Queue()
            self._slow_thread = threading.Thread(
                target=self._run_slow_commands,
                args=(self._slow_commands,),
                name=f"plc-{self.camera_id}-cmd",
                daemon=True,
            )
            self._slow_thread.start()
        log.info(
            "PLC link %s -> %s (MQTT %s, client id %s)",
            self.topics.root,
            self._safe_url(),
            self._protocol,
            self.client_id,
        )

    def stop(self, timeout_s: float | None = None) -> None:
        """Flush what is queued (up to `timeout_s`), publish `offline` (retained), disconnect."""
        with self._lock:
            if not self._started:
                return
        timeout_s = self.flush_timeout_s if timeout_s is None else timeout_s
        # Waiting only makes sense while connected; during an outage what is queued is lost (and said so).
        if not (self._connected and self.flush(timeout_s)) and (left := self.stats()["queued"]):
            log.warning("PLC link stopping with %d message(s) not acknowledged by the broker", left)
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=5.0)
        slow, self._slow_commands = self._slow_commands, None
        if slow is not None and self._slow_thread is not None:
            slow.put(None)
            self._slow_thread.join(timeout=5.0)
        with self._lock:
            client, connected = self._client, self._connected  # after the worker: a fall-back may have swapped it
        if client is not None:
            if connected:
                info = client.publish(
                    self.topics.status, _dumps(self._status_payload("offline", "stopped")), qos=1, retain=True
                )
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(timeout=2.0)
            client.disconnect()
            client.loop_stop()
        with self._lock:
            self._connected = False
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
            while not self._connected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.wait(min(remaining, 0.1))
            return True

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every queued message has been acknowledged by the broker; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._sweep()
            with self._lock:
                if not self._queue and not self._inflight:
                    return True
                if time.monotonic() >= deadline:
                    return False
                self._wake.notify_all()
                self._wake.wait(0.02)

    # -- the sink -----------------------------------------------------------------------------------------------

    def handle(self, verdict: Verdict) -> None:
        """Publish `reject` then `verdict` for one part (or queue them while the broker is away)."""
        now_ns = time.monotonic_ns()
        now_wall = time.time()
        deadline = verdict.deadline_ns
        gate_ts = _wall_from_monotonic_ns(deadline, now_ns, now_wall) if deadline is not None else None
        latency = verdict.timings.latency_ms()
        items: list[_Item] = []
        if deadline is not None and deadline <= now_ns:
            # Too late for the gate: the PLC's missing-answer rule has already rejected this part.
            self._count_late(verdict.part_id)
        else:
            body = _dumps(reject_payload(verdict, gate_ts=gate_ts, now_wall=now_wall))
            items.append(_Item("reject", self.topics.reject, body, verdict.part_id, deadline, verdict.timings))
        body = _dumps(
            verdict_payload(
                verdict, line=self.config.line, names=self.names, gate_ts=gate_ts, now_ns=now_ns, now_wall=now_wall
            )
        )
        items.append(_Item("verdict", self.topics.verdict, body, verdict.part_id, None, verdict.timings))
        with self._lock:
            self._counts["verdicts"] += 1
            if latency > 0:
                self._window.add(latency)
        for item in items:
            self._submit(item)

    def publish_event(self, event: dict[str, Any]) -> None:
        """Publish on `events` (QoS 1, queued while offline): `{"event": "thresholds", ...}` and the like.
        `schema`, `ts` and `seq` are added."""
        with self._lock:
            self._event_seq += 1
            seq = self._event_seq
        payload = {
            "schema": SCHEMA_VERSION,
            "event": str(event.get("event", "event")),
            "ts": round(time.time(), 3),
            "seq": seq,
        }
        payload.update({k: v for k, v in event.items() if k not in payload})
        self._submit(_Item("event", self.topics.events, _dumps(payload)))

    # -- introspection ------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Link counters: verdicts (handled), sent (acknowledged by the broker), refused (of those, acknowledged
        with an error reason, MQTT 5: e.g. an ACL), queued (not yet acknowledged), overflow, late, reconnects,
        malformed_commands, commands (accepted), connected, protocol."""
        self._sweep()
        with self._lock:
            return {
                "verdicts": self._counts["verdicts"],
                "sent": self._counts["sent"],
                "refused": self._counts["refused"],
                "queued": len(self._queue) + len(self._inflight),
                "overflow": self._counts["overflow"],
                "late": self._counts["late"],
                "reconnects": self._counts["reconnects"],
                "malformed_commands": self._counts["malformed"],
                "commands": self._counts["commands"],
                "connected": self._connected,
                "protocol": self._protocol,
            }

    def info(self) -> dict[str, Any]:
        """What the dashboard shows about the link; never the password."""
        with self._lock:
            connected, protocol, error = self._connected, self._protocol, self._last_error
        return {
            "url": self._safe_url(),
            "host": self.address.host,
            "port": self.address.port,
            "tls": self._tls,
            "username": self.config.username or self.address.username,
            "auth": bool(self._password or self.address.password),
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
            return list(self._late_ids)

    # -- sending ------------------------------------------------------------------------------------------------

    def _submit(self, item: _Item) -> None:
        """Hand `item` to paho now when connected and nothing is waiting (keeps order), else queue it."""
        with self._lock:
            direct = self._connected and not self._queue and not self._stopping
            if not direct:
                self._enqueue(item)
                self._wake.notify_all()
                return
        with self._send_lock:
            self._send(item)

    def _enqueue(self, item: _Item, front: bool = False) -> None:
        """Append to the offline queue (lock held); on overflow drop stale rejects first, then the oldest."""
        if front:
            self._queue.appendleft(item)
        else:
            self._queue.append(item)
        bound = self.config.offline_queue
        if len(self._queue) <= bound:
            return
        now = time.monotonic_ns()
        if now - self._last_purge_ns > 500_000_000:  # an O(n) scan, at most twice a second
            self._last_purge_ns = now
            kept: collections.deque[_Item] = collections.deque()
            for queued in self._queue:
                if queued.kind == "reject" and queued.deadline_ns is not None and queued.deadline_ns <= now:
                    self._late_locked(queued.part_id)  # useless now: its gate has passed
                else:
                    kept.append(queued)
            self._queue = kept
        while len(self._queue) > bound:
            dropped = self._queue.popleft()
            self._counts["overflow"] += 1
            n, first, last = self._overflow_pending
            if dropped.part_id is not None:
                first = dropped.part_id if first is None else first
                last = dropped.part_id
            self._overflow_pending = (n + 1, first, last)
            if not self._alarm_logged:
                self._alarm_logged = True
                log.error("PLC link offline queue full (%d): dropping the oldest messages", bound)

    def _send(self, item: _Item) -> None:
        """Publish one item and keep it until acknowledged (call with `_send_lock` held)."""
        client = self._client
        assert client is not None
        properties = None
        if item.kind == "reject" and item.deadline_ns is not None:
            remaining_ns = item.deadline_ns - time.monotonic_ns()
            if remaining_ns <= 0:
                self._count_late(item.part_id)
                return
            if self._protocol == "5":
                # Whole seconds only in MQTT; round up so a broker never drops an answer that is still in time.
                properties = Properties(PacketTypes.PUBLISH)
                properties.MessageExpiryInterval = max(1, math.ceil(remaining_ns / 1e9))
        qos = self.config.qos
        info = client.publish(item.topic, item.payload, qos=qos, properties=properties)
        with self._lock:
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                # Socket gone before paho noticed: stop draining until on_connect; QoS 0 is not kept by paho.
                self._connected = False
                if qos == 0:
                    self._enqueue(item, front=True)
                    return
            elif info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.error("publish on %s failed: %s", item.topic, mqtt.error_string(info.rc))
                self._enqueue(item, front=True)
                self._connected = False
                return
            self._inflight[id(info)] = (info, item)
        if item.timings is not None and not item.timings.published_ns:
            item.timings.published_ns = time.monotonic_ns()

    def _sweep(self) -> None:
        """Count acknowledged messages; put QoS 0 messages lost with a connection back in the queue."""
        with self._lock:
            lost: list[_Item] = []
            for key, (info, item) in list(self._inflight.items()):
                try:
                    done = info.is_published()
                except (RuntimeError, ValueError):
                    # rc NO_CONN (QoS >= 1: still in paho, handed back on reconnect) or CONN_LOST (QoS 0: gone).
                    if info.rc == MQTTErrorCode.MQTT_ERR_CONN_LOST and self.config.qos == 0:
                        del self._inflight[key]
                        lost.append(item)
                    continue
                if done:
                    del self._inflight[key]
                    self._counts["sent"] += 1
            for item in reversed(lost):
                self._enqueue(item, front=True)

    def _count_late(self, part_id: int | None) -> None:
        with self._lock:
            self._late_locked(part_id)

    def _late_locked(self, part_id: int | None) -> None:
        self._counts["late"] += 1
        if part_id is not None:
            self._late_ids.append(part_id)

    # -- paho client and callbacks ------------------------------------------------------------------------------

    def _connect(self, protocol: ProtocolName) -> None:
        client = new_client(
            protocol=protocol,
            client_id=self.client_id,
            address=self.address,
            username=self.config.username,
            password=self._password,
            tls=self.config.tls,
        )
        client.reconnect_delay_set(self.reconnect_min_s, self.reconnect_max_s)  # type: ignore[arg-type]
        client.will_set(
            self.topics.status,
            _dumps(self._status_payload("offline", "connection lost", protocol)),
            qos=1,
            retain=True,
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        with self._lock:
            self._client = client
            self._protocol = protocol
        if protocol == "5":
            # Clean start every time: commands queued while we were away are stale.
            client.connect_async(self.address.host, self.address.port, self.config.keepalive_s, clean_start=True)
        else:
            client.connect_async(self.address.host, self.address.port, self.config.keepalive_s)
        client.loop_start()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if client is not self._client:
            return
        with self._lock:
            self._connack_seen = True
        if reason.is_failure:
            code = reason.value
            with self._lock:
                self._last_error = f"broker refused: {reason}"
                fallback = code in _PROTOCOL_REFUSED and self.config.protocol == "auto" and self._protocol == "5"
                if fallback:
                    self._fallback_pending = True
                    self._wake.notify_all()
            if fallback:
                log.info("broker %s refuses MQTT 5 (%s); falling back to MQTT 3.1.1", self._safe_url(), reason)
            else:
                log.warning("broker %s refused the connection: %s", self._safe_url(), reason)
            return
        # Take back what paho holds unacknowledged so it goes out through our gate-deadline check.
        with self._send_lock:
            dropped = client.drop_out_messages()
            if self.commands is not None:
                if self._protocol == "5":
                    options = SubscribeOptions(qos=1, noLocal=True, retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND)
                    client.subscribe(self.topics.cmd + "#", options=options)
                else:
                    client.subscribe(self.topics.cmd + "#", qos=1)
            client.publish(self.topics.status, _dumps(self._status_payload("online", "connected")), qos=1, retain=True)
            with self._lock:
                back = [self._inflight.pop(id(m.info))[1] for m in dropped if id(m.info) in self._inflight]
                for item in reversed(back):
                    self._enqueue(item, front=True)
                if self._ever_connected:
                    self._counts["reconnects"] += 1
                self._ever_connected = True
                self._connected = True
                self._last_error = None
                backlog = len(self._queue)
                self._wake.notify_all()
        log.info("PLC link connected to %s (MQTT %s), %d message(s) to send", self._safe_url(), self._protocol, backlog)

    def _on_connect_fail(self, client: mqtt.Client, _userdata: Any) -> None:
        if client is not self._client:
            return
        with self._lock:
            first = self._last_error is None
            self._last_error = "broker unreachable"
        if first:
            log.warning("PLC link cannot reach the broker at %s; retrying", self._safe_url())

    def _on_disconnect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any) -> None:
        if client is not self._client:
            return
        with self._lock:
            was = self._connected
            self._connected = False
            self._alarm_logged = False
            # A broker that closes an MQTT 5 handshake without any CONNACK (amqtt chokes on a v5 will) is
            # treated like one that refused 5, but only before the first MQTT 5 connection ever succeeded, and
            # not over TLS, where a refused client certificate looks the same.
            fallback = (
                not was
                and not self._connack_seen
                and not self._ever_connected
                and not self._stopping
                and self.config.protocol == "auto"
                and self._protocol == "5"
                and not self._tls
            )
            self._connack_seen = False
            if fallback:
                self._fallback_pending = True
            self._wake.notify_all()
        if fallback:
            log.info(
                "broker %s closed the MQTT 5 handshake without an answer; falling back to MQTT 3.1.1", self._safe_url()
            )
        elif was and not self._stopping:
            log.warning("PLC link lost the broker (%s); queueing up to %d messages", reason, self.config.offline_queue)

    def _on_publish(self, client: mqtt.Client, _userdata: Any, _mid: int, reason: ReasonCode, _props: Any) -> None:
        # A broker may acknowledge and still refuse (MQTT 5: not authorized, quota exceeded): say so.
        if client is not self._client or not reason.is_failure:
            return
        with self._lock:
            self._counts["refused"] += 1
            first = self._counts["refused"] == 1
        (log.error if first else log.debug)("broker refused a message: %s", reason)

    def _on_message(self, client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if client is not self._client or not msg.topic.startswith(self.topics.cmd):
            return
        name = msg.topic[len(self.topics.cmd) :]
        if name == "error":  # our own answers (MQTT 3.1.1 has no "no local" subscription option)
            return
        payload = bytes(msg.payload)
        try:
            command, arg = parse_command(name, payload, bool(msg.retain))
        except CommandError as exc:
            self._command_error(msg.topic, name, payload, exc)
            return
        if command == "recipe" and self._slow_commands is not None:
            assert isinstance(arg, str)
            self._slow_commands.put((msg.topic, name, payload, arg))
            return
        self._execute(msg.topic, name, payload, command, arg)

    def _run_slow_commands(self, jobs: queue.Queue[tuple[str, str, bytes, str] | None]) -> None:
        while (job := jobs.get()) is not None:
            topic, name, payload, arg = job
            self._execute(topic, name, payload, "recipe", arg)

    def _execute(self, topic: str, name: str, payload: bytes, command: str, arg: int | str | None) -> None:
        try:
            self._dispatch(command, arg)
        except CommandError as exc:
            self._command_error(topic, name, payload, exc)
        except Exception as exc:  # the pipeline's handler failed: answer, never let it stop the link
            self._command_error(
                topic, name, payload, CommandError("command_failed", f"{type(exc).__name__}: {str(exc)[:200]}")
            )

    def _dispatch(self, command: str, arg: int | str | None) -> None:
        assert self.commands is not None
        if command == "trigger":
            assert isinstance(arg, int)
            self.commands.trigger(arg)
        elif command == "pause":
            self.commands.pause()
        elif command == "resume":
            self.commands.resume()
        else:
            assert isinstance(arg, str)
            try:
                self.commands.set_recipe(arg)
            except KeyError as exc:
                raise CommandError("unknown_recipe", f"no recipe named {arg!r} in the line config") from exc
        with self._lock:
            self._counts["commands"] += 1
        if command != "trigger":  # a trigger's answer is its verdict
            self.publish_event({"event": "command", "command": command, **({"recipe": arg} if arg else {})})

    def _command_error(self, topic: str, name: str, payload: bytes, exc: CommandError) -> None:
        with self._lock:
            self._counts["malformed"] += 1
            count = self._counts["malformed"]
            now = time.monotonic()
            # At most 10 warnings a minute: a PLC sending garbage in a loop must not flood the log.
            loud = len(self._error_log_times) < 10 or now - self._error_log_times[0] > 60
            if loud:
                self._error_log_times.append(now)
        (log.warning if loud else log.debug)("malformed command on %s: %s", topic, exc)
        answer = {
            "schema": SCHEMA_VERSION,
            "ts": round(time.time(), 3),
            "topic": topic,
            "command": name[:64],
            "error": exc.kind,
            "detail": exc.detail,
            "payload": payload[:200].decode("utf-8", errors="backslashreplace"),
            "count": count,
        }
        self._submit(_Item("error", self.topics.cmd_error, _dumps(answer)))

    # -- worker: drain, heartbeat, protocol fall-back -----------------------------------------------------------

    def _work(self) -> None:
        next_beat = time.monotonic() + self.config.heartbeat_s
        while True:
            with self._lock:
                idle = not self._stopping and not self._fallback_pending and not (self._connected and self._queue)
                wait = next_beat - time.monotonic()
                if idle and wait > 0:
                    # Wake at least 5x a second to count acknowledgements.
                    self._wake.wait(min(wait, 0.2))
                if self._stopping:
                    return
                fallback = self._fallback_pending
            if fallback:
                self._fall_back()
                continue
            self._drain()
            self._sweep()
            self._raise_overflow_alarm()
            if time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.config.heartbeat_s
                self._heartbeat()

    def _drain(self, batch: int = 256) -> None:
        """Send queued items while connected, a batch at a time so heartbeats keep their rhythm."""
        for _ in range(batch):
            with self._send_lock:
                with self._lock:
                    if not self._connected or not self._queue or self._stopping:
                        return
                    item = self._queue.popleft()
                self._send(item)

    def _fall_back(self) -> None:
        old = self._client
        with self._lock:
            self._fallback_pending = False
        if old is not None:
            old.disconnect()
            old.loop_stop()
        self._connect("3.1.1")

    def _raise_overflow_alarm(self) -> None:
        with self._lock:
            if not self._connected or not self._overflow_pending[0]:
                return
            (dropped, first, last), self._overflow_pending = self._overflow_pending, (0, None, None)
            total = self._counts["overflow"]
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
            if not self._connected:
                return
            window, self._window = self._window, _Window()
            self._heartbeat_seq += 1
            seq = self._heartbeat_seq
        pipeline: dict[str, Any] = {}
        ready = False
        counters: dict[str, Any] = {}
        if self.status is not None:
            try:
                state = dict(self.status())
                ready = bool(state.pop("ready", False))
                counters = dict(state.pop("counters", {}) or {})
                pipeline = state
            except Exception as exc:  # a failing status callback must not stop heartbeats
                pipeline = {"status_error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        link = self.stats()
        payload = {
            "schema": SCHEMA_VERSION,
            "ts": round(time.time(), 3),
            "seq": seq,
            "ready": ready,
            "uptime_s": round(time.monotonic() - self._started_mono, 1),
            "protocol": link["protocol"],
            "counters": counters,
            "processing_ms": window.summary(),
            "link": {k: link[k] for k in ("sent", "queued", "overflow", "late", "reconnects", "malformed_commands")},
        }
        if pipeline:
            payload["pipeline"] = pipeline
        client = self._client
        if client is not None:
            with self._send_lock:
                client.publish(self.topics.heartbeat, _dumps(payload), qos=0)

    # -- helpers ------------------------------------------------------------------------------------------------

    def _status_payload(self, state: str, reason: str, protocol: str | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "status": state,
            "reason": reason,
            "protocol": protocol or self._protocol,
            "client_id": self.client_id,
            "line": self.config.line,
            "camera": self.camera_id,
            "heartbeat_s": self.config.heartbeat_s,
            "keepalive_s": self.config.keepalive_s,
        }
        if reason != "connection lost":  # a last will is written at connect time: its time would mislead
            payload["ts"] = round(time.time(), 3)
        return payload

    def _safe_url(self) -> str:
        return redact_url(self.config.url or "")

    def _counts_summary(self) -> str:
        s = self.stats()
        return ", ".join(
            f"{k} {s[k]}" for k in ("sent", "queued", "late", "overflow", "reconnects", "malformed_commands")
        )

    def __repr__(self) -> str:
        return f"PlcLink({self.topics.root!r}, {self._safe_url()!r}, connected={self._connected})"
