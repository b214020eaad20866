"""The line's Prometheus metrics, through prometheus-client: one collector reads the pipeline's stats, the store's
counters and the thresholds version at scrape time, into one registry per dashboard.

Sample names are the ones the project has always exposed (`tests/test_prometheus.py` holds the list), so existing
dashboards and alerts keep working:

- ledger counters `inspector_parts_<seen|decided|passed|rejected|failsafe|errors|frames_dropped>_total`, the gauge
  `inspector_parts_in_flight`; rates `inspector_parts_per_s`, `inspector_rejects_per_s`;
- `inspector_latency_ms{quantile}` (capture to decision, recent window), `inspector_stage_ms{stage}` (medians);
- `inspector_rejects_by_class_total{class}`, `inspector_sink_errors_total{sink}`, `inspector_camera_connected`,
  `inspector_camera_reconnects_total`, `inspector_alarms`, `inspector_ready`;
- a live camera's grabber (docs/cameras.md): `inspector_camera_frames_grabbed_total`,
  `inspector_camera_frames_skipped_total` (replaced by a newer frame before the line took them),
  `inspector_camera_lost_total`;
- the model: `inspector_model_info{file, sha256, precision, provider, selftest}` (always 1),
  `inspector_model_selftest_passed`, `inspector_model_provider_fallback`;
- `inspector_up`, `inspector_thresholds_version`, and the store's `inspector_store_*`;
- dashboard logins (`LoginCollector`): `inspector_login_successes_total`, `inspector_login_failures_total`,
  `inspector_login_refused_total{reason}`, `inspector_login_lockouts_total`, `inspector_login_address_blocks_total`,
  `inspector_login_locked_accounts`, `inspector_login_blocked_addresses`, `inspector_login_hash_queue_depth`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "LineCollector", "LoginCollector", "line_registry", "render"]

log = logging.getLogger(__name__)

# Prometheus' classic text format, which every scraper reads (prometheus-client's own default names a newer one).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LEDGER = ("seen", "decided", "passed", "rejected", "failsafe", "errors", "frames_dropped")
_STORE: dict[str, tuple[str, str, str]] = {
    "rows_written": ("inspector_store_rows_written_total", "counter", "Verdicts written to the store."),
    "rows_dropped": ("inspector_store_rows_dropped_total", "counter", "Verdicts the store queue had no room for."),
    "write_errors": ("inspector_store_write_errors_total", "counter", "Verdicts lost to database errors."),
    "images_written": ("inspector_store_images_written_total", "counter", "JPEG images archived."),
    "images_skipped": ("inspector_store_images_skipped_total", "counter", "Images not archived (encoder busy)."),
    "images_pruned": ("inspector_store_images_pruned_total", "counter", "Images deleted by quota or retention."),
    "image_bytes": ("inspector_store_image_bytes", "gauge", "Bytes in the image archive."),
    "quota_bytes": ("inspector_store_quota_bytes", "gauge", "Image archive quota."),
    "queue": ("inspector_store_queue_depth", "gauge", "Verdicts waiting for the store writer."),
}


class LineCollector(Collector):
    """Reads one line's state when Prometheus scrapes.

    stats: `Pipeline.stats()` (or the service's, with alarms added); store_stats: `Store.stats()`;
    thresholds_version: the version in force; labels: constant labels on every sample (e.g. line, camera).
    A stats dict that cannot be read costs its own metrics only, never `inspector_up` or the store's.
    """

    def __init__(
        self,
        stats: Callable[[], dict[str, Any]],
        store_stats: Callable[[], dict[str, Any]] | None = None,
        thresholds_version: Callable[[], int] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        self._stats = stats
        self._store_stats = store_stats
        self._thresholds_version = thresholds_version
        self._labels = dict(labels or {})

    def _family(self, kind: str, name: str, help_: str, extra: tuple[str, ...] = ()) -> Metric:
        family = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
        return family(name, help_, labels=[*self._labels, *extra])

    def _one(self, kind: str, name: str, help_: str, value: float) -> Metric:
        metric = self._family(kind, name, help_)
        metric.add_metric(list(self._labels.values()), float(value))
        return metric

    def _many(self, kind: str, name: str, help_: str, label: str, values: dict[str, float]) -> Metric:
        metric = self._family(kind, name, help_, (label,))
        for key, value in values.items():
            metric.add_metric([*self._labels.values(), str(key)], float(value))
        return metric

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._pipeline(self._stats())
        except Exception:  # an odd stats dict must not take the other metrics down with it
            log.exception("reading the pipeline stats for /metrics failed")
        yield self._one("gauge", "inspector_up", "The inspector process answers.", 1)
        if self._thresholds_version is not None:
            version = self._thresholds_version()
            yield self._one("gauge", "inspector_thresholds_version", "Version of the thresholds in use.", version)
        store = self._store_stats() if self._store_stats is not None else {}
        for key, (name, kind, help_) in _STORE.items():
            if isinstance(store.get(key), int | float):
                yield self._one(kind, name, help_, store[key])

    def _pipeline(self, stats: dict[str, Any]) -> Iterator[Metric]:
        ledger = stats.get("ledger", {})
        for key in _LEDGER:
            if key in ledger:
                help_ = f"parts {key.replace('_', ' ')}"
                yield self._one("counter", f"inspector_parts_{key}_total", help_, ledger[key])
        if "in_flight" in ledger:
            yield self._one("gauge", "inspector_parts_in_flight", "parts seen and not yet decided", ledger["in_flight"])
        for key, value in stats.get("rates", {}).items():
            yield self._one("gauge", f"inspector_{key}", key.replace("_", " "), value)
        latency = stats.get("latency_ms", {})
        quantiles = {q: latency[k] for q, k in (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99")) if k in latency}
        if quantiles:
            help_ = "capture to decision latency over the recent window, ms"
            yield self._many("gauge", "inspector_latency_ms", help_, "quantile", quantiles)
        stages = {name: s.get("p50", 0.0) for name, s in stats.get("stage_ms", {}).items()}
        if stages:
            help_ = "median time per pipeline stage over the recent window, ms"
            yield self._many("gauge", "inspector_stage_ms", help_, "stage", stages)
        if rejects := stats.get("per_class_rejects", {}):
            help_ = "rejected parts by defect class"
            yield self._many("counter", "inspector_rejects_by_class_total", help_, "class", rejects)
        if camera := stats.get("camera", {}):
            yield self._one("gauge", "inspector_camera_connected", "1 when the camera is open", camera.get("connected"))
            help_ = "camera reopened"
            yield self._one("counter", "inspector_camera_reconnects_total", help_, camera.get("reconnects", 0))
            for key, help_ in (
                ("lost", "camera declared lost (stalled, failed or not there)"),
                ("frames_grabbed", "frames the camera delivered to the grabber"),
                ("frames_skipped", "frames replaced by a newer one before the line took them"),
            ):
                if key in camera:  # kept to the names a stats dict has: old exporters' name sets stay as they were
                    yield self._one("counter", f"inspector_camera_{key}_total", help_, camera[key])
        if sinks := stats.get("sinks", {}):
            errors = {name: s.get("errors", 0) for name, s in sinks.items()}
            yield self._many(
                "counter", "inspector_sink_errors_total", "verdicts a sink failed to handle", "sink", errors
            )
        yield from self._model(stats.get("model") or {})
        yield self._one("gauge", "inspector_alarms", "active alarms", len(stats.get("alarms", [])))
        if "ready" in stats:
            help_ = "1 when a trigger now gets a verdict in time"
            yield self._one("gauge", "inspector_ready", help_, bool(stats["ready"]))

    def _model(self, model: dict[str, Any]) -> Iterator[Metric]:
        if not model:
            return
        selftest = (model.get("selftest") or {}).get("status", "unknown")
        keys = ("file", "sha256", "precision", "provider")
        info = GaugeMetricFamily(
            "inspector_model_info",
            "the model in use (labels say which), always 1",
            labels=[*self._labels, *keys, "selftest"],
        )
        info.add_metric([*self._labels.values(), *(str(model.get(k, "")) for k in keys), selftest], 1.0)
        yield info
        help_ = "1 when the model in use passed its self-test on this host, 0 when it was not recorded or failed"
        yield self._one("gauge", "inspector_model_selftest_passed", help_, selftest == "passed")
        help_ = "1 when the model runs on another execution provider than the first one asked for (e.g. CUDA -> CPU)"
        yield self._one("gauge", "inspector_model_provider_fallback", help_, bool(model.get("provider_fallback")))


class LoginCollector(Collector):
    """The dashboard's login guard (`LoginGuard.stats()`), read when Prometheus scrapes."""

    _COUNTERS = (
        ("successes", "inspector_login_successes_total", "dashboard logins with the right password"),
        ("failures", "inspector_login_failures_total", "dashboard logins with a wrong user name or password"),
        ("lockouts", "inspector_login_lockouts_total", "accounts locked after too many failed logins"),
        ("address_blocks", "inspector_login_address_blocks_total", "client addresses blocked for failed logins"),
    )
    _GAUGES = (
        ("locked_accounts", "inspector_login_locked_accounts", "accounts locked now"),
        ("blocked_addresses", "inspector_login_blocked_addresses", "client addresses blocked now"),
        ("hash_queue", "inspector_login_hash_queue_depth", "password checks running or waiting"),
    )

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for key, name, help_ in self._COUNTERS:
            yield CounterMetricFamily(name, help_, value=float(stats.get(key, 0)))
        help_ = "dashboard logins answered without checking the password (429: limits, 503: hasher busy), by reason"
        refused = CounterMetricFamily("inspector_login_refused_total", help_, labels=["reason"])
        for reason, value in stats.get("refused", {}).items():
            refused.add_metric([reason], float(value))
        yield refused
        for key, name, help_ in self._GAUGES:
            yield GaugeMetricFamily(name, help_, value=float(stats.get(key, 0)))


def line_registry(collector: LineCollector) -> CollectorRegistry:
    """A registry of its own for one line's collector (not the process-wide default, so that two apps in one
    process, as in the tests, never register twice)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry) -> str:
    """The registry in Prometheus' text format (`CONTENT_TYPE`)."""
    return generate_latest(registry).decode("utf-8")
