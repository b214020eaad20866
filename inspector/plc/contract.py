"""The PLC contract (docs/mqtt.md): topic names, payload builders, schemas and command parsing; no paho here.

Topics live under `<prefix>/<line>/<camera>/`:

    verdict    QoS 1   full JSON result of every part (audit, dashboards, MES)
    reject     QoS 1   flat `{"part_id", "reject", "reason", "gate_ts", ...}` for every part; MQTT 5 message
                       expiry = the time left until the part reaches the reject gate
    status     QoS 1, retained   `online` birth on connect, `offline` last will and on a clean stop
    heartbeat  QoS 0   every `heartbeat_s`: ready, ledger counters, processing time min/avg/max, link counters
    events     QoS 1   threshold changes, recipe switches, accepted commands, alarms, camera lost / back
    camera     QoS 1, retained   the camera's state: `up` or `lost`, with the reason
    cmd/trigger, cmd/pause, cmd/resume, cmd/recipe      PLC -> inspector
    cmd/error  QoS 1   the answer to a malformed command

Every payload validates against its JSON Schema in `inspector/schemas/` (`load_schema`).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, runtime_checkable

from inspector.verdict import VerdictRecord, wall_from_monotonic_ns

__all__ = [
    "COMMANDS",
    "MAX_COMMAND_BYTES",
    "MAX_PART_ID",
    "SCHEMA_VERSION",
    "CommandError",
    "PlcCommands",
    "ProcessingWindow",
    "Topics",
    "camera_payload",
    "command_error_payload",
    "dumps",
    "event_payload",
    "heartbeat_payload",
    "load_schema",
    "parse_command",
    "reject_payload",
    "status_payload",
    "verdict_payload",
    "wall_from_monotonic_ns",
]

SCHEMA_VERSION = 1
MAX_PART_ID = 2**53 - 1  # the largest integer every JSON parser (and a PLC's LREAL) holds exactly
MAX_COMMAND_BYTES = 4096
COMMANDS = ("trigger", "pause", "resume", "recipe")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_TOPIC_PART_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one payload (`verdict`, `reject`, `status`, `heartbeat`, `event`, `camera`, `cmd_error`,
    `cmd_trigger`, `cmd_recipe`, `cmd_pause`, `cmd_resume`) from `inspector/schemas/`."""
    text = resources.files("inspector").joinpath("schemas", f"{name}.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


# -- topics ------------------------------------------------------------------------------------------------------


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
    def camera(self) -> str:
        return self.root + "camera"

    @property
    def cmd(self) -> str:
        """Prefix of the command topics (`cmd/trigger` etc.)."""
        return self.root + "cmd/"

    @property
    def cmd_error(self) -> str:
        return self.root + "cmd/error"

    def command(self, name: str) -> str:
        return self.cmd + name


# -- payloads ----------------------------------------------------------------------------------------------------


def verdict_payload(record: VerdictRecord, *, line: str, gate_ts: float | None = None) -> dict[str, Any]:
    """The `verdict` message of one part (schema `verdict.json`): its record, as the contract names the fields."""
    payload: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "part_id": record.part_id,
        "seq": record.seq,
        "run": record.run,
        "ts": record.decided_ts,
        "line": line,
        "camera": record.camera_id,
        "decision": record.decision.value,
        "reasons": record.reasons,
        "failsafe": record.failsafe,
        "defects": record.defects(),
        "model": record.model_sha256,
        "recipe": record.recipe,
        "thresholds_version": record.thresholds_version,
        "latency_ms": round(record.latency_ms or 0.0, 3),
        "gate_ts": gate_ts,
    }
    if record.truth is not None:
        payload["truth"] = record.truth
    return payload


def reject_payload(record: VerdictRecord, *, gate_ts: float | None, now_wall: float | None = None) -> dict[str, Any]:
    """The flat `reject` message a PLC acts on (schema `reject.json`); sent for passes too (`reject: false`)."""
    return {
        "part_id": record.part_id,
        "reject": record.rejected,
        "reason": record.reasons[0] if record.rejected and record.reasons else "",
        "gate_ts": gate_ts,
        "seq": record.seq,
        "run": record.run,
        "ts": round(time.time() if now_wall is None else now_wall, 3),
    }


def status_payload(
    state: str,
    reason: str,
    *,
    protocol: str,
    client_id: str,
    line: str,
    camera: str,
    heartbeat_s: float,
    keepalive_s: int,
) -> dict[str, Any]:
    """The retained `status` message (schema `status.json`): `online` birth, `offline` will or clean stop."""
    payload: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "status": state,
        "reason": reason,
        "protocol": protocol,
        "client_id": client_id,
        "line": line,
        "camera": camera,
        "heartbeat_s": heartbeat_s,
        "keepalive_s": keepalive_s,
    }
    if reason != "connection lost":  # a last will is written at connect time: its time would mislead
        payload["ts"] = round(time.time(), 3)
    return payload


