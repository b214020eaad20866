"""`/metrics` through prometheus-client keeps every sample name the hand-written exposition had (issue 17), so
dashboards and alerts built on them keep working; a stats dict that cannot be read costs only its own metrics."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from inspector.prometheus import LineCollector, line_registry, render

# Every sample name of the hand-written exposition (stats.prometheus_text + api.render_metrics, as of 2026-12-01).
NAMES_BEFORE = {
    "inspector_alarms",
    "inspector_camera_connected",
    "inspector_camera_reconnects_total",
    "inspector_latency_ms",
    "inspector_model_info",
    "inspector_model_provider_fallback",
    "inspector_model_selftest_passed",
    "inspector_parts_decided_total",
    "inspector_parts_errors_total",
    "inspector_parts_failsafe_total",
    "inspector_parts_frames_dropped_total",
    "inspector_parts_in_flight",
    "inspector_parts_passed_total",
    "inspector_parts_per_s",
    "inspector_parts_rejected_total",
    "inspector_parts_seen_total",
    "inspector_ready",
    "inspector_rejects_by_class_total",
    "inspector_rejects_per_s",
    "inspector_sink_errors_total",
    "inspector_stage_ms",
    "inspector_store_image_bytes",
    "inspector_store_images_pruned_total",
    "inspector_store_images_skipped_total",
    "inspector_store_images_written_total",
    "inspector_store_queue_depth",
    "inspector_store_quota_bytes",
    "inspector_store_rows_dropped_total",
    "inspector_store_rows_written_total",
    "inspector_store_write_errors_total",
    "inspector_thresholds_version",
    "inspector_up",
}

STATS: dict[str, Any] = {
    "ledger": {k: 3 for k in ("seen", "decided", "passed", "rejected", "failsafe", "errors", "frames_dropped")}
    | {"in_flight": 1},
    "rates": {"parts_per_s": 9.5, "rejects_per_s": 1.25},
    "latency_ms": {"p50": 12.0, "p95": 15.0, "p99": 19.5, "max": 30.0},
    "stage_ms": {"inference": {"p50": 9.0}, "preprocess": {"p50": 1.5}},
    "per_class_rejects": {"short": 2, "open": 1},
    "camera": {"connected": True, "reconnects": 2},
    "sinks": {"plc": {"errors": 0}, "store": {"errors": 1}},
    "model": {
        "file": "m.onnx",
        "sha256": "ab",
        "precision": "int8",
        "provider": "CPUExecutionProvider",
        "provider_fallback": False,
        "selftest": {"status": "passed"},
    },
    "alarms": [{"name": "x", "message": "y"}],
    "ready": True,
}
STORE = {
    k: 4
    for k in (
        "rows_written",
        "rows_dropped",
        "write_errors",
        "images_written",
        "images_skipped",
        "images_pruned",
        "image_bytes",
        "quota_bytes",
        "queue",
    )
}


def sample_names(text: str) -> set[str]:
    return {
        m.group(0) for line in text.splitlines() if line and not line.startswith("#") if (m := re.match(r"\w+", line))
    }


def test_every_sample_name_of_the_hand_written_exposition_is_kept() -> None:
    text = render(line_registry(LineCollector(lambda: STATS, lambda: STORE, lambda: 7)))
    assert sample_names(text) == NAMES_BEFORE
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert values[("inspector_parts_seen_total", ())] == 3
    assert values[("inspector_rejects_by_class_total", (("class", "short"),))] == 2
    assert values[("inspector_latency_ms", (("quantile", "0.99"),))] == 19.5
    assert values[("inspector_thresholds_version", ())] == 7
    assert values[("inspector_model_selftest_passed", ())] == 1
    info = (("file", "m.onnx"), ("precision", "int8"), ("provider", "CPUExecutionProvider"), ("selftest", "passed"))
    assert values[("inspector_model_info", tuple(sorted((*info, ("sha256", "ab")))))] == 1


def test_a_stats_dict_that_cannot_be_read_costs_only_its_own_metrics() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("pipeline gone")

    text = render(line_registry(LineCollector(broken, lambda: STORE, lambda: 7)))
    assert "inspector_up 1.0" in text.splitlines()
    assert "inspector_store_rows_written_total 4.0" in text.splitlines()
    assert "inspector_parts_seen_total" not in text


def test_a_live_cameras_grabber_counts_are_new_metrics_beside_the_old_ones() -> None:
    camera = {"connected": False, "reconnects": 2, "lost": 3, "frames_grabbed": 500, "frames_skipped": 420}
    text = render(line_registry(LineCollector(lambda: {**STATS, "camera": camera})))
    new = {f"inspector_camera_{k}_total" for k in ("lost", "frames_grabbed", "frames_skipped")}
    assert sample_names(text) >= new | {"inspector_camera_connected", "inspector_camera_reconnects_total"}
    assert "inspector_camera_frames_skipped_total 420.0" in text.splitlines()
    assert "inspector_camera_lost_total 3.0" in text.splitlines()
