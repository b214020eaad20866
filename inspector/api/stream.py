"""The live stream (viewers): `/api/events` sends stats, new verdicts and threshold changes as Server-Sent Events.

The stream ends only when the client goes away, which keeps uvicorn's graceful shutdown waiting: give the server a
short `timeout_graceful_shutdown` (a couple of seconds); browsers reconnect anyway.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from inspector.api.convert import stats_payload, verdict_out
from inspector.api.deps import AppDeps, Deps
from inspector.api.security import viewer

__all__ = ["event_stream", "router"]

router = APIRouter(dependencies=[Depends(viewer)])


@router.get(
    "/api/events",
    tags=["status"],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}, "description": "SSE stream"}},
)
async def events(request: Request, deps: Deps) -> StreamingResponse:
    """Server-Sent Events: `stats` every interval, `verdict` for each new part (at most 20 an interval,
    the newest), `thresholds` when the version changes."""
    return StreamingResponse(
        event_stream(request, deps),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def event_stream(request: Request, deps: AppDeps) -> AsyncIterator[str]:
    """The SSE body: polls the stats and the store; ends when the client goes away."""
    last_id = await run_in_threadpool(deps.store.last_id)
    last_version: int | None = None
    yield "retry: 2000\n\n"
    while not await request.is_disconnected():
        stats = await run_in_threadpool(stats_payload, deps)
        yield f"event: stats\ndata: {json.dumps(stats)}\n\n"
        new = await run_in_threadpool(lambda after=last_id: deps.store.recent_verdicts(after=after, limit=20))
        for v in reversed(new):
            yield f"event: verdict\ndata: {verdict_out(v).model_dump_json()}\n\n"
        if new:
            last_id = new[0].id
        current = deps.holder().get()
        if current.version != last_version:
            last_version = current.version
            yield f"event: thresholds\ndata: {current.model_dump_json()}\n\n"
        await asyncio.sleep(deps.events_interval_s)