def event_payload(event: Mapping[str, Any], *, seq: int) -> dict[str, Any]:
    """An `events` message (schema `event.json`): `schema`, `event`, `ts` and `seq` first, then the event's
    own fields (never overriding those four)."""
    payload: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "event": str(event.get("event", "event")),
        "ts": round(time.time(), 3),
        "seq": seq,
    }
    payload.update({k: v for k, v in event.items() if k not in payload})
    return payload


def camera_payload(change: Mapping[str, Any], *, camera: str) -> dict[str, Any]:
    """The retained `camera` message (schema `camera.json`) for one camera state change from the pipeline:
    `{"state": "up" | "lost" | "back", "reason", "source", "since", "lost"}` ("back" is state `up` again)."""
    return {
        "schema": SCHEMA_VERSION,
        "camera": camera,
        "state": "lost" if change["state"] == "lost" else "up",
        "reason": str(change.get("reason", "")),
        "source": str(change.get("source", "")),
        "since": round(float(change.get("since", time.time())), 3),
        "ts": round(time.time(), 3),
        "lost": int(change.get("lost", 0)),
    }


@dataclass(slots=True)
class ProcessingWindow:
    """Processing time (capture to decision) over one heartbeat period: the heartbeat's `processing_ms`."""

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


_HEARTBEAT_LINK_KEYS = ("sent", "queued", "overflow", "late", "reconnects", "malformed_commands")


def heartbeat_payload(
    *,
    seq: int,
    started_mono: float,
    window: ProcessingWindow,
    status: Callable[[], Mapping[str, Any]] | None,
    link_stats: Callable[[], Mapping[str, Any]],
    dashboard_url: str | None = None,
    latency_ms: Mapping[str, Any] | None = None,
    recipes: Mapping[str, Mapping[str, int]] | None = None,
) -> dict[str, Any]:
    """The `heartbeat` message (schema `heartbeat.json`).

    status: the pipeline's state, `{"ready": bool, "counters": {...}, ...}`; other keys go under `pipeline`, and a
        status callback that raises is reported there as `status_error`. link_stats: the link's `stats()`.
    dashboard_url, latency_ms, recipes: the optional fields a plant view reads (`inspector fleet`): the line's
        dashboard, `{"p50", "p99", "n"}` over recent parts, cumulative counts per recipe; left out when None.
    """
    pipeline: dict[str, Any] = {}
    ready = False
    counters: dict[str, Any] = {}
    if status is not None:
        try:
            state = dict(status())
            ready = bool(state.pop("ready", False))
            counters = dict(state.pop("counters", {}) or {})
            pipeline = state
        except Exception as exc:  # a failing status callback must not stop heartbeats
            pipeline = {"status_error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    link = link_stats()
    payload = {
        "schema": SCHEMA_VERSION,
        "ts": round(time.time(), 3),
        "seq": seq,
        "ready": ready,
        "uptime_s": round(time.monotonic() - started_mono, 1),
        "protocol": link["protocol"],
        "counters": counters,
        "processing_ms": window.summary(),
        "link": {k: link[k] for k in _HEARTBEAT_LINK_KEYS},
    }
    if pipeline:
        payload["pipeline"] = pipeline
    if dashboard_url:
        payload["dashboard_url"] = dashboard_url
    if latency_ms is not None:
        payload["latency_ms"] = dict(latency_ms)
    if recipes is not None:
        payload["recipes"] = {name: dict(counts) for name, counts in recipes.items()}
    return payload


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes, the wire form of every payload."""
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

    def set_recipe(self, name: str, source: str = "plc") -> Any:
        """Switch product (model + thresholds) between two parts; raises KeyError for an unknown recipe. `source`
        says who asked (`plc`, `opcua`, `sparkplug`): the `recipe_switched` event carries it."""


class CommandError(ValueError):
    """A malformed command: `kind` is a stable short name (answered on `cmd/error`), `detail` says why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


def command_error_payload(topic: str, name: str, payload: bytes, error: CommandError, count: int) -> dict[str, Any]:
    """The `cmd/error` answer to a malformed or failed command (schema `cmd_error.json`); `count` is the link's
    running total of malformed commands."""
    return {
        "schema": SCHEMA_VERSION,
        "ts": round(time.time(), 3),
        "topic": topic,
        "command": name[:64],
        "error": error.kind,
        "detail": error.detail,
        "payload": payload[:200].decode("utf-8", errors="backslashreplace"),
        "count": count,
    }


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
