"""The Sparkplug metrics model: which metrics the edge node (the line) and each device (a camera) publish, their
datatypes and aliases, and their values from the pipeline's stats and from each part's verdict. No protobuf here.

Names use `/` folders, which Ignition's MQTT Engine turns into tag folders. Aliases are unique per edge node
(spec 3.0): node metrics 1..99, device `i` (0-based) `100 * (i + 1) + k`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from inspector.types import Verdict

__all__ = [
    "DEVICE_METRICS",
    "NODE_METRICS",
    "PART_METRICS",
    "DataType",
    "MetricSpec",
    "MetricValue",
    "ReportByException",
    "device_metrics",
    "node_metrics",
    "part_values",
    "status_values",
]

MetricValue = int | float | bool | str | None  # None: sent with `is_null`


class DataType(IntEnum):
    """The Sparkplug B datatypes this node uses (numbers as in Tahu's `DataType` enum)."""

    Int32 = 3
    Int64 = 4
    UInt64 = 8
    Double = 10
    Boolean = 11
    String = 12


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric: its name (sent on births only), alias (sent always) and datatype."""

    name: str
    alias: int
    datatype: DataType


# -- node (the line) ---------------------------------------------------------------------------------------------

BD_SEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
_NODE = (
    (BD_SEQ, DataType.Int64),  # spec 3.0: Int64
    (REBIRTH, DataType.Boolean),  # written true by a host: publish NBIRTH and every DBIRTH again
    ("Node Info/Software", DataType.String),
    ("Node Info/Line", DataType.String),
)
NODE_METRICS = tuple(MetricSpec(name, i + 1, dt) for i, (name, dt) in enumerate(_NODE))

# -- device (a camera) -------------------------------------------------------------------------------------------

RECIPE_CMD = "Device Control/Recipe"  # write a recipe name: switch product (reports the active recipe)
PAUSE_CMD = "Device Control/Pause"  # write true: stop inspecting (reports false)
RESUME_CMD = "Device Control/Resume"  # write true: inspect again (reports false)
LAST_ERROR = "Device Control/Last Error"  # why the last command was refused ("" after one that worked)

_STATUS = (
    ("Counters/Parts", DataType.UInt64),
    ("Counters/Passed", DataType.UInt64),
    ("Counters/Rejected", DataType.UInt64),
    ("Counters/Failsafe", DataType.UInt64),
    ("Quality/Yield Percent", DataType.Double),
    ("Rate/Parts per s", DataType.Double),
    ("State/Ready", DataType.Boolean),
    ("State/Paused", DataType.Boolean),
    ("State/Camera Connected", DataType.Boolean),
    ("Recipe/Name", DataType.String),
    ("Recipe/Model SHA256", DataType.String),
    ("Recipe/Thresholds Version", DataType.Int64),
    ("Latency/P50 ms", DataType.Double),
    ("Latency/P99 ms", DataType.Double),
    ("Alarms/Count", DataType.Int32),
    ("Alarms/Active", DataType.String),
    (RECIPE_CMD, DataType.String),
    (PAUSE_CMD, DataType.Boolean),
    (RESUME_CMD, DataType.Boolean),
    (LAST_ERROR, DataType.String),
)
# Every part's result: one DDATA per part, sent at once (never coalesced), all with the part's decision time.
_PART = (
    ("Last Part/Part ID", DataType.UInt64),
    ("Last Part/Seq", DataType.UInt64),
    ("Last Part/Reject", DataType.Boolean),
    ("Last Part/Decision", DataType.String),
    ("Last Part/Reason", DataType.String),
    ("Last Part/Failsafe", DataType.Boolean),
    ("Last Part/Defect Count", DataType.Int32),
    ("Last Part/Defect Classes", DataType.String),
    ("Last Part/Latency ms", DataType.Double),
    ("Last Part/Truth Defective", DataType.Boolean),
)
STATUS_NAMES = tuple(name for name, _ in _STATUS)
PART_NAMES = tuple(name for name, _ in _PART)
DEVICE_METRICS = (*_STATUS, *_PART)
PART_METRICS = _PART


def node_metrics() -> tuple[MetricSpec, ...]:
    return NODE_METRICS


def device_metrics(index: int) -> tuple[MetricSpec, ...]:
    """The metrics of the `index`-th device of the node (aliases unique within the node)."""
    base = 100 * (index + 1)
    return tuple(MetricSpec(name, base + k, dt) for k, (name, dt) in enumerate(DEVICE_METRICS))


def status_values(stats: Mapping[str, Any]) -> dict[str, MetricValue]:
    """A camera's status metrics from `Pipeline.stats()` (or the service's `_stats()`, which adds its alarms)."""
    ledger = stats.get("ledger", {})
    decided = int(ledger.get("decided", 0))
    passed = int(ledger.get("passed", 0))
    latency = stats.get("latency_ms", {})
    alarms = [str(a.get("name", "")) for a in stats.get("alarms", [])]
    return {
        "Counters/Parts": decided,
        "Counters/Passed": passed,
        "Counters/Rejected": int(ledger.get("rejected", 0)),
        "Counters/Failsafe": int(ledger.get("failsafe", 0)),
        "Quality/Yield Percent": round(100.0 * passed / decided, 2) if decided else None,
        # Rounded so that noise in the last digits is not reported as a change.
        "Rate/Parts per s": round(float(stats.get("rates", {}).get("parts_per_s", 0.0)), 2),
        "State/Ready": bool(stats.get("ready", False)),
        "State/Paused": bool(stats.get("paused", False)),
        "State/Camera Connected": bool(stats.get("camera", {}).get("connected", False)),
        "Recipe/Name": str(stats.get("recipe", "")),
        "Recipe/Model SHA256": str(stats.get("model_sha256", "")),
        "Recipe/Thresholds Version": int(stats.get("thresholds_version", 0)),
        "Latency/P50 ms": round(float(latency.get("p50", 0.0)), 1),
        "Latency/P99 ms": round(float(latency.get("p99", 0.0)), 1),
        "Alarms/Count": len(alarms),
        "Alarms/Active": ", ".join(sorted(alarms)),
        RECIPE_CMD: str(stats.get("recipe", "")),
        PAUSE_CMD: False,
        RESUME_CMD: False,
    }


def part_values(verdict: Verdict) -> dict[str, MetricValue]:
    """The `Last Part/...` metrics of one part (its defects named by the recipe that decided it)."""
    record = verdict.to_record()
    defects = record.defects()
    return {
        "Last Part/Part ID": int(verdict.part_id),
        "Last Part/Seq": int(verdict.seq),
        "Last Part/Reject": verdict.rejected,
        "Last Part/Decision": str(verdict.decision.value),
        "Last Part/Reason": str(verdict.reasons[0]) if verdict.rejected and verdict.reasons else "",
        "Last Part/Failsafe": verdict.failsafe,
        "Last Part/Defect Count": len(defects),
        "Last Part/Defect Classes": ", ".join(sorted({str(d["class"]) for d in defects})),
        "Last Part/Latency ms": round(verdict.timings.latency_ms(), 3),
        "Last Part/Truth Defective": record.truth,
    }


def part_time_ms(verdict: Verdict) -> int:
    """When the part was decided, as Unix milliseconds (the timestamp of its metrics)."""
    decided = verdict.timings.decided_ns
    now_ns = time.monotonic_ns()
    return round((time.time() + ((decided or now_ns) - now_ns) / 1e9) * 1000)


class ReportByException:
    """The last values reported per metric; `changes()` returns those that differ (all after `reset()`)."""

    def __init__(self) -> None:
        self._last: dict[str, MetricValue] = {}
        self._all = True

    def reset(self, values: Mapping[str, MetricValue]) -> None:
        """A birth reported `values`: from now on report only what differs from them."""
        self._last = dict(values)
        self._all = False

    def changes(self, values: Mapping[str, MetricValue]) -> dict[str, MetricValue]:
        if self._all:
            return dict(values)
        return {k: v for k, v in values.items() if k not in self._last or self._last[k] != v}

    def reported(self, values: Mapping[str, MetricValue]) -> None:
        self._last.update(values)
