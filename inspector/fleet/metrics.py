"""The fleet view's Prometheus metrics (prometheus-client), read from `Fleet.snapshot()` at scrape time into one
registry per app. Per line and camera (labels `line`, `camera`):

- `inspector_fleet_line_state{state}` (1 for the current one of online, stale, offline, unknown), `..._up`
  (1 when online), `..._ready`, `..._silent_seconds` (since the last heartbeat or birth);
- `inspector_fleet_parts_<decided|passed|rejected|failsafe>_total` (the line's ledger since its start),
  `inspector_fleet_parts_per_s`, `inspector_fleet_yield`, `inspector_fleet_latency_ms{quantile}`,
  `inspector_fleet_alarms`;

plant-wide, per recipe (label `recipe`): `inspector_fleet_recipe_<parts|rejected|failsafe|escapes|scored>_total`;
and `inspector_fleet_broker_connected`, `inspector_fleet_malformed_messages_total`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["FleetCollector", "fleet_registry"]

_STATES = ("online", "stale", "offline", "unknown")
_LEDGER = ("decided", "passed", "rejected", "failsafe")
_RECIPE = ("parts", "rejected", "failsafe", "escapes", "scored")


class FleetCollector(Collector):
    """Reads the plant when Prometheus scrapes; `snapshot` is `Fleet.snapshot`."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        rows = snap["lines"]
        labels = ["line", "camera"]

        def per_row(kind: str, name: str, help_: str, value: Callable[[dict[str, Any]], Any]) -> Metric:
            family = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, help_, labels=labels)
            for row in rows:
                if (v := value(row)) is not None:
                    family.add_metric([row["line"], row["camera"]], float(v))
            return family

        state = GaugeMetricFamily(
            "inspector_fleet_line_state", "1 for the line's current state", labels=[*labels, "state"]
        )
        for row in rows:
            for name in _STATES:
                state.add_metric([row["line"], row["camera"], name], float(row["state"] == name))
        yield state
        yield per_row("gauge", "inspector_fleet_line_up", "1 when the line is online", lambda r: r["state"] == "online")
        yield per_row("gauge", "inspector_fleet_ready", "1 when the line said ready", lambda r: r["ready"])
        yield per_row(
            "gauge",
            "inspector_fleet_silent_seconds",
            "seconds since the last heartbeat or birth",
            lambda r: r["silent_s"],
        )
        for key in _LEDGER:
            yield per_row(
                "counter",
                f"inspector_fleet_parts_{key}_total",
                f"parts {key} since the line started",
                lambda r, k=key: r[k],
            )
        yield per_row("gauge", "inspector_fleet_parts_per_s", "parts decided per second", lambda r: r["rate"])
        yield per_row("gauge", "inspector_fleet_yield", "passed share of decided parts", lambda r: r["yield"])
        yield per_row("gauge", "inspector_fleet_alarms", "alarms on the line", lambda r: len(r["alarms"]))
        latency = GaugeMetricFamily(
            "inspector_fleet_latency_ms", "capture to decision over recent parts, ms", labels=[*labels, "quantile"]
        )
        for row in rows:
            for quantile, key in (("0.5", "p50_ms"), ("0.99", "p99_ms")):
                if row[key] is not None:
                    latency.add_metric([row["line"], row["camera"], quantile], float(row[key]))
        yield latency
        for key in _RECIPE:
            family = CounterMetricFamily(
                f"inspector_fleet_recipe_{key}_total", f"plant-wide {key} per recipe", labels=["recipe"]
            )
            for recipe, counts in snap["recipes"].items():
                family.add_metric([recipe], float(counts[key]))
            yield family
        connected = GaugeMetricFamily("inspector_fleet_broker_connected", "1 when subscribed to the broker")
        connected.add_metric([], float(snap["connected"]))
        yield connected
        malformed = CounterMetricFamily("inspector_fleet_malformed_messages", "messages ignored as malformed")
        malformed.add_metric([], float(snap["malformed"]))
        yield malformed


def fleet_registry(snapshot: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    """A registry of its own for one fleet app (two apps in one process never register twice)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FleetCollector(snapshot))
    return registry
