"""Status routes: liveness (`/api/health`) and Prometheus metrics (open to all), the line's stats (viewers)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from inspector.api.convert import plain, stats_payload
from inspector.api.deps import Deps
from inspector.api.schemas import HealthOut, StatsOut
from inspector.api.security import viewer
from inspector.prometheus import CONTENT_TYPE, render
from inspector.redact import redact_obj

__all__ = ["router", "viewer_router"]

router = APIRouter()
viewer_router = APIRouter(dependencies=[Depends(viewer)])


@router.get("/api/health", response_model=HealthOut, tags=["status"])
def health(request: Request, deps: Deps) -> HealthOut:
    """Liveness: answers while the process runs, with the store writer's counters and what the line adds."""
    details = redact_obj(plain(deps.health())) if deps.health is not None else {}
    store = deps.store.stats()
    return HealthOut(
        status="ok" if store["writer_alive"] else "degraded",
        version=request.app.version,
        uptime_s=time.monotonic() - request.app.state.started,
        thresholds_version=deps.holder().get().version,
        store=store,
        details=details if isinstance(details, dict) else {"value": details},
    )


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    tags=["status"],
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "metrics"}},
)
def metrics(request: Request, deps: Deps) -> PlainTextResponse:
    """Prometheus text format; every metric name starts with `inspector_`. Open, like most exporters."""
    text = render(request.app.state.metrics)
    if deps.metrics is not None:
        text += deps.metrics().rstrip("\n") + "\n"
    return PlainTextResponse(text, media_type=CONTENT_TYPE)


@viewer_router.get("/api/stats", response_model=StatsOut, tags=["status"])
def get_stats(deps: Deps) -> dict[str, Any]:
    """Ledger counters, rates, yield, per-class reject counts, latency percentiles and alarms."""
    return stats_payload(deps)
