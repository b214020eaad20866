"""Prometheus text for `/metrics`: the pipeline's stats, the store's counters and the thresholds version."""

from __future__ import annotations

import logging
import math
from typing import Any

from inspector.stats import prometheus_text

__all__ = ["render_metrics"]

log = logging.getLogger(__name__)

_STORE_METRICS = {
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


def _fmt(value: float) -> str:
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int):
        return str(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf") if math.isinf(value) else repr(value)


def render_metrics(stats: dict[str, Any], store_stats: dict[str, Any], thresholds_version: int) -> str:
    """Prometheus text exposition (format 0.0.4): the pipeline's stats (rendered by `inspector.stats`), then the
    store's counters and the thresholds version. Written by hand, so the edge image needs no prometheus_client."""
    lines: list[str] = []
    try:
        lines.append(prometheus_text(stats).rstrip("\n"))
    except Exception as exc:  # an odd stats dict must not take the other metrics down with it
        log.exception("rendering the pipeline stats as metrics failed")
        lines.append(f"# pipeline stats not rendered: {type(exc).__name__}")

    def family(name: str, kind: str, help_: str, value: float) -> None:
        lines.extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}", f"{name} {_fmt(value)}"])

    family("inspector_up", "gauge", "The inspector process answers.", 1)
    family("inspector_thresholds_version", "gauge", "Version of the thresholds in use.", thresholds_version)
    for key, (name, kind, help_) in _STORE_METRICS.items():
        value = store_stats.get(key)
        if isinstance(value, int | float):
            family(name, kind, help_, value)
    return "\n".join(line for line in lines if line) + "\n"
